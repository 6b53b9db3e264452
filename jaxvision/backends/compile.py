"""How a network's programs compile: the one place that picks XLA compile options, and the one jit.

On XLA:CPU, the pooling networks' steps are faster with XLA's legacy loop emitters
(``xla_cpu_use_fusion_emitters=False``: several times faster on max pooling's window reductions)
and the ResNets' with XLA's defaults (faster on their many kernel-gradient layout transposes); see
``jaxvision/backends/cpu/README.md``. So on CPU a network built with the CPU layers (``kernels="cpu"``,
the default there; or a network with no layers to inject, such as the MLPs) and without batch norm
compiles with the legacy emitters; everything else (the reference layers, batch norm, any GPU or TPU)
with XLA's defaults; ``compiler_options={}`` asks for XLA's defaults explicitly. The state's ``batch_stats`` is the
proxy for "pools often, few kernel gradients".

``compile_step`` is the only jit of a network's step programs: ``train_step`` users, ``fit``,
populations (both strategies) and data parallelism all go through it, so one network's steps compute
the same float32 results whichever of them runs them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxvision.backends import kernels_of

# XLA:CPU's legacy loop emitters; the flag is XLA:CPU's, so it is only ever passed on CPU.
LEGACY_CPU_EMITTERS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False}
# Initialisation runs once: optimising the threefry RNG of every initialiser dominated its compile
# (MnistCNN on 2 cores: 1.9 s optimised against 0.6 s, for a 40 ms instead of 8 ms run).
INIT_COMPILER_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0}


def _uses_cpu_layers(model: nn.Module | None) -> bool:
    # A network with nothing to inject (the MLPs) runs the same layers either way: on CPU it takes
    # the CPU options unless it was built with the reference layers.
    return model is not None and jax.default_backend() == "cpu" and kernels_of(model) in ("cpu", None)


def model_of(state: Any) -> nn.Module | None:
    """The Flax module whose ``apply`` is ``state.apply_fn`` (None for any other function)."""
    owner = getattr(getattr(state, "apply_fn", None), "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def compiler_options(model: nn.Module | None, *, has_batch_norm: bool) -> dict[str, Any]:
    """XLA compile options for the train and eval programs of ``model`` on the current backend."""
    return dict(LEGACY_CPU_EMITTERS) if _uses_cpu_layers(model) and not has_batch_norm else {}


def step_compiler_options(state: Any) -> dict[str, Any]:
    """``compiler_options`` of the network behind a TrainState (or a stacked population's state)."""
    return compiler_options(model_of(state), has_batch_norm=bool(state.batch_stats))


def initialization_compiler_options(model: nn.Module | None) -> dict[str, Any]:
    """Compile options of an initialisation program (no backend optimisation; the CPU layers' emitters)."""
    legacy = LEGACY_CPU_EMITTERS if _uses_cpu_layers(model) else {}
    return {**INIT_COMPILER_OPTIONS, **legacy}


def resolve_compiler_options(state: Any, compiler_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``compiler_options`` if given (``{}``: XLA's defaults), else ``step_compiler_options(state)``."""
    return step_compiler_options(state) if compiler_options is None else dict(compiler_options)


@functools.cache
def _jitted(function: Callable, options: tuple[tuple[str, Any], ...], static_argnames: tuple[str, ...]) -> Callable:
    return jax.jit(function, static_argnames=static_argnames or None, compiler_options=dict(options) or None)


def compile_step(function: Callable, state: Any, *, static_argnames: str | Sequence[str] = (),
                 compiler_options: dict[str, Any] | None = None) -> Callable:
    """``jax.jit(function)`` with the compile options of ``state``'s network (or ``compiler_options``).

    One jitted function exists per ``(function, options, static_argnames)``, so the states of one
    network share their compiled programs; ``function`` must be a stable object (a module-level
    function, or a method of an equal step object), not a fresh lambda.

    Args:
      function: the un-jitted program (a train step, an eval step, a population step).
      state: a TrainState, or a population's stacked one; its ``apply_fn`` and ``batch_stats`` are read.
      static_argnames: as for ``jax.jit``.
      compiler_options: options that replace the chosen ones; ``{}`` is XLA's defaults.
    """
    names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
    options = tuple(sorted(resolve_compiler_options(state, compiler_options).items()))
    return _jitted(function, options, names)


__all__ = [
    "INIT_COMPILER_OPTIONS",
    "LEGACY_CPU_EMITTERS",
    "compile_step",
    "compiler_options",
    "initialization_compiler_options",
    "model_of",
    "resolve_compiler_options",
    "step_compiler_options",
]
