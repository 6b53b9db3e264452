"""``nn.max_pool`` and ``nn.avg_pool`` with a faster XLA:CPU path for non-overlapping windows.

For windows that do not overlap (stride = window, VALID padding: every 2x2/2 pool of LeNet-5,
MnistCNN, SimpleCNN and VGG) the pool is a reshape and a maximum over each window. XLA:CPU lowers
the gradient of ``reduce_window`` max (what ``nn.max_pool`` is) to select-and-scatter, several times
slower; and autodiff of ``jnp.max`` splits a tie evenly, counting every window's maxima in a reduction over the
whole input. ``max_pool`` here sends each window's gradient to its first maximum in row-major order,
where ``nn.max_pool`` and PyTorch's ``max_pool2d`` send it (so on MNIST's blank background it agrees
with them), from a stored int8 index of that maximum. The rule is a forward-mode one whose tangent
is "the tangent at the first maximum", linear in the input, so reverse mode transposes it into the
index-based backward pass and ``jax.jvp`` works as well.

NaN: undifferentiated, a window holding one pools to NaN (``_window_maxima``; XLA:CPU's own
max-reductions, ``nn.max_pool``'s included, drop it on larger maps). Differentiated, the maximum is
XLA's plain reduction, for speed (``_maxima_and_first``); where it is NaN, the first-maximum index
points at the NaN, so the gradient goes there.

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


# Channels from which a window's maximum is a reduction (with a NaN check) rather than elementwise maxima.
MIN_REDUCE_CHANNELS = 24


def _index_dtype(window: int) -> jnp.dtype:
    """int8 holds a window's entry index up to 11x11 windows."""
    return jnp.dtype(jnp.int8) if window * window <= 128 else jnp.dtype(jnp.int32)


def _windows(x: jax.Array, window: int) -> jax.Array:
    """``[batch, h, w, c]`` as ``[batch, h / window, window, w / window, window, c]``."""
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // window, window, width // window, window, channels)


def _window_maxima(x: jax.Array, window: int) -> jax.Array:
    """Each window's maximum, NaN if the window holds one: the pool's value where it is not differentiated.

    XLA:CPU's vectorised max-reductions drop NaN on larger maps (one NaN among [1, 28, 28, 8] ones
    reduces to a finite maximum, eagerly and under jit, ``nn.max_pool``'s ``reduce_window`` too),
    where ``lax.max`` is defined to propagate it. Two forms keep it: from ``MIN_REDUCE_CHANNELS``
    channels the reduction plus a reduction of "is NaN" (as fast as the reduction alone on MnistCNN),
    below them an elementwise ``jnp.maximum`` of the window's entries (faster on LeNet-5's 6 and 16
    channels); figures in benchmarks/NOTES.md (2026-12-03).
    """
    windows = _windows(x, window)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.max(windows, axis=(2, 4))
    if x.shape[-1] >= MIN_REDUCE_CHANNELS:
        holds_nan = jnp.any(jnp.isnan(windows), axis=(2, 4))
        return jnp.where(holds_nan, jnp.asarray(jnp.nan, x.dtype), jnp.max(windows, axis=(2, 4)))
    maxima = windows[:, :, 0, :, 0, :]
    for k in range(1, window * window):
        maxima = jnp.maximum(maxima, windows[:, :, k // window, :, k % window, :])
    return maxima


def _maxima_and_first(x: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """Each window's maximum and the row-major index of its first maximum (of its first NaN, if the
    maximum is NaN): the forward-mode rule's, so a train step's, form.

    The maximum is XLA's plain max-reduction, for speed: the NaN-keeping forms of ``_window_maxima``
    slow a train step (figures: benchmarks/NOTES.md, 2026-12-03). So where XLA:CPU's reduction drops a NaN, a
    differentiated pool drops it as ``nn.max_pool`` (whose reduce_window does the same) would.
    """
    windows = _windows(x, window)
    maxima = jnp.max(windows, axis=(2, 4))
    index_dtype = _index_dtype(window)
    first = jnp.full(maxima.shape, window * window - 1, index_dtype)
    for k in reversed(range(window * window)):
        entry = windows[:, :, k // window, :, k % window, :]
        # A NaN maximum equals nothing, so a NaN entry is matched by its own NaN-ness.
        hit = (entry == maxima) | (jnp.isnan(entry) & jnp.isnan(maxima))
        first = jnp.where(hit, jnp.asarray(k, index_dtype), first)
    return maxima, first


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool_windows(x: jax.Array, window: int) -> jax.Array:
    return _window_maxima(x, window)


@_max_pool_windows.defjvp
def _max_pool_jvp(window, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    maxima, first = _maxima_and_first(x, window)
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
