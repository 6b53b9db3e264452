"""Layers the models share: dropout whose rate may be traced, fast non-overlapping pooling, and a
CPU-only marker that keeps XLA from recomputing an activation in every consumer."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


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


def pool_2d(x: jax.Array, window: int, *, kind: str = "max") -> jax.Array:
    """Non-overlapping ``window x window`` pooling (stride = window, no padding).

    Written as reshape + reduce rather than ``nn.max_pool``: for non-overlapping windows both compute
    the same thing, but XLA:CPU lowers the gradient of ``reduce_window`` max to select-and-scatter,
    which is several times slower. The max's gradient is ``max_pool_2d``'s: all of it to the first
    maximum of each window, as ``nn.max_pool`` and PyTorch's ``max_pool2d`` do.
    Trailing rows/columns that do not fill a window are dropped, as with VALID padding.

    Args:
      x: [batch, height, width, channels].
      window: window size and stride.
      kind: "max" or "avg".

    Returns:
      [batch, height // window, width // window, channels].
    """
    if kind not in ("max", "avg"):
        raise ValueError(f"Unknown pooling kind {kind!r}: expected 'max' or 'avg'.")
    batch, height, width, channels = x.shape
    out_h, out_w = height // window, width // window
    x = x[:, : out_h * window, : out_w * window, :]
    if kind == "max":
        return max_pool_2d(x, window)
    return jnp.mean(x.reshape(batch, out_h, window, out_w, window, channels), axis=(2, 4))


# Channels from which max_pool_2d's backward reads a stored window index rather than the input.
MIN_INDEX_CHANNELS = 24


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool_2d(x: jax.Array, window: int) -> jax.Array:
    """Max over non-overlapping windows of ``x: [batch, height, width, channels]`` (sizes multiples of
    ``window``); its gradient goes entirely to the first maximum of each window, in row-major order.

    Autodiff of ``jnp.max`` splits a tie evenly: it counts each window's maxima in the backward pass, a
    reduction over the whole input (1.8 ms of thread time for MnistCNN's [128, 28, 28, 24] at batch 128)
    that XLA then recomputes inside the kernel-gradient layout transposes. This VJP sends the gradient
    where ``nn.max_pool`` (select-and-scatter) and PyTorch's ``max_pool2d`` send it, so on ties (MNIST's
    blank background) it agrees with them. With at least ``MIN_INDEX_CHANNELS`` channels the forward
    pass stores each window's first-maximum index (int8, a quarter of the output's bytes) and the
    backward reads only that and the output gradient, as PyTorch does. On LeNet-5's smaller maps (6 and
    16 channels) the index cost more than it saved (batch 128 +0.2-0.3 ms of ~7), so there the backward
    finds the first maximum again from ``x``. Train steps, one process, steps interleaved, 80-100 pairs,
    old -> new: MnistCNN batch 128 18.9 -> 17.6 ms (faster in 91% of pairs), batch 64 9.8 -> 9.4 ms
    (91%); LeNet-5 batch 128 7.4 -> 7.3 ms (55%), batch 32 3.2 -> 3.4 ms (25%), batch 512 32.4 -> 33.7
    ms (41%); SimpleCNN and VGG-11 level (benchmarks/README.md, "Where the time goes", item 13).

    Args:
      x: [batch, height, width, channels], height and width multiples of ``window`` (``pool_2d`` crops).
      window: window size and stride.

    Returns:
      [batch, height // window, width // window, channels].

    Raises:
      ValueError: if height or width is not a multiple of ``window``.
    """
    if x.shape[1] % window or x.shape[2] % window:
        raise ValueError(
            f"max_pool_2d got a {x.shape[1]}x{x.shape[2]} map for window={window}: expected multiples of the "
            "window. Use pool_2d, which drops the rows and columns that do not fill one."
        )
    return _max_pool_forward(x, window)[0]


def _index_dtype(window: int) -> jnp.dtype:
    """int8 holds a window's entry index up to 11x11 windows."""
    return jnp.dtype(jnp.int8) if window * window <= 128 else jnp.dtype(jnp.int32)


def _window_entries(x: jax.Array, window: int) -> list[jax.Array]:
    """The window's entries, row-major, each ``[batch, out_h, out_w, channels]``."""
    batch, height, width, channels = x.shape
    windows = x.reshape(batch, height // window, window, width // window, window, channels)
    return [windows[:, :, k // window, :, k % window, :] for k in range(window * window)]


def _max_pool_forward(x: jax.Array, window: int) -> tuple[jax.Array, Any]:
    batch, height, width, channels = x.shape
    maxima = jnp.max(x.reshape(batch, height // window, window, width // window, window, channels), axis=(2, 4))
    if channels < MIN_INDEX_CHANNELS:
        return maxima, (x, maxima)
    index_dtype = _index_dtype(window)
    first = jnp.full(maxima.shape, window * window - 1, index_dtype)
    for k, entry in reversed(list(enumerate(_window_entries(x, window)))):
        first = jnp.where(entry == maxima, jnp.asarray(k, index_dtype), first)
    return maxima, first


def _max_pool_backward(window: int, residuals: Any, cotangent: jax.Array) -> tuple[jax.Array]:
    batch, out_h, out_w, channels = cotangent.shape
    zero = jnp.zeros((), cotangent.dtype)
    if isinstance(residuals, tuple):  # few channels: which entry is the first maximum, from x
        x, maxima = residuals
        taken = jnp.zeros(maxima.shape, bool)
        parts = []
        for entry in _window_entries(x, window):
            hit = (entry == maxima) & ~taken
            parts.append(jnp.where(hit, cotangent, zero))
            taken = taken | hit
        gradient = jnp.stack(parts, axis=-1).reshape(batch, out_h, out_w, channels, window, window)
        gradient = gradient.transpose(0, 1, 4, 2, 5, 3)
    else:
        positions = jnp.arange(window * window, dtype=_index_dtype(window)).reshape(1, 1, window, 1, window, 1)
        hit = residuals[:, :, None, :, None, :] == positions
        gradient = jnp.where(hit, cotangent[:, :, None, :, None, :], zero)
    return (gradient.reshape(batch, out_h * window, out_w * window, channels),)


max_pool_2d.defvjp(_max_pool_forward, _max_pool_backward)


MATERIALIZE_BLOCK = 8


def _identity_gemm(x: jax.Array) -> jax.Array:
    width = MATERIALIZE_BLOCK if x.shape[-1] % MATERIALIZE_BLOCK == 0 else x.shape[-1]
    rows = x.reshape(-1, width)
    return jnp.matmul(rows, jnp.eye(width, dtype=x.dtype)).reshape(x.shape)


@jax.custom_vjp
def _materialized(x: jax.Array) -> jax.Array:
    return _identity_gemm(x)


_materialized.defvjp(lambda x: (_identity_gemm(x), None), lambda _, cotangent: (cotangent,))


def materialize(x: jax.Array) -> jax.Array:
    """``x`` unchanged, but computed once and stored, on CPU; the identity elsewhere.

    XLA:CPU fuses cheap elementwise chains (batch norm, ReLU, residual additions, a few-channel
    convolution's stencil) into every consumer and recomputes them there. In a ResNet's backward pass
    those consumers include the layout transposes before each kernel-gradient convolution, which then
    re-run whole blocks' worth of batch norm in transposed order: in ResNet-20's train step such
    transposes took ~240 ms of ~800 (benchmarks/README.md, "Where the time goes", items 7 and 9).
    ``lax.optimization_barrier`` does not stop it (XLA:CPU removes barriers before fusion), but XLA
    never fuses into a GEMM's operand or out of its result, so ``x`` goes through one with the
    identity: ``[-1, 8] @ eye(8)``, 16 FLOPs per element. The gradient passes through untouched.
    ResNet-20's train step at batch 128 (same process, alternating): 646-681 -> 518-572 ms.

    Args:
      x: any array whose last axis is a multiple of 8 (else the GEMM is with eye(last axis)).

    Returns:
      ``x``: equal to it where it is finite (-0.0 becomes 0.0). An inf or NaN turns the other
      entries of its group of 8 into NaN (``inf * 0``), as a diverged step would anyway.
    """
    if jax.default_backend() != "cpu":
        return x
    return _materialized(x)
