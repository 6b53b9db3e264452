"""How the train and eval steps compile for a given network: XLA's compile options, chosen per state.

XLA:CPU (jaxlib 0.10) generates its loop fusions with the newer MLIR fusion emitters by default. For
the window reductions of max pooling (``layers.pool_2d``: a max over a reshaped 2x2 window) and their
gradients, XLA's legacy emitters (``xla_cpu_use_fusion_emitters=False``) are several times faster;
for the layout transposes in front of a convolution's kernel gradient they are 10-25% slower.
Medians of 30-40 calls, batch 128, 2-core AVX2, milliseconds, default -> legacy emitters:

| what | shape | default | legacy |
|---|---|---|---|
| bias + ReLU + 2x2 max pool, forward | [128, 28, 28, 24] | 1.31-2.36 | 0.27-0.31 |
| the same, forward + backward | [128, 28, 28, 24] | 5.4-6.5 | 2.8-4.1 |
| the same, forward + backward | [128, 14, 14, 32] | 1.8-2.8 | 0.85-1.24 |
| 3x3 convolution, kernel gradient | [128, 32, 32, 16] -> 16 | 10.3-10.4 | 11.5-12.2 |
| the same | [128, 16, 16, 32] -> 32 | 7.0-7.7 | 8.1-9.7 |
| the same | [128, 26, 26, 32] -> 64 | 25.5-25.7 | 28.0-30.0 |
| 3x3 convolution, forward and input gradient | all of the above | equal | equal |

Whole train steps follow (one process, both programs, alternating rounds): the pooling networks are
faster with the legacy emitters (MnistCNN at batch 64 10.3-11.8 -> 9.4-10.5 ms, LeNet-5 at batch 32
2.7-4.0 -> 2.3-3.1 ms, SimpleCNN at batch 128 96-107 -> 94-103 ms, VGG-11 and the MLP level) and
compile 25-40% sooner (MnistCNN 0.67-0.85 -> 0.43-0.45 s); ResNet-20, which pools once and spends its
time in 19 kernel gradients, is 10-20% slower (batch 128 387-444 -> 470-519 ms) and compiles slower
(2.5-2.8 -> 3.9-4.9 s). More in benchmarks/README.md, item 12.

So on CPU, networks without batch norm (no ``batch_stats``: the MLPs and pooling CNNs) compile their
steps with the legacy emitters, and networks with batch norm (the ResNets) with XLA's defaults. The
state's ``batch_stats`` is a proxy for "pools often, few kernel gradients", chosen because the state
carries it; ``steps_for(state, compiler_options=...)`` overrides it. VGG-11 with batch norm, which pools
like VGG-11 but keeps the defaults under this rule, times the same either way (batch 32 256-315 against
262-286 ms, batch 128 935-998 against 933-1004 ms). Elsewhere (GPU, TPU) XLA's
defaults always apply. ``jaxvision.fit`` uses these steps, and ``jit_with_step_options`` compiles
other programs of a state the same way: ``fit_population``'s train and eval programs (both
strategies) and ``jaxvision.parallel.make_data_parallel_step``. ``jaxvision.train_step``,
``jaxvision.population.population_train_step`` and the DP-SGD steps of ``jaxvision.per_example``
compile with XLA's defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxvision.train import (
    LEGACY_CPU_EMITTERS,
    Batch,
    Metrics,
    TrainState,
    eval_step_unjitted,
    legacy_emitters_on_cpu,
    train_step_unjitted,
)

TrainStepFn = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]
EvalStepFn = Callable[[TrainState, Batch], Metrics]


def step_compiler_options(state: TrainState) -> dict[str, Any]:
    """The XLA compile options for ``state``'s steps on the current backend (empty: XLA's defaults)."""
    return {} if state.batch_stats else legacy_emitters_on_cpu()


@functools.cache
def _jitted(function: Callable, options: tuple[tuple[str, Any], ...], static_argnames: tuple[str, ...]) -> Callable:
    return jax.jit(function, static_argnames=static_argnames or None, compiler_options=dict(options) or None)


def jit_with_step_options(function: Callable, state: TrainState, *, static_argnames: str | Sequence[str] = (),
                          compiler_options: dict[str, Any] | None = None) -> Callable:
    """``jax.jit(function)`` compiled with ``step_compiler_options(state)`` (or ``compiler_options``).

    For any program that runs ``state``'s network the way a train or eval step does (a vmapped
    population step, a per-member step, an evaluation). One jitted function exists per
    ``(function, options, static_argnames)``, so calls with the states of one network share their
    compiled programs; ``function`` must therefore be a module-level function, not a fresh lambda.

    Args:
      function: the un-jitted function.
      state: a state (or a stacked population's state) of the network; only ``batch_stats`` is read.
      static_argnames: as for ``jax.jit``.
      compiler_options: XLA compile options that replace the chosen ones; ``{}`` is XLA's defaults.

    Returns:
      The jitted function.
    """
    names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
    return _jitted(function, _options_key(state, compiler_options), names)


def resolve_compiler_options(state: TrainState, compiler_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``compiler_options`` if given (``{}``: XLA's defaults), else ``step_compiler_options(state)``."""
    return step_compiler_options(state) if compiler_options is None else compiler_options


def _options_key(state: TrainState, compiler_options: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(resolve_compiler_options(state, compiler_options).items()))


@functools.cache
def _jitted_steps(options: tuple[tuple[str, Any], ...]) -> tuple[TrainStepFn, EvalStepFn]:
    return _jitted(train_step_unjitted, options, ()), _jitted(eval_step_unjitted, options, ())


def steps_for(state: TrainState, *, compiler_options: dict[str, Any] | None = None) -> tuple[TrainStepFn, EvalStepFn]:
    """``(train_step, eval_step)``, jitted with ``step_compiler_options(state)`` or ``compiler_options``.

    The functions are ``jaxvision.train_step`` and ``jaxvision.eval_step`` compiled differently (same
    arguments, same results up to float32 rounding). One pair exists per set of options, so every
    state of a network shares its compiled programs.
    """
    return _jitted_steps(_options_key(state, compiler_options))


__all__ = ["LEGACY_CPU_EMITTERS", "jit_with_step_options", "resolve_compiler_options", "step_compiler_options", "steps_for"]
