"""Batch normalisation whose per-channel sums are GEMVs on CPU.

``flax.linen.BatchNorm`` computes its statistics, and autodiff its gradients, with reductions over
batch x height x width. XLA:CPU splits each into a ``reduce-window`` over a few windows and runs it
far below memory speed: one channel sum over [128, 32, 32, 16] takes ~1-2 ms, against 0.4-0.7 ms
as ``ones @ x`` (a GEMV); over [128, 8, 8, 64] 0.58 against 0.10 ms. In ResNet-20's train step those
reduce-windows were ~140 ms of thread time (four sums per batch norm: two for the statistics, two for
the gradients). ``BatchNorm`` here has flax's parameters, batch statistics, names and arithmetic, and
takes every channel sum as a GEMV on CPU. Train steps, one process per version, alternating, medians
of 10: ResNet-20 at batch 128 582/507/516 -> 465/463/461 ms (a later pair 518/519 -> 490/532), at
batch 32 138/123/129 -> 104/107/107 ms; ResNet-18 at 224, batch 8, 868/908 -> 790/759 ms
(benchmarks/README.md, "Where the time goes", item 10; ``python -m benchmarks.batch_norm``).

Elsewhere the sums are ``jnp.sum``: GPU and TPU reductions are fast, and a GEMV there could run in
reduced precision (TF32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


GEMV_WIDTH = 128


def channel_sum(x: jax.Array) -> jax.Array:
    """Sum over every axis but the last: ``[..., channels] -> [channels]``, as a GEMV on CPU.

    Rows narrower than ``GEMV_WIDTH`` are packed side by side (``[n, 16] -> [n / 8, 128]``) and the
    packed sums added up: Eigen's GEMV is faster on wide rows (16 channels over [128, 32, 32]: 0.69 ms
    at width 16, 0.38 ms at 128).
    """
    channels = x.shape[-1]
    if jax.default_backend() != "cpu":
        return jnp.sum(x, axis=tuple(range(x.ndim - 1)))
    pack = max(1, GEMV_WIDTH // channels)
    if (x.size // channels) % pack:
        pack = 1
    rows = x.reshape(-1, pack * channels)
    return (jnp.ones((rows.shape[0],), x.dtype) @ rows).reshape(pack, channels).sum(axis=0)


def _broadcastable(vector: jax.Array, ndim: int) -> jax.Array:
    """A per-channel ``[channels]`` vector as ``[1, ..., 1, channels]`` (explicit rank promotion)."""
    return vector.reshape((1,) * (ndim - 1) + vector.shape)


@jax.custom_vjp
def channel_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel ``(mean(x), mean(x^2))`` over every axis but the last.

    A custom VJP so that the gradient is the elementwise ``(g_mean + 2 x g_mean2) / n``, which XLA fuses,
    rather than the transpose of a GEMV (an outer product).
    """
    count = x.size // x.shape[-1]
    return channel_sum(x) / count, channel_sum(x * x) / count


def _moments_forward(x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    return channel_moments(x), x


def _moments_backward(x: jax.Array, cotangents: tuple[jax.Array, jax.Array]) -> tuple[jax.Array]:
    mean_cotangent, mean_square_cotangent = (_broadcastable(c, x.ndim) for c in cotangents)
    return ((mean_cotangent + 2.0 * x * mean_square_cotangent) / (x.size // x.shape[-1]),)


channel_moments.defvjp(_moments_forward, _moments_backward)


@jax.custom_vjp
def centered_affine(x: jax.Array, mean: jax.Array, multiplier: jax.Array, bias: jax.Array) -> jax.Array:
    """``(x - mean) * multiplier + bias`` with per-channel vectors; its parameter gradients are GEMVs.

    Autodiff would take the gradients of the three broadcast vectors as reductions; this VJP takes
    them as two channel sums, ``sum(g)`` and ``sum(g * (x - mean))``.
    """
    mean, multiplier, bias = (_broadcastable(v, x.ndim) for v in (mean, multiplier, bias))
    return (x - mean) * multiplier + bias


def _affine_forward(x, mean, multiplier, bias):
    return centered_affine(x, mean, multiplier, bias), (x, mean, multiplier, bias)


def _affine_backward(residuals, cotangent):
    x, mean, multiplier, bias = residuals
    cotangent_sum = channel_sum(cotangent)
    return (
        (cotangent * _broadcastable(multiplier, x.ndim)).astype(x.dtype),
        (-multiplier * cotangent_sum).astype(mean.dtype),
        channel_sum(cotangent * (x - _broadcastable(mean, x.ndim))).astype(multiplier.dtype),
        cotangent_sum.astype(bias.dtype),
    )


centered_affine.defvjp(_affine_forward, _affine_backward)


class BatchNorm(nn.Module):
    """``flax.linen.BatchNorm`` over the last axis, with channel sums as GEMVs on CPU.

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
