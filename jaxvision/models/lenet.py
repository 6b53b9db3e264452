"""LeNet-5 (LeCun et al., 1998), adapted to 28x28 inputs by padding the first convolution."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.activations import get_activation
from jaxvision.models.conv_pool import ConvPool
from jaxvision.models.layers import Dropout


class LeNet5(nn.Module):
    """conv 6@5x5 pad 2, pool 2, conv 16@5x5, pool 2, dense 120, dense 84, dense classes.

    On 28x28x1 inputs the feature maps are 28x28x6 -> 14x14x6 -> 10x10x16 -> 5x5x16, as in the paper
    on 32x32. The paper used tanh-like squashing and average subsampling; the defaults here are the
    modern ReLU + max pooling, and ``activation="tanh", pooling="avg"`` gives the classic network.

    Attributes:
      num_classes: logits out.
      activation: name in ``jaxvision.models.ACTIVATIONS``.
      pooling: "max" or "avg".
      dropout_rate: dropout before each of the two hidden dense layers' outputs, in [0, 1).
    """

    num_classes: int = 10
    activation: str = "relu"
    pooling: str = "max"
    dropout_rate: float = 0.0
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, 28, 28, channels]`` to logits ``[batch, num_classes]``."""
        activation = get_activation(self.activation)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        # conv + activation + pool as ConvPools (max pooling before the bias and activation where that
        # is the same function), named as the nn.Convs they replaced. Both convolutions have few input
        # channels (1-3, then 6): models/conv.py's faster CPU path.
        conv_pool = functools.partial(ConvPool, activation=self.activation, pooling=self.pooling, **kw)
        x = conv_pool(6, (5, 5), padding=2, name="Conv_0")(x)
        x = conv_pool(16, (5, 5), padding="VALID", name="Conv_1")(x)
        x = x.reshape(x.shape[0], -1)
        for width in (120, 84):
            x = activation(nn.Dense(width, **kw)(x))
            x = Dropout(self.dropout_rate)(x, train=train)
        return nn.Dense(self.num_classes, **kw)(x)
