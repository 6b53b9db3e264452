"""``nn.max_pool`` and ``nn.avg_pool`` with a faster XLA:CPU path for non-overlapping windows.

For windows that do not overlap (stride = window, VALID padding: every 2x2/2 pool of LeNet-5,
MnistCNN, SimpleCNN and VGG) the pool is a reshape and a reduction. XLA:CPU lowers the gradient of
``reduce_window`` max (what ``nn.max_pool`` is) to select-and-scatter, several times slower; and
autodiff of ``jnp.max`` splits a tie evenly, counting every window's maxima in a reduction over the
whole input. ``max_pool`` here sends each window's gradient to its first maximum in row-major order,
where ``nn.max_pool`` and PyTorch's ``max_pool2d`` send it (so on MNIST's blank background it agrees
with them), from a stored int8 index of that maximum. The rule is a forward-mode one whose tangent
is "the tangent at the first maximum", linear in the input, so reverse mode transposes it into the
index-based backward pass and ``jax.jvp`` works as well.

NaN: ``jnp.max`` propagates it, as ``reduce_window`` max does; the first-maximum index of a window
holding a NaN points at the NaN, so its gradient is NaN too, as ``nn.max_pool``'s would be.
Anything else (overlapping windows, padding, other ranks) is flax's own pool. Measurements: README.md
beside this file.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _index_dtype(window: int) -> jnp.dtype:
    """int8 holds a window's entry index up to 11x11 windows."""
    return jnp.dtype(jnp.int8) if window * window <= 128 else jnp.dtype(jnp.int32)


def _windows(x: jax.Array, window: int) -> jax.Array:
    """``[batch, h, w, c]`` as ``[batch, h / window, window, w / window, window, c]``."""
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // window, window, width // window, window, channels)


def _first_maximum(x: jax.Array, window: int, maxima: jax.Array) -> jax.Array:
    """Each window's row-major index of its first maximum (of its first NaN, if it holds one)."""
    windows = _windows(x, window)
    index_dtype = _index_dtype(window)
    first = jnp.full(maxima.shape, window * window - 1, index_dtype)
    for k in reversed(range(window * window)):
        entry = windows[:, :, k // window, :, k % window, :]
        # A NaN maximum equals nothing, so a NaN entry is matched by its own NaN-ness.
        hit = (entry == maxima) | (jnp.isnan(entry) & jnp.isnan(maxima))
        first = jnp.where(hit, jnp.asarray(k, index_dtype), first)
    return first


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool_windows(x: jax.Array, window: int) -> jax.Array:
    return jnp.max(_windows(x, window), axis=(2, 4))


@_max_pool_windows.defjvp
def _max_pool_jvp(window, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    maxima = jnp.max(_windows(x, window), axis=(2, 4))
    first = _first_maximum(x, window, maxima)
    positions = jnp.arange(window * window, dtype=first.dtype).reshape(1, 1, window, 1, window, 1)
    hit = first[:, :, None, :, None, :] == positions
    # Linear in x_dot; its transpose is where(hit, cotangent, 0): the gradient to the first maximum.
    tangent = jnp.sum(jnp.where(hit, _windows(x_dot, window), jnp.zeros((), x_dot.dtype)), axis=(2, 4))
    return maxima, tangent


def max_pool_2d(x: jax.Array, window: int) -> jax.Array:
    """Max over non-overlapping ``window x window`` windows of ``x: [batch, height, width, channels]``.

    Trailing rows and columns that do not fill a window are dropped (VALID padding). The gradient
    goes to each window's first maximum.

    Returns:
      [batch, height // window, width // window, channels].
    """
    height, width = x.shape[1] // window * window, x.shape[2] // window * window
    return _max_pool_windows(x[:, :height, :width, :], window)


def avg_pool_2d(x: jax.Array, window: int) -> jax.Array:
    """Mean over non-overlapping ``window x window`` windows (trailing rows and columns dropped)."""
    height, width = x.shape[1] // window * window, x.shape[2] // window * window
    return jnp.mean(_windows(x[:, :height, :width, :], window), axis=(2, 4))


def _square_window(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None, padding: Any) -> int | None:
    """The window size when a pool is a non-overlapping 2-D square one this module handles, else None."""
    window_shape = tuple(window_shape)
    strides = tuple(strides) if strides is not None else (1,) * len(window_shape)
    if x.ndim != 4 or len(window_shape) != 2 or window_shape != strides or window_shape[0] != window_shape[1]:
        return None
    if padding != "VALID" and padding != ((0, 0), (0, 0)):
        return None
    return window_shape[0]


def _pool_with(fast, reference, name: str):
    """A pool with ``reference``'s signature and result that takes ``fast(x, window)`` for non-overlapping windows."""

    def pool(inputs: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding: Any = "VALID") -> jax.Array:
        window = _square_window(inputs, window_shape, strides, padding)
        if window is None:
            return reference(inputs, tuple(window_shape), strides=strides, padding=padding)
        return fast(inputs, window)

    pool.__name__ = pool.__qualname__ = name
    pool.__doc__ = f"``nn.{name}`` with the same arguments and result; non-overlapping 2-D windows take ``{fast.__name__}``."
    return pool


max_pool = _pool_with(max_pool_2d, nn.max_pool, "max_pool")
avg_pool = _pool_with(avg_pool_2d, nn.avg_pool, "avg_pool")
