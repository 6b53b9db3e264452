"""VGG (Simonyan and Zisserman, 2015): configurations A to E from one table, with optional batch norm.

Parameter counts with the ImageNet head and 1000 classes (no batch norm), as in the paper's Table 2
and torchvision: A (VGG-11) 132,863,336; A-LRN 132,863,336 (LRN has no parameters); B (VGG-13)
133,047,848; C (VGG-16 with 1x1 convs) 133,638,952; D (VGG-16) 138,357,544; E (VGG-19) 143,667,240.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.alexnet import LocalResponseNorm, adaptive_avg_pool
from jaxvision.models.batch_norm import BatchNorm
from jaxvision.models.conv_pool import ConvPool
from jaxvision.models.layers import Dropout, pool_2d

# One entry per layer: an int is a 3x3 conv (pad 1) with that many channels, (channels, 1) a 1x1 conv,
# "M" a 2x2/2 max pool, "LRN" local response normalisation. Table 1 of the paper.
_M, _LRN = "M", "LRN"
CONFIGS: dict[str, tuple[int | tuple[int, int] | str, ...]] = {
    "A": (64, _M, 128, _M, 256, 256, _M, 512, 512, _M, 512, 512, _M),
    "A-LRN": (64, _LRN, _M, 128, _M, 256, 256, _M, 512, 512, _M, 512, 512, _M),
    "B": (64, 64, _M, 128, 128, _M, 256, 256, _M, 512, 512, _M, 512, 512, _M),
    "C": (64, 64, _M, 128, 128, _M, 256, 256, (256, 1), _M, 512, 512, (512, 1), _M, 512, 512, (512, 1), _M),
    "D": (64, 64, _M, 128, 128, _M, 256, 256, 256, _M, 512, 512, 512, _M, 512, 512, 512, _M),
    "E": (64, 64, _M, 128, 128, _M, 256, 256, 256, 256, _M, 512, 512, 512, 512, _M, 512, 512, 512, 512, _M),
}

_NHWC = jax.lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def _conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated``, except that outputs of at most 2x2 are computed as one matmul.

    XLA:CPU (jax 0.10) is pathologically slow on 2x2 maps: a 3x3 conv of [32, 2, 2, 512] takes 1.5 s
    forward, 80x the 19 ms of the same conv written as a matmul over the 9 shifted copies (im2col),
    which made VGG's last stage on 32x32 inputs most of a training step. Same parameters, same result.
    """
    simple = (
        lhs.ndim == 4
        and dimension_numbers == _NHWC
        and not isinstance(padding, str)
        and tuple(window_strides) == (1, 1)
        and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
        and feature_group_count == 1
    )
    if simple:
        kernel_h, kernel_w, in_features, out_features = rhs.shape
        x = jnp.pad(lhs, ((0, 0), *map(tuple, padding), (0, 0)))
        out_h, out_w = x.shape[1] - kernel_h + 1, x.shape[2] - kernel_w + 1
        if out_h * out_w <= 4:
            columns = jnp.concatenate(
                [x[:, i : i + out_h, j : j + out_w, :] for i in range(kernel_h) for j in range(kernel_w)], axis=-1
            )
            return jnp.matmul(columns, rhs.reshape(kernel_h * kernel_w * in_features, out_features), precision=precision)
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, precision=precision,
    )


def _pooled_by_conv(entries: Sequence[Any], position: int, batch_norm: bool) -> bool:
    """Whether ``entries[position]`` is a convolution that takes the "M" right after it in as a ``ConvPool``
    (not with batch norm, whose per-channel scale may be negative, so it does not commute with a max)."""
    return (not batch_norm and 0 <= position < len(entries) - 1
            and entries[position] not in (_M, _LRN) and entries[position + 1] == _M)


class VGG(nn.Module):
    """Stacks of 3x3 convolutions (ReLU, optional batch norm) and 2x2 max pools, then three dense layers.

    ImageNet head (``small_input=False``), as torchvision: adaptive average pool to 7x7 (the identity
    on 224x224 inputs), flatten 25088, dense ``hidden_size``, ReLU, dropout, dense ``hidden_size``,
    ReLU, dropout, dense classes. CIFAR head (``small_input=True``, with ``hidden_size=512``
    in the ``*_cifar`` variants): 32x32 inputs come out of the five pools as 1x1x512, flattened
    straight into the same three dense layers.

    With ``batch_norm`` each conv is followed by BatchNorm before the ReLU; the convs keep their bias
    (redundant before batch norm, but it is torchvision's ``vgg*_bn`` layout and parameter count).

    Attributes:
      num_classes: logits out.
      config: a key of ``CONFIGS``: "A", "A-LRN", "B", "C", "D" or "E".
      batch_norm: BatchNorm after every convolution.
      small_input: the CIFAR head described above.
      hidden_size: width of the two hidden dense layers (4096 in the paper).
      dropout_rate: dropout after each hidden dense layer's ReLU, in [0, 1).
      dtype: compute dtype (e.g. jnp.bfloat16); None follows the inputs and parameters.
      param_dtype: parameter dtype.
    """

    num_classes: int = 1000
    config: str = "D"
    batch_norm: bool = False
    small_input: bool = False
    hidden_size: int = 4096
    dropout_rate: float = 0.5
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, 224, 224, 3]`` (or ``[batch, 32, 32, 3]`` with small_input) to ``[batch, num_classes]``."""
        if self.config not in CONFIGS:
            raise ValueError(f"Unknown VGG config {self.config!r}: expected one of {', '.join(CONFIGS)}.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        conv_index = 0
        entries = CONFIGS[self.config]
        for position, entry in enumerate(entries):
            if entry == _M:
                if not _pooled_by_conv(entries, position - 1, self.batch_norm):
                    x = pool_2d(x, 2)
            elif entry == _LRN:
                x = LocalResponseNorm(name="lrn")(x)
            else:
                width, kernel = entry if isinstance(entry, tuple) else (entry, 3)
                conv_index += 1
                if _pooled_by_conv(entries, position, self.batch_norm):
                    # conv + ReLU + max pool as one ConvPool (pooling before the bias and ReLU), with
                    # nn.Conv's parameters under the same name.
                    x = ConvPool(
                        width, (kernel, kernel), activation="relu", padding=kernel // 2,
                        conv_general_dilated=_conv_general_dilated, name=f"conv{conv_index}", **kw,
                    )(x)
                    continue
                x = nn.Conv(
                    width, (kernel, kernel), padding=kernel // 2, conv_general_dilated=_conv_general_dilated,
                    name=f"conv{conv_index}", **kw,
                )(x)
                if self.batch_norm:
                    x = BatchNorm(
                        use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{conv_index}", **kw
                    )(x)
                x = nn.relu(x)
        if not self.small_input:
            x = adaptive_avg_pool(x, (7, 7))
        x = x.reshape(x.shape[0], -1)
        for index in (1, 2):
            x = nn.relu(nn.Dense(self.hidden_size, name=f"fc{index}", **kw)(x))
            x = Dropout(self.dropout_rate)(x, train=train)
        return nn.Dense(self.num_classes, name="head", **kw)(x)
