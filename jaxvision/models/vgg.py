"""VGG (Simonyan and Zisserman, 2015): configurations A to E from one table, with optional batch norm.

Parameter counts with the ImageNet head and 1000 classes (no batch norm), as in the paper's Table 2
and torchvision: A (VGG-11) 132,863,336; A-LRN 132,863,336 (LRN has no parameters); B (VGG-13)
133,047,848; C (VGG-16 with 1x1 convs) 133,638,952; D (VGG-16) 138,357,544; E (VGG-19) 143,667,240.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.alexnet import LocalResponseNorm, adaptive_avg_pool
from jaxvision.models.layers import Dropout, ModuleDef, PoolFn

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
      conv, norm, max_pool: the layers (flax's; ``jaxvision.backends`` may pass its own).
      dropout_layer: the dropout layer (``jaxvision.transfer.with_frozen_layers`` passes one that is off in
        frozen layers).
    """

    num_classes: int = 1000
    config: str = "D"
    batch_norm: bool = False
    small_input: bool = False
    hidden_size: int = 4096
    dropout_rate: float = 0.5
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    max_pool: PoolFn = nn.max_pool
    dropout_layer: ModuleDef = Dropout

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, 224, 224, 3]`` (or ``[batch, 32, 32, 3]`` with small_input) to ``[batch, num_classes]``."""
        if self.config not in CONFIGS:
            raise ValueError(f"Unknown VGG config {self.config!r}: expected one of {', '.join(CONFIGS)}.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        conv_index = 0
        for entry in CONFIGS[self.config]:
            if entry == _M:
                x = self.max_pool(x, (2, 2), strides=(2, 2))
            elif entry == _LRN:
                x = LocalResponseNorm(name="lrn")(x)
            else:
                width, kernel = entry if isinstance(entry, tuple) else (entry, 3)
                conv_index += 1
                x = self.conv(width, (kernel, kernel), padding=kernel // 2, name=f"conv{conv_index}", **kw)(x)
                if self.batch_norm:
                    x = self.norm(
                        use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{conv_index}", **kw
                    )(x)
                x = nn.relu(x)
        if not self.small_input:
            x = adaptive_avg_pool(x, (7, 7))
        x = x.reshape(x.shape[0], -1)
        for index in (1, 2):
            x = nn.relu(nn.Dense(self.hidden_size, name=f"fc{index}", **kw)(x))
            x = self.dropout_layer(self.dropout_rate)(x, train=train)
        return nn.Dense(self.num_classes, name="head", **kw)(x)
