"""LeNet-5 (LeCun et al., 1998), adapted to 28x28 inputs by padding the first convolution."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.activations import get_activation
from jaxvision.models.layers import Dropout, ModuleDef, PoolFn


class LeNet5(nn.Module):
    """conv 6@5x5 pad 2, pool 2, conv 16@5x5, pool 2, dense 120, dense 84, dense classes.

    On 28x28x1 inputs the feature maps are 28x28x6 -> 14x14x6 -> 10x10x16 -> 5x5x16, as in the paper
    on 32x32. The paper used tanh-like squashing and average subsampling; the defaults here are the
    modern ReLU + max pooling, and ``activation="tanh", pooling="avg"`` gives the classic network.

    Attributes:
      num_classes: logits out.
      activation: name in ``jaxvision.models.ACTIVATIONS``.
      pooling: "max" or "avg".
      dropout_rate: dropout after each of the two hidden dense layers' activations, in [0, 1).
      conv, max_pool, avg_pool: the layers (flax's; ``jaxvision.backends`` may pass its own).
      dropout_layer: the dropout layer (``jaxvision.transfer.with_frozen_layers`` passes one that is off in
        frozen layers).
    """

    num_classes: int = 10
    activation: str = "relu"
    pooling: str = "max"
    dropout_rate: float = 0.0
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    max_pool: PoolFn = nn.max_pool
    avg_pool: PoolFn = nn.avg_pool
    dropout_layer: ModuleDef = Dropout

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, 28, 28, channels]`` to logits ``[batch, num_classes]``."""
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"Unknown pooling {self.pooling!r}: expected 'max' or 'avg'.")
        activation = get_activation(self.activation)
        pool = self.max_pool if self.pooling == "max" else self.avg_pool
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = pool(activation(self.conv(6, (5, 5), padding=2, name="Conv_0", **kw)(x)), (2, 2), strides=(2, 2))
        x = pool(activation(self.conv(16, (5, 5), padding="VALID", name="Conv_1", **kw)(x)), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for width in (120, 84):
            x = activation(nn.Dense(width, **kw)(x))
            x = self.dropout_layer(self.dropout_rate)(x, train=train)
        return nn.Dense(self.num_classes, **kw)(x)
