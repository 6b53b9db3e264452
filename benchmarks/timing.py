"""Honest timing: warm up, ``block_until_ready``, repeat, report median/min/max; the device's peak
FLOP/s (measured on CPU, from a documented table on accelerators); page faults; the machine it all ran on."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from jaxvision.backends.cpu.host_memory import minor_page_faults

import jax
import jax.numpy as jnp

# Dense peak FLOP/s (no sparsity) from the vendors' data sheets, per chip.
PEAK_FLOPS_TABLE: dict[str, dict[str, float]] = {
    # NVIDIA H100 SXM5 data sheet: 989 TFLOP/s bf16 dense, 67 TFLOP/s fp32 (494 TF32 dense).
    "H100": {"bfloat16": 989e12, "float32": 67e12},
    # NVIDIA H200 SXM data sheet: same compute as the H100 SXM.
    "H200": {"bfloat16": 989e12, "float32": 67e12},
    # NVIDIA A100 SXM data sheet: 312 TFLOP/s bf16 dense, 19.5 TFLOP/s fp32.
    "A100": {"bfloat16": 312e12, "float32": 19.5e12},
    # Google Cloud TPU documentation: v4 275 TFLOP/s bf16, v5e 197 TFLOP/s bf16 per chip.
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12 / 4},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12 / 4},
    "TPU v5e": {"bfloat16": 197e12, "float32": 197e12 / 4},
}


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call over the timed repeats."""

    median: float
    min: float
    max: float
    repeats: int

    @classmethod
    def of(cls, seconds: list[float]) -> "Timing":
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds))


# Upper bound on timed calls per measurement when min_seconds asks for more than repeats.
MAX_TIMED_CALLS = 400


def timed_calls(call: Callable[[], Any], *, repeats: int, min_seconds: float = 0.0) -> list[float]:
    """Seconds of each of at least ``repeats`` calls of ``call`` (which must return only once its work is
    done), calling on until ``min_seconds`` have been timed, at most ``MAX_TIMED_CALLS`` calls.

    A fixed count gives millisecond steps a median of a few milliseconds of samples, which one
    scheduler hiccup on a shared 2-core VM moves by 50%; a time budget gives them hundreds of samples
    while leaving slow steps at ``repeats``.
    """
    seconds: list[float] = []
    timed = 0.0
    while len(seconds) < repeats or (timed < min_seconds and len(seconds) < MAX_TIMED_CALLS):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
        timed += seconds[-1]
    return seconds


def time_function(function: Callable[[], Any], *, repeats: int, warmup: int = 2, min_seconds: float = 0.0) -> Timing:
    """Calls ``function`` ``warmup`` times untimed, then times it (``timed_calls``), each call synced to completion."""
    for _ in range(warmup):
        jax.block_until_ready(function())
    return Timing.of(timed_calls(lambda: jax.block_until_ready(function()), repeats=repeats, min_seconds=min_seconds))


class PageFaults:
    """Counts this process's minor page faults inside a ``with`` block: ``count`` once it has closed.

    On XLA:CPU, faults per step near the step's temporary buffer in 4 KiB pages are the cost that huge
    pages remove (``jaxvision/backends/cpu/host_memory.py``). 0 where the platform has no counter.
    """

    def __init__(self) -> None:
        self.count = 0
        self._start = 0

    def __enter__(self) -> "PageFaults":
        self._start = minor_page_faults()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.count = minor_page_faults() - self._start


def time_compile(jitted: Any, *args: Any) -> tuple[Any, float, float | None]:
    """Lowers and compiles ``jitted`` for ``args``: (compiled, seconds, XLA's FLOP count or None)."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    seconds = time.perf_counter() - start
    return compiled, seconds, xla_flops(compiled)


def xla_flops(compiled: Any) -> float | None:
    """FLOPs of one call of a compiled executable, from XLA's cost analysis (None if it has none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def device_kind() -> str:
    return jax.devices()[0].device_kind


def peak_flops(dtype: str, *, size: int = 2048, repeats: int = 10) -> tuple[float, str]:
    """The device's peak FLOP/s in ``dtype`` and where the figure comes from.

    Known accelerators use ``PEAK_FLOPS_TABLE``; otherwise (CPU) the peak is measured: the best of
    ``repeats`` ``size x size`` matmuls, jitted, in ``dtype``. On a shared machine this is the peak
    available at the time, which is what the achieved figures are measured against too.
    """
    kind = device_kind()
    for name, peaks in PEAK_FLOPS_TABLE.items():
        if name.lower() in kind.lower() and dtype in peaks:
            return peaks[dtype], f"table: {name} {dtype} dense (vendor data sheet)"
    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    timing = time_function(lambda: matmul(a, a), repeats=repeats)
    return 2 * size**3 / timing.min, f"measured: best of {repeats} {size}x{size} {dtype} matmuls on {kind}"


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on the default device, where the backend reports it (not on CPU)."""
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def _git_commit() -> str:
    """The checkout's short commit, "-dirty" if it has changes; else $BENCHMARK_COMMIT, else "unknown".

    A copy of the source tree without its .git (a lent accelerator host) has no commit to read: pass
    it as ``BENCHMARK_COMMIT=<commit>`` so that the record still says what was measured.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fallback = os.environ.get("BENCHMARK_COMMIT") or "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.strip():
            return fallback
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    except OSError:  # no git executable
        return fallback
    return out.stdout.strip() + ("-dirty" if dirty.strip() else "")


def machine_info() -> dict[str, Any]:
    """Where and with what the run happened: host, backend, devices, versions, commit, load."""
    import flax
    import optax

    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "backend": jax.default_backend(),
        "device_kind": device_kind(),
        "device_count": jax.device_count(),
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
        "git_commit": _git_commit(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_start": _loadavg(),
    }
    try:
        import torch

        info["versions"]["torch"] = torch.__version__
    except ImportError:
        info["versions"]["torch"] = None  # the compare extra is not installed
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:  # not Linux
        names = []
    return names[0] if names else platform.processor()


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
