"""Process-level settings for XLA:CPU training: applied by the training commands, on CPU only.

Two things must happen before JAX starts its backend, so the command line does them, never a library
function: turning off XLA:CPU's YNNPACK convolution fusions (``cpu/xla_flags.py``) and restarting the
process with huge pages for XLA:CPU's per-step buffers (``cpu/host_memory.py``). Both only where the
platform JAX will pick is the CPU, and ``--kernels reference`` skips them.
"""

from __future__ import annotations

import importlib.util
import os

from jaxvision.backends.cpu.host_memory import restart_with_huge_pages
from jaxvision.backends.cpu.xla_flags import use_fast_cpu_training_flags

# JAX's accelerator plugins; with none installed (and no JAX_PLATFORMS), JAX runs on the CPU.
_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")


def platform_is_cpu() -> bool:
    """Whether JAX will run on the CPU, decided without starting JAX's backend."""
    platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME") or ""
    if platforms.strip():
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not any(_installed(name) for name in _ACCELERATOR_PLUGINS)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def prepare_training_process(*, restart: bool) -> None:
    """On a CPU platform: the XLA:CPU training flag, then (if ``restart``) the huge-page restart.

    Call first thing in a training command, before JAX is used. ``restart`` re-executes the process
    (``restart_with_huge_pages``); pass False when the caller's process must stay as it is.
    """
    if not platform_is_cpu():
        return
    use_fast_cpu_training_flags()
    if restart:
        restart_with_huge_pages()


__all__ = ["platform_is_cpu", "prepare_training_process"]
