"""Layers the models share beyond flax's own: dropout whose rate may be traced, and the type of an
injectable layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# A layer a model takes as a field so that a backend can pass its own (flax ImageNet example style).
ModuleDef = Any
PoolFn = Callable[..., jax.Array]


class Dropout(nn.Module):
    """Inverted dropout whose ``rate`` may be a Python float or a traced scalar.

    ``flax.linen.Dropout`` branches on ``rate == 0`` in Python, so it cannot take a rate that is data
    (a different rate per member of a vmapped population). This one only branches on ``rate`` when it
    is a Python number. Draws from the ``"dropout"`` RNG stream.

    Attributes:
      rate: probability of zeroing each element, in [0, 1).
    """

    rate: float | jax.Array

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if not train or (isinstance(self.rate, (int, float)) and self.rate == 0.0):
            return x
        keep = 1.0 - jnp.asarray(self.rate, dtype=jnp.float32)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape)
        return jnp.where(mask, x / keep.astype(x.dtype), jnp.zeros_like(x))
