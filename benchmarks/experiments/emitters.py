"""Train steps compiled with XLA:CPU's default fusion emitters against its legacy ones, in one process.

    python -m benchmarks.experiments.emitters            # MnistCNN b64/b128, LeNet-5 b128, ResNet-20 b32
    python -m benchmarks.experiments.emitters --rows simple_cnn:128 --rounds 5 --steps 10 --kernels reference

Compile options act per program, so one process compiles every row's train step (SGD momentum, the
inputs of ``benchmarks.run``) both ways and times them in alternating rounds: machine drift then hits
both alike. ``jaxvision.backends.compile`` picks the legacy emitters on CPU for networks built with the
CPU kernels and without batch norm; benchmarks/NOTES.md (item 12) has the figures, measured on one
AVX2 host, which is why this is kept: to check the choice on another CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

# Imports of jax and jaxvision wait until main() has set XLA_FLAGS as benchmarks.run does.
SETTINGS = ("default", "legacy")
DEFAULT_ROWS = "mnist_cnn:64,mnist_cnn:128,lenet5:128,resnet20:32"


def compare(model: str, batch_size: int, *, rounds: int, steps: int, kernels: str = "auto") -> dict[str, dict[str, Any]]:
    """Compile seconds and the median step seconds of every round, per setting; ``chosen`` marks the
    setting ``jaxvision.backends.compile`` picks for this network."""
    import jax

    from benchmarks.jax_bench import MODELS_BY_NAME, build
    from jaxvision.backends.compile import LEGACY_CPU_EMITTERS, step_compiler_options
    from jaxvision.train import train_step

    options_of = {"default": {}, "legacy": LEGACY_CPU_EMITTERS}

    _, state, batch, key = build(MODELS_BY_NAME[model], batch_size, "float32", kernels=kernels, images="auto")
    lowered = jax.jit(train_step.unjitted).lower(state, batch, key)
    results: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        options = options_of[setting]
        start = time.perf_counter()
        compiled = lowered.compile(compiler_options=options)
        results[setting] = {"compiled": compiled, "compile_s": time.perf_counter() - start, "step_s": [],
                            "chosen": step_compiler_options(state) == options}
    for round_index in range(rounds):
        order = SETTINGS if round_index % 2 == 0 else SETTINGS[::-1]
        for setting in order:
            compiled, current = results[setting]["compiled"], state
            for _ in range(3):
                current, metrics = compiled(current, batch, key)
            jax.block_until_ready(metrics)
            seconds = []
            for _ in range(steps):
                begin = time.perf_counter()
                current, metrics = compiled(current, batch, key)
                jax.block_until_ready(metrics)
                seconds.append(time.perf_counter() - begin)
            results[setting]["step_s"].append(statistics.median(seconds))
    for result in results.values():
        del result["compiled"]
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.experiments.emitters", description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"model:batch,... (default {DEFAULT_ROWS})")
    p.add_argument("--kernels", choices=("auto", "reference", "cpu"), default="auto")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=15, help="timed steps per round and setting")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        p.error(f"Invalid --rounds {args.rounds} / --steps {args.steps}: expected positive integers.")
    from benchmarks.run import configure_environment, parse_args

    configure_environment(parse_args(["--kernels", args.kernels]))  # XLA flags and TFDS dir as benchmarks.run sets them
    from benchmarks.experiments import parse_rows

    rows = parse_rows(args.rows)
    for model, batch_size in rows:
        results = compare(model, batch_size, rounds=args.rounds, steps=args.steps, kernels=args.kernels)
        print(f"{model} batch {batch_size}, kernels {args.kernels}, median step ms per round (compile s); "
              "* = jaxvision.backends.compile's choice:")
        for setting, result in results.items():
            steps = "/".join(f"{s * 1e3:.1f}" for s in result["step_s"])
            mark = "*" if result["chosen"] else " "
            print(f"  {mark} {setting:<8} {steps:>24} ms  ({result['compile_s']:.2f} s)", flush=True)


if __name__ == "__main__":
    main()
