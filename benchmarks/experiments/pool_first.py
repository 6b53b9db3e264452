"""Train steps with and without the pool-first rewrite, and with two max-pool forms, in one process.

    python -m benchmarks.experiments.pool_first                 # LeNet-5 and MnistCNN at batch 128
    python -m benchmarks.experiments.pool_first --rows vgg11_cifar:32 --rounds 4 --steps 10

Every row's train step (SGD momentum, the inputs of ``benchmarks.run``, the CPU layers) is compiled
four ways: with ``jaxvision.backends.training_forward``'s pool-first rewrite (what ``fit`` runs) or
the model's ``apply`` as written, each with the differentiated max pool's plain ``jnp.max``
reduction (what the library runs, ``pooling._maxima_and_first``) or the NaN-keeping maxima of the
pool's undifferentiated form (``pooling._window_maxima``; XLA:CPU's max-reduction drops a NaN on
larger maps). The steps are timed in alternating rounds, so machine drift hits them alike.
benchmarks/NOTES.md (2026-12-03) has the figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

# Imports of jax and jaxvision wait until main() has set XLA_FLAGS as benchmarks.run does.
VARIANTS = ("pool first, plain max", "pool first, NaN-keeping", "as written, plain max", "as written, NaN-keeping")
DEFAULT_ROWS = "lenet5:128,mnist_cnn:128"


def compare(model: str, batch_size: int, *, rounds: int, steps: int) -> dict[str, list[float]]:
    """Median step seconds of every round, per variant."""
    import jax
    import jax.numpy as jnp

    import jaxvision.train as train_module
    from benchmarks.jax_bench import MODELS_BY_NAME, build
    from jaxvision.backends.compile import step_compiler_options
    from jaxvision.backends.cpu import pooling

    _, state, batch, key = build(MODELS_BY_NAME[model], batch_size, "float32", kernels="cpu", images="auto")
    options = step_compiler_options(state) or None
    step = train_module.make_train_step().unjitted
    forward, maxima_and_first = train_module.training_forward, pooling._maxima_and_first

    def nan_keeping(x: Any, window: int) -> tuple[Any, Any]:
        # The pool's undifferentiated form (pooling._window_maxima) with the index found from it.
        maxima = pooling._window_maxima(x, window)
        first = jnp.full(maxima.shape, window * window - 1, jnp.int8)
        for k in reversed(range(window * window)):
            entry = pooling._windows(x, window)[:, :, k // window, :, k % window, :]
            hit = (entry == maxima) | (jnp.isnan(entry) & jnp.isnan(maxima))
            first = jnp.where(hit, jnp.int8(k), first)
        return maxima, first

    compiled: dict[str, Any] = {}
    try:
        for variant in VARIANTS:
            # Both choices are read when the step is traced, so each variant is traced with its own.
            train_module.training_forward = forward if variant.startswith("pool first") else (lambda apply_fn: apply_fn)
            pooling._maxima_and_first = nan_keeping if variant.endswith("NaN-keeping") else maxima_and_first
            compiled[variant] = jax.jit(lambda *a: step(*a), compiler_options=options).lower(state, batch, key).compile()
    finally:
        train_module.training_forward, pooling._maxima_and_first = forward, maxima_and_first
    results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_index in range(rounds):
        order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            current = state
            for _ in range(3):
                current, metrics = compiled[variant](current, batch, key)
            jax.block_until_ready(metrics)
            seconds = []
            for _ in range(steps):
                begin = time.perf_counter()
                current, metrics = compiled[variant](current, batch, key)
                jax.block_until_ready(metrics)
                seconds.append(time.perf_counter() - begin)
            results[variant].append(statistics.median(seconds))
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.experiments.pool_first", description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"model:batch,... (default {DEFAULT_ROWS})")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round and variant")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        p.error(f"Invalid --rounds {args.rounds} / --steps {args.steps}: expected positive integers.")
    from benchmarks.run import configure_environment, parse_args

    configure_environment(parse_args(["--kernels", "cpu"]))  # XLA flags and TFDS dir as benchmarks.run sets them
    from benchmarks.experiments import parse_rows
    from benchmarks.jax_bench import available_models

    try:
        rows = parse_rows(args.rows)
        available_models([model for model, _ in rows], "cpu")
    except ValueError as error:
        p.error(str(error))
    for model, batch_size in rows:
        results = compare(model, batch_size, rounds=args.rounds, steps=args.steps)
        print(f"{model} batch {batch_size}, CPU layers, median step ms over rounds (min-max):")
        for variant, seconds in results.items():
            print(f"  {variant:<25} {statistics.median(seconds) * 1e3:6.2f} ms "
                  f"({min(seconds) * 1e3:.2f}-{max(seconds) * 1e3:.2f})", flush=True)


if __name__ == "__main__":
    main()
