"""The multilayer perceptron: dense layers with a nonlinearity and optional dropout between them."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.activations import Maxout, get_activation
from jaxvision.models.layers import Dropout, ModuleDef


class MLP(nn.Module):
    """Flatten, then ``Dense -> activation -> dropout`` per hidden width, then a Dense head.

    ``MLP(hidden_sizes=(4,), num_classes=2)`` on 3 inputs is the 3-4-2 network (26 parameters).

    Attributes:
      num_classes: width of the output layer (logits).
      hidden_sizes: widths of the hidden layers, input side first.
      activation: name in ``jaxvision.models.ACTIVATIONS``, or "maxout": each hidden layer is then a
        ``Maxout`` of 2 linear pieces per unit (twice the weights) instead of Dense + activation.
      dropout_rate: dropout after each hidden activation, in [0, 1).
      dropout_layer: the dropout layer (``jaxvision.transfer.with_frozen_layers`` passes one that is off in
        frozen layers).
    """

    num_classes: int = 10
    hidden_sizes: Sequence[int] = (256, 128)
    activation: str = "relu"
    dropout_rate: float = 0.0
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    dropout_layer: ModuleDef = Dropout

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, ...]`` to logits ``[batch, num_classes]``."""
        # Maxout is a layer with its own weights, not a function applied after a Dense.
        maxout = self.activation == "maxout"
        activation = None if maxout else get_activation(self.activation)
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden_sizes:
            if maxout:
                x = Maxout(width, dtype=self.dtype, param_dtype=self.param_dtype)(x)
            else:
                x = activation(nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype)(x))
            x = self.dropout_layer(self.dropout_rate)(x, train=train)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x)
