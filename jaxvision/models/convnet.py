"""A small all-convolutional network for 32x32 to 128x128 images: the course's "modern small CNN".

Strided stem, then stages of two 3x3 convolution + batch norm + ReLU blocks with a 2x2 max pool between them,
global average pooling and one dense layer (Lin et al., "Network in Network", 2013, for the pooled head; Ioffe
and Szegedy, 2015, for batch norm). It is the cheap default of the binary and regression tasks and the
detector's backbone at 64x64: far fewer operations than a CIFAR ResNet at that size, and the same on any input
size, since nothing is flattened.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.activations import get_activation
from jaxvision.models.layers import Dropout, ModuleDef, PoolFn


class ConvNet(nn.Module):
    """stem conv 3x3/2, then ``len(widths)`` stages of (conv 3x3 + BN + act) x 2, max pool 2 between, GAP, dense.

    Module names: ``stem_conv``/``stem_bn``, ``stage{i}_conv{j}``/``stage{i}_bn{j}`` (i, j from 1), ``head``.

    Attributes:
      num_classes: outputs of the head.
      widths: channels of each stage; the stem has ``widths[0]``.
      activation: name in ``jaxvision.models.ACTIVATIONS``.
      dropout_rate: dropout before the head.
      conv, norm, max_pool: the layers (flax's; ``jaxvision.backends`` may pass its own).
      dropout_layer: the dropout layer (``jaxvision.transfer.with_frozen_layers`` swaps it).
    """

    num_classes: int = 10
    widths: Sequence[int] = (16, 32, 64)
    activation: str = "relu"
    dropout_rate: float = 0.0
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    max_pool: PoolFn = nn.max_pool
    dropout_layer: ModuleDef = Dropout

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, height, width, channels]`` to logits ``[batch, num_classes]``."""
        if not self.widths:
            raise ValueError("Invalid ConvNet widths=(): expected at least one stage width, e.g. widths=(16, 32, 64)")
        act = get_activation(self.activation)
        conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        norm = functools.partial(self.norm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype, param_dtype=self.param_dtype)
        x = act(norm(name="stem_bn")(conv(self.widths[0], (3, 3), (2, 2), padding=1, name="stem_conv")(x)))
        for i, width in enumerate(self.widths, start=1):
            if i > 1:
                x = self.max_pool(x, (2, 2), strides=(2, 2))
            for j in (1, 2):
                x = act(norm(name=f"stage{i}_bn{j}")(conv(width, (3, 3), padding=1, name=f"stage{i}_conv{j}")(x)))
        x = jnp.mean(x, axis=(1, 2))
        x = self.dropout_layer(self.dropout_rate)(x, train=train)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)
