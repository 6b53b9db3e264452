"""Train steps with glibc's default malloc against huge pages (and kept memory), one process each.

    python -m benchmarks.experiments.page_faults        # LeNet-5 b512, SimpleCNN b128, ResNet-20 b128
    python -m benchmarks.experiments.page_faults --rows lenet5:128,mnist_cnn:128 --rounds 5

Malloc settings act from a process's start (``jaxvision/backends/cpu/host_memory.py``), so every (row,
setting) runs in a fresh child process, the settings alternating within each round. A child times
``--steps`` train steps (SGD momentum, synthetic inputs, after 4 untimed ones) and reports the median
step and the minor page faults per step. benchmarks/NOTES.md (item 11) has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.experiments import parse_rows
from benchmarks.run import NO_YNN_FLAG
from jaxvision.backends.cpu.host_memory import HUGE_PAGE_TUNABLE, OPT_OUT_VARIABLE

# Each setting's environment on top of the parent's (GLIBC_TUNABLES and the MALLOC_* variables removed).
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "huge-pages": {"GLIBC_TUNABLES": HUGE_PAGE_TUNABLE},
    # Rejected alternative: reuse freed memory (one arena, no mmap, no trimming).
    "kept-memory": {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)},
}
DEFAULT_ROWS = "lenet5:512,simple_cnn:128,resnet20:128"


def child(model: str, batch_size: int, steps: int) -> dict:
    """Times ``steps`` train steps in this process; returns the median seconds and faults per step."""
    import time

    import jax

    from benchmarks.jax_bench import MODELS_BY_NAME, build
    from benchmarks.timing import PageFaults
    from jaxvision.backends.compile import compile_step
    from jaxvision.train import train_step

    _, state, batch, key = build(MODELS_BY_NAME[model], batch_size, "float32", images="synthetic")
    step = compile_step(train_step.unjitted, state).lower(state, batch, key).compile()
    for _ in range(4):
        state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    seconds = []
    with PageFaults() as faults:
        for _ in range(steps):
            start = time.perf_counter()
            state, metrics = jax.block_until_ready(step(state, batch, key))
            seconds.append(time.perf_counter() - start)
    return {"step_s": statistics.median(seconds), "faults_per_step": faults.count / steps,
            "temp_bytes": step.memory_analysis().temp_size_in_bytes}


def run_child(model: str, batch_size: int, steps: int, setting: str) -> dict:
    inherited = {k: v for k, v in os.environ.items()
                 if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_") and k != OPT_OUT_VARIABLE}
    flags = inherited.get("XLA_FLAGS", "")
    if "ynn_fusion_type" not in flags:  # as benchmarks.run sets it on CPU
        flags = f"{flags} {NO_YNN_FLAG}".strip()
    environment = {**inherited, **SETTINGS[setting], "XLA_FLAGS": flags}
    done = subprocess.run([sys.executable, "-m", "benchmarks.experiments.page_faults", "--child", f"{model}:{batch_size}",
                           "--steps", str(steps)], capture_output=True, text=True, env=environment)
    if done.returncode:
        raise RuntimeError(f"{model} b{batch_size} ({setting}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.experiments.page_faults", description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"model:batch,... (default {DEFAULT_ROWS})")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated from {', '.join(SETTINGS)}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="timed steps per process")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        (model, batch_size), = parse_rows(args.child)
        print(json.dumps(child(model, batch_size, args.steps)))
        return
    settings = args.settings.split(",")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        p.error(f"Unknown settings {unknown}: known {', '.join(SETTINGS)}.")
    for model, batch_size in parse_rows(args.rows):
        results: dict[str, list[dict]] = {setting: [] for setting in settings}
        for round_index in range(args.rounds):
            for setting in settings if round_index % 2 == 0 else settings[::-1]:
                results[setting].append(run_child(model, batch_size, args.steps, setting))
        temp_mb = results[settings[0]][0]["temp_bytes"] / 2**20
        print(f"{model} batch {batch_size} ({temp_mb:.0f} MB of temporaries), median step ms per round / faults per step:")
        for setting, rounds in results.items():
            steps = "/".join(f"{r['step_s'] * 1e3:.1f}" for r in rounds)
            faults = "/".join(f"{r['faults_per_step']:.0f}" for r in rounds)
            print(f"  {setting:<12} {steps:>26} ms   {faults} faults", flush=True)


if __name__ == "__main__":
    main()
