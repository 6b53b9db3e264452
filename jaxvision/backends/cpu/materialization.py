"""A marker that makes XLA:CPU compute an activation once and store it, and ResNet's ReLU with it.

XLA:CPU fuses cheap elementwise chains (batch norm, ReLU, residual additions) into every consumer
and recomputes them there. In a ResNet's backward pass those consumers include the layout
transposes before each kernel-gradient convolution, which then re-run whole blocks' worth of batch
norm in transposed order (README.md beside this file). ``lax.optimization_barrier`` does not stop
it (XLA:CPU removes barriers before fusion), but XLA never fuses into a GEMM's operand or out of its
result, so ``materialize`` sends ``x`` through one with the identity: ``[-1, 8] @ eye(8)``,
16 FLOPs per element. Its forward-mode rule passes the tangent through untouched, so the gradient is
the identity's and ``jax.jvp`` works.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

MATERIALIZE_BLOCK = 8


def _identity_gemm(x: jax.Array) -> jax.Array:
    width = MATERIALIZE_BLOCK if x.shape[-1] % MATERIALIZE_BLOCK == 0 else x.shape[-1]
    rows = x.reshape(-1, width)
    return jnp.matmul(rows, jnp.eye(width, dtype=x.dtype)).reshape(x.shape)


@jax.custom_jvp
def materialize(x: jax.Array) -> jax.Array:
    """``x``, computed once and stored by XLA:CPU rather than recomputed in each consumer.

    Args:
      x: any array; its last axis is grouped in blocks of 8 where it divides (else one block).

    Returns:
      ``x``: equal to it where it is finite (-0.0 becomes 0.0). A GEMM cannot keep a non-finite
      value to itself: an inf or NaN turns the other entries of its block of 8 channels, at the same
      position of the same example, into NaN. Nothing crosses examples or positions, and the next
      convolution mixes those channels anyway, so a network's outputs are non-finite exactly where
      the reference's are.
    """
    return _identity_gemm(x)


@materialize.defjvp
def _materialize_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return materialize(x), x_dot


def relu(x: jax.Array) -> jax.Array:
    """``nn.relu``, materialised: ResNet's activation on CPU (its ``act`` field)."""
    return materialize(nn.relu(x))
