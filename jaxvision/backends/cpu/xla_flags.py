"""XLA:CPU flags the command line sets for training, before JAX starts its backend."""

from __future__ import annotations

import os

import jaxlib

# XLA:CPU (jaxlib 0.10) sends convolutions through YNNPACK fusions by default. For training these run
# on one thread and make the kernel gradient slow: benchmarks/NOTES.md measured SimpleCNN's train step
# at 500 ms with them and 244 ms without (VGG-11 2.26 s -> 1.66 s, LeNet-5 30.6 -> 26.6 ms) on 2 cores.
# Inference-only graphs are faster with them, so only the training commands turn them off, and never
# over a user's own XLA_FLAGS setting. Older jaxlibs do not know the flag (XLA aborts on unknown flags).
_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
_FIRST_JAXLIB_WITH_FLAG = (0, 10)


def _jaxlib_version() -> tuple[int, ...]:
    return tuple(int(part) for part in jaxlib.__version__.split(".")[:2] if part.isdigit())


def use_fast_cpu_training_flags() -> None:
    """Adds the flag to XLA_FLAGS unless the user set it, or opted out with JAXVISION_KEEP_XLA_FLAGS=1.

    Has no effect once JAX's backend has started (XLA reads XLA_FLAGS once) and none off CPU.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("JAXVISION_KEEP_XLA_FLAGS") or "ynn_fusion_type" in flags or _jaxlib_version() < _FIRST_JAXLIB_WITH_FLAG:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}".strip()
