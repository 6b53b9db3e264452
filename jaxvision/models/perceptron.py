"""The perceptron (Rosenblatt, 1958): one linear unit per output on the flattened input."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.activations import get_activation


class Perceptron(nn.Module):
    """A single layer of linear units; with ``num_classes=1`` it is one unit.

    Attributes:
      num_classes: outputs; 1 for a binary problem (train with sigmoid binary cross-entropy).
      activation: applied to the scores. "identity" (the default) returns logits for training;
        "step" gives the classic 0/1 output, "sigmoid" a probability.
    """

    num_classes: int = 1
    activation: str = "identity"
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, ...]`` to ``[batch, num_classes]``."""
        del train  # No dropout or batch norm: train and eval are the same function.
        x = x.reshape(x.shape[0], -1)
        scores = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        return get_activation(self.activation)(scores)
