"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012), with local response normalisation.

Three layouts share one module:
  * ``alexnet``: torchvision's single-tower layout (64-192-384-256-256 channels, no LRN; from
    Krizhevsky's "One weird trick", 2014): 61,100,840 parameters with 1000 classes.
  * ``alexnet_2012``: the paper's layout, 96-256-384-384-256 channels, LRN after conv1 and conv2, and
    conv2/4/5 split into two groups as the two GPUs split them: 60,965,224 parameters.
  * ``alexnet_cifar``: the torchvision layout for 32x32 inputs: a 3x3/1 first convolution, 2x2 pooling
    and 1024-wide dense layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.layers import Dropout, ModuleDef, PoolFn


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels, with ``torch.nn.LocalResponseNorm`` semantics.

    ``b_c = a_c / (k + alpha / size * sum_{c' near c} a_{c'}^2) ** beta``, the sum running over the
    ``size`` channels centred on c (zero beyond the ends). PyTorch and Caffe divide ``alpha`` by
    ``size``; the 2012 paper does not, so its formula is ``alpha=size * 1e-4`` here.

    Attributes:
      size: channels in the window (n in the paper).
      alpha: scale of the sum of squares (divided by ``size``).
      beta: exponent.
      k: additive constant.
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalises ``[..., channels]``; the output has the same shape and dtype."""
        squares = jnp.square(x.astype(jnp.float32))
        pad = [(0, 0)] * (x.ndim - 1) + [(self.size // 2, (self.size - 1) // 2)]
        window_sum = jax.lax.reduce_window(
            squares, 0.0, jax.lax.add, (1,) * (x.ndim - 1) + (self.size,), (1,) * x.ndim, pad
        )
        scale = (self.k + self.alpha / self.size * window_sum) ** self.beta
        return (x.astype(jnp.float32) / scale).astype(x.dtype)


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """Average pooling to a fixed spatial size, with the bins of ``torch.nn.AdaptiveAvgPool2d``.

    Output bin i along an axis of length L averages inputs ``floor(i*L/n)`` to ``ceil((i+1)*L/n)``.
    Bins may overlap, or repeat one input when ``L < n`` (a 1x1 map becomes a constant 7x7 one).

    Args:
      x: [batch, height, width, channels].
      output_size: (out_height, out_width).

    Returns:
      [batch, out_height, out_width, channels]; ``x`` itself when it already has that size.
    """
    for axis, out in zip((1, 2), output_size):
        length = x.shape[axis]
        if length == out:
            continue
        if length % out == 0:  # Equal, disjoint bins: one reshape instead of ``out`` slices.
            shape = x.shape[:axis] + (out, length // out) + x.shape[axis + 1 :]
            x = x.reshape(shape).mean(axis=axis + 1)
            continue
        bins = [
            jax.lax.slice_in_dim(x, (i * length) // out, -(-((i + 1) * length) // out), axis=axis).mean(
                axis=axis, keepdims=True
            )
            for i in range(out)
        ]
        x = jnp.concatenate(bins, axis=axis)
    return x


class AlexNet(nn.Module):
    """Five convolutions and three dense layers; ReLU after each, dropout before the hidden dense ones.

    ImageNet layout (``small_input=False``), on 224x224x3: conv 11x11/4 pad 2 -> 55x55, max pool 3x3/2
    -> 27x27, conv 5x5 pad 2, pool -> 13x13, three 3x3 pad 1 convs, pool -> 6x6, adaptive average pool
    to 6x6 (identity at 224), flatten 9216, dense, dense, dense classes. Small-input layout, on 32x32x3:
    conv 3x3/1 pad 1, 2x2 max pools -> 16, 8, 4, flatten ``4*4*widths[4]``.

    Attributes:
      num_classes: logits out.
      widths: output channels of the five convolutions.
      hidden_size: width of the two hidden dense layers.
      small_input: the 32x32 layout described above.
      local_response_norm: LRN (size 5, alpha 1e-4, beta 0.75, k 2) after the first two ReLUs.
      groups: channel groups of conv2, conv4 and conv5 (2 reproduces the paper's two GPUs).
      dropout_rate: dropout before each hidden dense layer, in [0, 1).
      dtype: compute dtype (e.g. jnp.bfloat16); None follows the inputs and parameters.
      param_dtype: parameter dtype.
      conv, max_pool: the layers (flax's; ``jaxvision.backends`` may pass its own).
      dropout_layer: the dropout layer (``jaxvision.transfer.with_frozen_layers`` passes one that is off in
        frozen layers).
    """

    num_classes: int = 1000
    widths: Sequence[int] = (64, 192, 384, 256, 256)
    hidden_size: int = 4096
    small_input: bool = False
    local_response_norm: bool = False
    groups: int = 1
    dropout_rate: float = 0.5
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    max_pool: PoolFn = nn.max_pool
    dropout_layer: ModuleDef = Dropout

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, 224, 224, 3]`` (or ``[batch, 32, 32, 3]`` with small_input) to ``[batch, num_classes]``."""
        if len(self.widths) != 5:
            raise ValueError(f"AlexNet has five convolutions: expected 5 widths, got widths={tuple(self.widths)}.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

        def pool(y: jax.Array) -> jax.Array:
            if self.small_input:
                return self.max_pool(y, (2, 2), strides=(2, 2))
            return self.max_pool(y, (3, 3), strides=(2, 2))  # Overlapping windows, as in the paper.

        if self.small_input:
            x = self.conv(self.widths[0], (3, 3), padding=1, name="conv1", **kw)(x)
        else:
            x = self.conv(self.widths[0], (11, 11), strides=(4, 4), padding=2, name="conv1", **kw)(x)
        x = nn.relu(x)
        if self.local_response_norm:
            x = LocalResponseNorm(name="lrn1")(x)
        x = pool(x)
        x = nn.relu(self.conv(self.widths[1], (5, 5), padding=2, feature_group_count=self.groups, name="conv2", **kw)(x))
        if self.local_response_norm:
            x = LocalResponseNorm(name="lrn2")(x)
        x = pool(x)
        x = nn.relu(self.conv(self.widths[2], (3, 3), padding=1, name="conv3", **kw)(x))
        x = nn.relu(self.conv(self.widths[3], (3, 3), padding=1, feature_group_count=self.groups, name="conv4", **kw)(x))
        x = nn.relu(self.conv(self.widths[4], (3, 3), padding=1, feature_group_count=self.groups, name="conv5", **kw)(x))
        x = pool(x)
        if not self.small_input:
            x = adaptive_avg_pool(x, (6, 6))
        x = x.reshape(x.shape[0], -1)
        for index in (1, 2):
            x = self.dropout_layer(self.dropout_rate)(x, train=train)
            x = nn.relu(nn.Dense(self.hidden_size, name=f"fc{index}", **kw)(x))
        return nn.Dense(self.num_classes, name="head", **kw)(x)
