"""A convolution, its activation and a max pool, in the order that costs least.

``max_pool(activation(conv(x) + bias))`` equals ``activation(max_pool(conv(x)) + bias)`` whenever the
activation never decreases (ReLU, leaky ReLU, ELU, sigmoid, tanh): adding a per-channel constant and
applying a non-decreasing function both commute with a max. The second order runs the bias add, the
activation, their gradients and the bias gradient on the pooled map, ``window**2`` times smaller. The
bias gradient is a sum over batch x height x width, which XLA:CPU runs as a slow ``reduce-window``
(2.0 ms on one thread for MnistCNN's [128, 28, 28, 24] first layer, a tenth of its train step).
MnistCNN's train step, the two orders compiled in one process, steps interleaved, 200 of each:
batch 128 22.6 -> 21.1 ms median (the new order faster in 92% of pairs), batch 64 11.6 -> 10.8 ms
(benchmarks/README.md, "Where the time goes", item 13).

Gradients equal the written order's up to float rounding; at exact ties inside a window both orders
send the gradient to the same entries, since the bias and the activation preserve the order of a
window's entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.linear import canonicalize_padding
from jax import lax

from jaxvision.models import conv
from jaxvision.models.activations import Activation, get_activation, is_non_decreasing
from jaxvision.models.layers import pool_2d


def pools_first(activation: str | Activation, pooling: str) -> bool:
    """Whether ``ConvPool`` pools before the bias and activation: max pooling and a non-decreasing activation."""
    return pooling == "max" and is_non_decreasing(activation)


class ConvPool(nn.Module):
    """``pool_2d(activation(nn.Conv(features, kernel_size, padding=padding)(x)), window, kind=pooling)``.

    Same parameters as that ``nn.Conv`` (``kernel [kh, kw, in, features]``, ``bias [features]``), same
    initialisers, drawn in the same order, so a model keeps its parameter tree, checkpoints and initial
    values when its conv + activation + pool becomes a ``ConvPool`` named as the ``nn.Conv`` was. With
    max pooling and a non-decreasing activation (``pools_first``) the output is computed as
    ``activation(pool_2d(conv(x)) + bias)``, which is cheaper (module docstring); otherwise as written.
    Stride 1, no dilation, no groups: the layers of MnistCNN, LeNet-5, SimpleCNN and VGG.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw).
      activation: a name in ``jaxvision.models.ACTIVATIONS`` or a callable (callables other than the
        registry's are treated as possibly decreasing, so computed in the written order).
      window: pooling window and stride (non-overlapping, as ``pool_2d``).
      pooling: "max" or "avg".
      padding: "SAME", "VALID", an int, or ((top, bottom), (left, right)), as ``nn.Conv``.
      conv_general_dilated: the convolution, as ``nn.Conv``'s field of that name; by default
        ``jaxvision.models.conv.conv_general_dilated`` (a faster CPU path for few input channels).
      kernel_init, bias_init: initialisers, ``nn.Conv``'s defaults.
      dtype: compute dtype; None follows the inputs and parameters.
      param_dtype: parameter dtype.
    """

    features: int
    kernel_size: Sequence[int]
    activation: str | Activation = "relu"
    window: int = 2
    pooling: str = "max"
    padding: str | int | Sequence[tuple[int, int]] = "SAME"
    conv_general_dilated: Callable[..., jax.Array] = conv.conv_general_dilated
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[batch, height, width, in_channels]`` to ``[batch, out_h // window, out_w // window, features]``."""
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"Unknown pooling {self.pooling!r}: expected 'max' or 'avg'.")
        kernel_size = tuple(self.kernel_size)
        # nn.Conv's parameter order: the kernel's key is drawn first, then the bias's.
        kernel = self.param("kernel", self.kernel_init, (*kernel_size, x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = self.conv_general_dilated(
            x, kernel, (1, 1), canonicalize_padding(self.padding, len(kernel_size)),
            lhs_dilation=(1, 1), rhs_dilation=(1, 1),
            dimension_numbers=lax.conv_dimension_numbers(x.shape, kernel.shape, conv.NHWC_DIMENSIONS),
            feature_group_count=1, precision=None,
        )
        bias = bias.reshape((1, 1, 1, self.features))
        activation = get_activation(self.activation)
        if pools_first(self.activation, self.pooling):
            return activation(pool_2d(y, self.window, kind="max") + bias)
        return pool_2d(activation(y + bias), self.window, kind=self.pooling)

    def conv_output_size(self, height: int, width: int) -> tuple[int, int]:
        """(out_h, out_w) of the convolution, before pooling, for an input of ``height x width``."""
        kernel_size = tuple(self.kernel_size)
        pads = conv.explicit_padding(canonicalize_padding(self.padding, 2), (height, width), kernel_size, (1, 1), (1, 1))
        return tuple(size + low + high - k + 1 for size, (low, high), k in zip((height, width), pads, kernel_size))
