"""A small, fast MNIST network: two convolution + max-pool stages and one hidden dense layer."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.activations import get_activation
from jaxvision.models.layers import Dropout, ModuleDef, PoolFn


class MnistCNN(nn.Module):
    """conv 24@5x5, pool 2, conv 32@3x3, pool 2, dense 256, dense classes ("same" padding throughout).

    On 28x28x1 the maps are 28x28x24 -> 14x14x24 -> 14x14x32 -> 7x7x32, and the network has 411,802
    parameters, almost all of them in the hidden dense layer. It costs ~4.5 MFLOPs per image forward
    (SimpleCNN: ~24) and is the network of the time-to-99% benchmark (benchmarks/README.md).

    Attributes:
      num_classes: logits out.
      features: channels of the two convolutions.
      kernel_sizes: their square kernel sizes.
      hidden_size: width of the hidden dense layer.
      activation: name in ``jaxvision.models.ACTIVATIONS``.
      dropout_rate: dropout on the hidden dense layer's output, in [0, 1).
      conv, max_pool: the layers (flax's; ``jaxvision.backends`` may pass its own).
      dropout_layer: the dropout layer (``jaxvision.transfer.with_frozen_layers`` passes one that is off in
        frozen layers).
    """

    num_classes: int = 10
    features: Sequence[int] = (24, 32)
    kernel_sizes: Sequence[int] = (5, 3)
    hidden_size: int = 256
    activation: str = "relu"
    dropout_rate: float = 0.0
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    max_pool: PoolFn = nn.max_pool
    dropout_layer: ModuleDef = Dropout

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, height, width, channels]`` to logits ``[batch, num_classes]``."""
        activation = get_activation(self.activation)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for index, (features, size) in enumerate(zip(self.features, self.kernel_sizes, strict=True)):
            x = activation(self.conv(features, (size, size), padding="SAME", name=f"Conv_{index}", **kw)(x))
            x = self.max_pool(x, (2, 2), strides=(2, 2))
        x = activation(nn.Dense(self.hidden_size, **kw)(x.reshape(x.shape[0], -1)))
        x = self.dropout_layer(self.dropout_rate)(x, train=train)
        return nn.Dense(self.num_classes, **kw)(x)
