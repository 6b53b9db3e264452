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
carries it; ``steps_for(state, compiler_options=...)`` overrides it. Elsewhere (GPU, TPU) XLA's
defaults always apply. ``jaxvision.fit`` uses these steps; ``jaxvision.train_step`` itself, and the
population, ensemble and data-parallel steps, compile with XLA's defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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
def _jitted_steps(options: tuple[tuple[str, Any], ...]) -> tuple[TrainStepFn, EvalStepFn]:
    compiler_options = dict(options) or None
    return (jax.jit(train_step_unjitted, compiler_options=compiler_options),
            jax.jit(eval_step_unjitted, compiler_options=compiler_options))


def steps_for(state: TrainState, *, compiler_options: dict[str, Any] | None = None) -> tuple[TrainStepFn, EvalStepFn]:
    """``(train_step, eval_step)``, jitted with ``step_compiler_options(state)`` or ``compiler_options``.

    The functions are ``jaxvision.train_step`` and ``jaxvision.eval_step`` compiled differently (same
    arguments, same results up to float32 rounding). One pair exists per set of options, so every
    state of a network shares its compiled programs.
    """
    options = step_compiler_options(state) if compiler_options is None else compiler_options
    return _jitted_steps(tuple(sorted(options.items())))


__all__ = ["LEGACY_CPU_EMITTERS", "step_compiler_options", "steps_for"]
