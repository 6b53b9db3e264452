"""The small CNN of PyTorch's MNIST example: two 3x3 convolutions, max pooling, dropout, two dense."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.activations import get_activation
from jaxvision.models.layers import Dropout, ModuleDef, PoolFn


class SimpleCNN(nn.Module):
    """conv 32@3x3, conv 64@3x3, max pool 2, dropout, dense 128, dropout, dense classes.

    On 28x28x1 this is 1,199,882 parameters, the same network as ``pytorch/examples/mnist``.

    Attributes:
      num_classes: logits out.
      activation: name in ``jaxvision.models.ACTIVATIONS``.
      conv_dropout_rate: dropout after pooling (0.25 in the PyTorch example).
      dropout_rate: dropout after the hidden dense layer (0.5 in the PyTorch example).
      hidden_size: width of the hidden dense layer.
      conv, max_pool: the layers (flax's; ``jaxvision.backends`` may pass its own).
      dropout_layer: the dropout layer (``jaxvision.transfer.with_frozen_layers`` passes one that is off in
        frozen layers).
    """

    num_classes: int = 10
    activation: str = "relu"
    conv_dropout_rate: float = 0.25
    dropout_rate: float = 0.5
    hidden_size: int = 128
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
        x = activation(self.conv(32, (3, 3), padding="VALID", name="Conv_0", **kw)(x))
        x = activation(self.conv(64, (3, 3), padding="VALID", name="Conv_1", **kw)(x))
        x = self.max_pool(x, (2, 2), strides=(2, 2))
        x = self.dropout_layer(self.conv_dropout_rate)(x, train=train)
        x = x.reshape(x.shape[0], -1)
        x = activation(nn.Dense(self.hidden_size, **kw)(x))
        x = self.dropout_layer(self.dropout_rate)(x, train=train)
        return nn.Dense(self.num_classes, **kw)(x)
