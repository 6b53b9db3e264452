"""Layers the models share: dropout whose rate may be traced, fast non-overlapping pooling, and a
CPU-only marker that keeps XLA from recomputing an activation in every consumer."""

from __future__ import annotations

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
    which is several times slower than the gradient of a plain ``max`` over a reshaped axis.
    Trailing rows/columns that do not fill a window are dropped, as with VALID padding.

    Args:
      x: [batch, height, width, channels].
      window: window size and stride.
      kind: "max" or "avg".

    Returns:
      [batch, height // window, width // window, channels].
    """
    batch, height, width, channels = x.shape
    out_h, out_w = height // window, width // window
    x = x[:, : out_h * window, : out_w * window, :]
    x = x.reshape(batch, out_h, window, out_w, window, channels)
    if kind == "max":
        return jnp.max(x, axis=(2, 4))
    if kind == "avg":
        return jnp.mean(x, axis=(2, 4))
    raise ValueError(f"Unknown pooling kind {kind!r}: expected 'max' or 'avg'.")


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
