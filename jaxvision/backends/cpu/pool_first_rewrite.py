"""A trace-time rewrite of ``max_pool(relu(conv + bias))`` into ``relu(max_pool(conv) + bias)``.

The models compute a convolution stage as a textbook writes it: convolution with its bias, ReLU,
then the pool. On XLA:CPU a train step is faster when the bias and ReLU come after the pool, on a
map a quarter of the size, forward and backward (figures: ``benchmarks/NOTES.md``, 2026-12-03). The
two orders give the same numbers:

- a per-channel bias is the same inside a window, and float addition is monotone, so
  ``max_i fl(y_i + b) == fl(max_i y_i + b)`` bit for bit;
- ReLU is monotone, so ``max_i relu(z_i) == relu(max_i z_i)``; NaN propagates through both.

The gradient goes to the same input (the window's first maximum; nothing where ReLU is off) except
where adding the bias rounds two different values of a window to one maximum: the written order then
picks the first of the tie, the rewrite the larger value.

``pool_first(apply_fn)`` traces ``apply_fn`` to a jaxpr and evaluates it equation by equation,
replacing every ``jaxvision.backends.cpu.max_pool`` whose input is ``jax.nn.relu`` of a per-channel
addition (a convolution's bias, batch norm's shift) that nothing else reads by the pool-first order.
It is written by hand because no library rewrites jaxprs; a jaxpr it does not recognise (another
jax version, another activation) is evaluated as it is, so the rewrite can be missing, never wrong.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.extend.core import Literal, Var

from jaxvision.backends.cpu import pooling


def _source(function: Callable) -> str:
    """How a jaxpr's debug info names the function it was traced from: "name at file:line"."""
    code = function.__code__
    return f"{function.__name__} at {code.co_filename}:{code.co_firstlineno}"


# The custom_jvp functions the rewrite recognises, by their traced bodies' debug info.
_POOL_SOURCE = _source(pooling._max_pool_windows.fun)
_RELU_SOURCE = _source(getattr(jax.nn.relu.fun, "__wrapped__", jax.nn.relu.fun))


def _traced_from(eqn: Any, source: str) -> bool:
    if eqn.primitive.name != "custom_jvp_call":
        return False
    debug_info = getattr(eqn.params["call_jaxpr"].jaxpr, "debug_info", None)
    return getattr(debug_info, "func_src_info", None) == source


@dataclasses.dataclass(frozen=True)
class _Fused:
    """A pool equation computed in the pool-first order: relu(max_pool_2d(conv, window) + bias)."""

    conv: Var
    bias: Var | Literal
    window: int


def _bias_and_conv(add: Any, shape: tuple[int, ...]) -> tuple[Any, Any] | None:
    """(bias, conv) operands of an ``add`` of a per-channel bias to a ``shape`` map, else None."""
    found = []
    for conv, bias in (add.invars, reversed(add.invars)):
        bias_shape = tuple(bias.aval.shape)
        per_channel = len(bias_shape) >= 1 and bias_shape[-1] == shape[-1] and all(d == 1 for d in bias_shape[:-1])
        if tuple(conv.aval.shape) == shape and per_channel and tuple(bias_shape) != shape:
            found.append((bias, conv))
    return found[0] if len(found) == 1 else None


def plan(jaxpr: Any) -> tuple[dict[int, _Fused], set[int]]:
    """Which equations of ``jaxpr`` to compute pool-first, and which equations that makes unneeded.

    Returns:
      ({pool equation index: _Fused}, {indices of the bias additions and ReLUs no longer needed}).
    """
    producer = {var: index for index, eqn in enumerate(jaxpr.eqns) for var in eqn.outvars}
    uses: dict[Any, int] = {}
    for eqn in jaxpr.eqns:
        for var in eqn.invars:
            if isinstance(var, Var):
                uses[var] = uses.get(var, 0) + 1
    for var in jaxpr.outvars:
        if isinstance(var, Var):
            uses[var] = uses.get(var, 0) + 2  # an output is always needed as it is

    fused: dict[int, _Fused] = {}
    skipped: set[int] = set()
    for index, pool in enumerate(jaxpr.eqns):
        if not _traced_from(pool, _POOL_SOURCE) or len(pool.invars) != 1:
            continue
        activated = pool.invars[0]
        relu_index = producer.get(activated)
        if relu_index is None or uses[activated] != 1 or not _traced_from(jaxpr.eqns[relu_index], _RELU_SOURCE):
            continue
        summed = jaxpr.eqns[relu_index].invars[0]
        add_index = producer.get(summed)
        if add_index is None or uses[summed] != 1 or jaxpr.eqns[add_index].primitive.name != "add":
            continue
        shape, pooled = tuple(summed.aval.shape), tuple(pool.outvars[0].aval.shape)
        operands = _bias_and_conv(jaxpr.eqns[add_index], shape)
        if operands is None or len(shape) != 4 or len(pooled) != 4 or pooled[1] == 0:
            continue
        window = shape[1] // pooled[1]
        if (pooled[1] * window, pooled[2] * window) != shape[1:3]:
            continue
        bias, conv = operands
        fused[index] = _Fused(conv=conv, bias=bias, window=window)
        skipped.update((relu_index, add_index))
    return fused, skipped


def _evaluate(jaxpr: Any, consts: list[Any], args: list[Any], fused: dict[int, _Fused], skipped: set[int]) -> list[Any]:
    """``jax.core.eval_jaxpr`` with the planned equations replaced."""
    env: dict[Any, Any] = {}

    def read(var: Any) -> Any:
        return var.val if isinstance(var, Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for index, eqn in enumerate(jaxpr.eqns):
        if index in skipped:
            continue
        if index in fused:
            step = fused[index]
            outputs = [jax.nn.relu(pooling.max_pool_2d(read(step.conv), step.window) + read(step.bias))]
        else:
            # jax < 0.10 returned (subfunctions, params); jax 0.10 returns the params alone.
            bound = eqn.primitive.get_bind_params(eqn.params)
            subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
            with eqn.ctx.manager:
                result = eqn.primitive.bind(*subfuns, *map(read, eqn.invars), **params)
            outputs = result if eqn.primitive.multiple_results else [result]
        env.update((var, value) for var, value in zip(eqn.outvars, outputs) if isinstance(var, Var))
    return [read(var) for var in jaxpr.outvars]


def pool_first(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``apply_fn`` (a Flax ``apply``) with its conv-bias-ReLU-max-pool stages computed pool-first.

    Same arguments and results as ``apply_fn``. Array arguments (variables, images, PRNG keys) are
    traced; everything else (``train=``, ``mutable=``) is passed through as it is. Works under
    ``jit``, ``grad``, ``jvp`` and ``vmap``.
    """

    @functools.wraps(apply_fn)
    def apply(*args: Any, **kwargs: Any) -> Any:
        leaves, structure = jax.tree.flatten((args, kwargs))
        traced = [index for index, leaf in enumerate(leaves) if isinstance(leaf, (jax.Array, np.ndarray))]

        def flat_apply(*values: Any) -> Any:
            full = list(leaves)
            for index, value in zip(traced, values):
                full[index] = value
            call_args, call_kwargs = jax.tree.unflatten(structure, full)
            return apply_fn(*call_args, **call_kwargs)

        values = [leaves[index] for index in traced]
        closed, out_shape = jax.make_jaxpr(flat_apply, return_shape=True)(*values)
        fused, skipped = plan(closed.jaxpr)
        if not fused:
            return apply_fn(*args, **kwargs)
        outputs = _evaluate(closed.jaxpr, list(closed.consts), values, fused, skipped)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outputs)

    return apply


__all__ = ["plan", "pool_first"]
