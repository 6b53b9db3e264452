"""Host memory: back XLA:CPU's per-step buffers with transparent huge pages.

Every call of a compiled XLA:CPU program allocates its temporary buffer (the activations and gradients
of a train step, tens to hundreds of MB) with ``malloc`` and frees it on return. glibc serves a request
over its mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns it with ``munmap``, so every
step touches brand-new memory, and the kernel faults in and zeroes it one 4 KiB page at a time. On the
2-core CPU of benchmarks/NOTES.md ("Where the time goes", item 11) that was 13,000 faults per LeNet-5
step at batch 512 (51 MB of temporaries), 17,700 per SimpleCNN step at batch 128 (68 MB) and 60,000 per
ResNet-20 step at batch 128 (234 MB), with 28, 40 and 131-148 ms of system time.

glibc's ``glibc.malloc.hugetlb=1`` tunable (glibc 2.35+) makes ``malloc`` ask for transparent huge
pages (``madvise(MADV_HUGEPAGE)``) on the memory it maps, so the same buffer faults in 2 MiB at a
time: ~500 faults instead of 13,000-60,000. Medians of three alternating processes per setting, train
step in ms: LeNet-5 batch 512 54.6-62.4 -> 37.9-44.5, ResNet-20 batch 128 442-444 -> 374-416,
SimpleCNN batch 128 117-119 -> 97-120, LeNet-5 and MnistCNN at batch 128 (temporaries under the
threshold) unchanged. Two alternatives measured and rejected: keeping the freed memory instead
(``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0`` and no trimming) removes the faults too but makes the small
models' steps 15-20% slower (every thread then shares one malloc arena) and grows the heap to a few
times the buffer; and ``mallopt`` at run time cannot do it, since glibc fixes the arena count when a
second thread first allocates, which importing NumPy already does.

Tunables are read when the process starts, hence ``restart_with_huge_pages``. No library does this
for us: XLA's CPU client allocates with the C library and has no allocator option, and preloading
jemalloc or tcmalloc would also need a restart and a library that does not ship with the dependencies.
It needs the kernel's transparent huge pages in ``madvise`` or ``always`` mode (the usual defaults).
"""

from __future__ import annotations

import os
import platform
import sys

HUGE_PAGE_TUNABLE = "glibc.malloc.hugetlb=1"
# Set to 1 to keep glibc's defaults in ``jaxvision train`` and ``python -m benchmarks.run``.
OPT_OUT_VARIABLE = "JAXVISION_KEEP_MALLOC"
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def is_glibc() -> bool:
    """Whether this process's C library is glibc, whose tunable this module sets."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def transparent_huge_pages_mode() -> str | None:
    """The kernel's transparent-huge-page mode: "always", "madvise", "never", or None if unknown."""
    try:
        with open(_THP_MODE_FILE) as f:
            modes = f.read().split()
    except OSError:
        return None
    selected = [mode[1:-1] for mode in modes if mode.startswith("[")]
    return selected[0] if selected else None


def uses_huge_pages() -> bool:
    """Whether this process started with ``HUGE_PAGE_TUNABLE`` in ``GLIBC_TUNABLES``, on glibc."""
    tunables = os.environ.get("GLIBC_TUNABLES", "").split(":")
    return is_glibc() and "glibc.malloc.hugetlb" in {tunable.split("=")[0] for tunable in tunables}


def restart_with_huge_pages() -> None:
    """Re-executes this very command line with ``HUGE_PAGE_TUNABLE`` added to ``GLIBC_TUNABLES``.

    Call it first thing in a command-line entry point, before anything worth keeping has happened:
    ``os.execve`` replaces the process (same interpreter, arguments and working directory) and the new
    one finds the tunable set and carries on. It does nothing when the tunable is already there, off
    glibc, when the kernel's transparent huge pages are off ("never"), without a command line to run
    again (an embedded interpreter), or when ``JAXVISION_KEEP_MALLOC=1``. Never call it from a library
    function or a test: it ends the process.
    """
    if (uses_huge_pages() or not is_glibc() or transparent_huge_pages_mode() in (None, "never")
            or os.environ.get(OPT_OUT_VARIABLE) == "1" or len(sys.orig_argv) < 2):
        return  # (an embedded interpreter has no command line to run again)
    tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), HUGE_PAGE_TUNABLE]))
    print(f"restarting with GLIBC_TUNABLES={tunables}: XLA:CPU's per-step buffers on huge pages, ~500 page "
          f"faults a step instead of tens of thousands (jaxvision/backends/cpu/host_memory.py; {OPT_OUT_VARIABLE}=1 keeps "
          "glibc's defaults)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, "GLIBC_TUNABLES": tunables})


def minor_page_faults() -> int:
    """Minor page faults of this process so far (``getrusage``); 0 where the platform has no counter.

    Benchmarks read it before and after a loop of steps: faults per step near the program's temporary
    buffer in 4 KiB pages (``compiled.memory_analysis().temp_size_in_bytes / 4096``) are the symptom
    that ``restart_with_huge_pages`` treats.
    """
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
