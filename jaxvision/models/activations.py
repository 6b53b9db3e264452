"""Activation functions by name, and the Maxout layer."""

from __future__ import annotations

from collections.abc import Callable
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision._suggest import unknown_name_error

Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "leaky_relu": functools.partial(nn.leaky_relu, negative_slope=0.1),
    "elu": nn.elu,
    "gelu": nn.gelu,
    "softmax": nn.softmax,
    "identity": lambda x: x,
    # The perceptron's original output: 1 where the score is positive. Its gradient is zero almost
    # everywhere, so train with "identity" (logits) and a loss, and use "step" to predict.
    "step": lambda x: (x > 0).astype(x.dtype),
}


def get_activation(name: str | Activation) -> Activation:
    """Returns the activation called ``name``; a callable is returned unchanged.

    Raises:
      ValueError: for an unknown name, listing the known ones.
    """
    if callable(name):
        return name
    if name not in ACTIVATIONS:
        raise unknown_name_error("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


class Maxout(nn.Module):
    """Maxout (Goodfellow et al., 2013): ``features`` outputs, each the max of ``pieces`` linear units.

    Attributes:
      features: number of outputs.
      pieces: linear pieces per output (k in the paper).
    """

    features: int
    pieces: int = 2
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[..., in_features]`` to ``[..., features]``."""
        y = nn.Dense(self.features * self.pieces, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        y = y.reshape(*y.shape[:-1], self.features, self.pieces)
        return jnp.max(y, axis=-1)
