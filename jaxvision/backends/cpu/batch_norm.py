"""Batch normalisation whose per-channel sums are GEMVs, for XLA:CPU.

``flax.linen.BatchNorm`` computes its statistics, and autodiff its gradients, with reductions over
batch x height x width, which XLA:CPU runs as ``reduce-window`` far below memory speed; as
``ones @ x`` (a GEMV) the same sums are several times faster (README.md beside this file).
``BatchNorm`` here has flax's parameters, batch statistics, names, defaults and arithmetic
(statistics in at least float32, ``var = max(0, E[x^2] - E[x]^2)``), so variables move between the
two unchanged, and the results differ only by float32 rounding.

Its two custom pieces have forward-mode rules (``jax.custom_jvp``) written so that their transposes
are the fast backward passes: the statistics' gradient is elementwise, the affine map's parameter
gradients are GEMVs. So ``jax.grad``, ``jax.jvp`` (Hessian-vector products) and ``jax.vmap`` work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


GEMV_WIDTH = 128


def _pack(x_shape: tuple[int, ...]) -> int:
    """How many rows of ``channels`` to lay side by side so that a GEMV row is ``GEMV_WIDTH`` wide.

    Eigen's GEMV is faster on wide rows (16 channels over [128, 32, 32]: 0.69 ms at width 16, 0.38 ms
    at 128); 1 where the rows do not divide evenly.
    """
    channels = x_shape[-1]
    pack = max(1, GEMV_WIDTH // channels)
    rows = math.prod(x_shape) // channels
    return pack if rows % pack == 0 else 1


def channel_sum(x: jax.Array) -> jax.Array:
    """Sum over every axis but the last, ``[..., channels] -> [channels]``, as a GEMV."""
    channels, pack = x.shape[-1], _pack(x.shape)
    rows = x.reshape(-1, pack * channels)
    return (jnp.ones((rows.shape[0],), x.dtype) @ rows).reshape(pack, channels).sum(axis=0)


def broadcast_channels(vector: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A ``[channels]`` vector broadcast to ``shape`` (``[..., channels]``) as an outer product.

    Written as a dot, so that its transpose (what reverse mode takes of a tangent built with it) is
    ``channel_sum``'s GEMV rather than a reduction.
    """
    channels, pack = shape[-1], _pack(shape)
    rows = math.prod(shape) // (pack * channels)
    tiled = jnp.tile(vector, pack)
    return (jnp.ones((rows, 1), vector.dtype) @ tiled[None, :]).reshape(shape)


def _broadcastable(vector: jax.Array, ndim: int) -> jax.Array:
    """A per-channel ``[channels]`` vector as ``[1, ..., 1, channels]`` (explicit rank promotion)."""
    return vector.reshape((1,) * (ndim - 1) + vector.shape)


@jax.custom_jvp
def channel_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel ``(mean(x), mean(x^2))`` over every axis but the last, as GEMVs."""
    count = x.size // x.shape[-1]
    return channel_sum(x) / count, channel_sum(x * x) / count


@channel_moments.defjvp
def _moments_jvp(primals, tangents):
    # The tangent is a plain sum, so its transpose is a broadcast: the gradient is the elementwise
    # (g_mean + 2 x g_mean2) / n, which XLA fuses, rather than the transpose of a GEMV (an outer product).
    (x,), (x_dot,) = primals, tangents
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    return channel_moments(x), (jnp.sum(x_dot, axis=axes) / count, jnp.sum(2.0 * x * x_dot, axis=axes) / count)


@jax.custom_jvp
def centered_affine(x: jax.Array, mean: jax.Array, multiplier: jax.Array, bias: jax.Array) -> jax.Array:
    """``(x - mean) * multiplier + bias`` with per-channel vectors; its parameter gradients are GEMVs."""
    mean, multiplier, bias = (_broadcastable(v, x.ndim) for v in (mean, multiplier, bias))
    return (x - mean) * multiplier + bias


@centered_affine.defjvp
def _affine_jvp(primals, tangents):
    # The vectors' tangents are broadcast with broadcast_channels, whose transpose is a GEMV: reverse
    # mode takes sum(g), sum(g * (x - mean)) as two channel sums instead of two slow reductions.
    x, mean, multiplier, bias = primals
    x_dot, mean_dot, multiplier_dot, bias_dot = tangents
    shape = x.shape
    centered = x - _broadcastable(mean, x.ndim)
    tangent = (
        x_dot * _broadcastable(multiplier, x.ndim)
        + broadcast_channels(bias_dot - mean_dot * multiplier, shape)
        + centered * broadcast_channels(multiplier_dot, shape)
    )
    return centered_affine(x, mean, multiplier, bias), tangent


class BatchNorm(nn.Module):
    """``flax.linen.BatchNorm`` over the last axis, with channel sums as GEMVs.

    Same parameters (``scale``, ``bias``), batch statistics (``mean``, ``var``), defaults and
    arithmetic as flax's (statistics in at least float32, ``var = max(0, E[x^2] - E[x]^2)``,
    ``y = (x - mean) * scale * rsqrt(var + epsilon) + bias``), so checkpoints move between the two
    unchanged; the results differ only by float32 rounding. Not supported (use flax's): normalising
    other axes, ``axis_name`` for ``pmap`` (under ``jit`` with sharded arrays the sums are global
    anyway), masks.

    Attributes:
      use_running_average: normalise with the stored statistics (evaluation) instead of the batch's;
        may also be passed to ``__call__``.
      momentum: decay of the running statistics.
      epsilon: added to the variance.
      dtype: output dtype; None follows the inputs and parameters.
      param_dtype: dtype of ``scale`` and ``bias``.
      use_bias, use_scale: learn a per-channel shift / scale.
      bias_init, scale_init: their initialisers.
    """

    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros
    scale_init: Callable[..., jax.Array] = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """Normalises ``x: [..., channels]`` per channel; returns the same shape."""
        use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        channels = (x.shape[-1],)
        stats_dtype = jnp.promote_types(x.dtype, jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), channels)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), channels)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, mean_square = channel_moments(x.astype(stats_dtype))
            var = jnp.maximum(0.0, mean_square - mean * mean)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var

        multiplier = lax.rsqrt(var + self.epsilon)
        dtype_args = [x]
        if self.use_scale:
            scale = self.param("scale", self.scale_init, channels, self.param_dtype)
            multiplier = multiplier * scale
            dtype_args.append(scale)
        bias = jnp.zeros(channels, stats_dtype)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, channels, self.param_dtype)
            dtype_args.append(bias)
        out_dtype = self.dtype or jnp.result_type(*dtype_args)
        if use_running_average:  # inference: no gradients to shape, XLA fuses this into its neighbours
            mean, multiplier, bias = (_broadcastable(v, x.ndim) for v in (mean, multiplier, bias))
            return ((x - mean) * multiplier + bias).astype(out_dtype)
        return centered_affine(x, mean, multiplier, bias).astype(out_dtype)
