"""Train steps of the pooling networks as they were and as they are now, in one process, steps interleaved.

    python -m benchmarks.pooling                          # MnistCNN b64/b128, LeNet-5 b32/b128
    python -m benchmarks.pooling --rows simple_cnn:128 --pairs 60

Three settings of the same network and parameters, each traced under its own code path:
- ``before``: conv -> + bias -> activation -> max pool, and autodiff's gradient of ``jnp.max``;
- ``pool-first``: ``ConvPool``'s order (conv -> max pool -> + bias -> activation), autodiff's max;
- ``now``: that order and ``layers.max_pool_2d``'s first-maximum gradient (what the models run).
Steps run interleaved (before, pool-first, now, then the reverse order, ...), so the machine's drift
hits all alike; the report gives each setting's median step, its CPU time per step, and in how many
rounds it beat ``before``. benchmarks/README.md ("Where the time goes", item 13) has the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections.abc import Iterator
from typing import Any

# Imports of jax and jaxvision wait until main() has set XLA_FLAGS as benchmarks.run does.
SETTINGS = ("before", "pool-first", "now")
DEFAULT_ROWS = "mnist_cnn:64,mnist_cnn:128,lenet5:32,lenet5:128"


def _autodiff_max_pool(x: Any, window: int) -> Any:
    """``layers.max_pool_2d`` as it was: ``jnp.max`` over the reshaped windows, differentiated by JAX."""
    import jax.numpy as jnp

    batch, height, width, channels = x.shape
    return jnp.max(x.reshape(batch, height // window, window, width // window, window, channels), axis=(2, 4))


@contextlib.contextmanager
def code_path(setting: str) -> Iterator[None]:
    """Within the block, ``ConvPool`` and ``pool_2d`` trace as ``setting`` says (module docstring)."""
    from jaxvision.models import conv_pool, layers

    saved = conv_pool.pools_first, layers.max_pool_2d
    if setting == "before":
        conv_pool.pools_first = lambda activation, pooling: False
    if setting in ("before", "pool-first"):
        layers.max_pool_2d = _autodiff_max_pool
    try:
        yield
    finally:
        conv_pool.pools_first, layers.max_pool_2d = saved


def compare(model: str, batch_size: int, *, pairs: int) -> dict[str, dict[str, Any]]:
    """Per setting: the compiled step's wall and CPU seconds of every interleaved step, and a hash of its
    optimised HLO (JAX's trace cache must not hand one setting another's program)."""
    import jax

    from benchmarks.jax_bench import MODELS_BY_NAME, build
    from jaxvision.step_compilation import step_compiler_options
    from jaxvision.train import train_step_unjitted

    _, state, batch, key = build(MODELS_BY_NAME[model], batch_size, "float32", images="auto")
    options = step_compiler_options(state) or None
    results: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        # A fresh function object per setting: jax.jit's trace cache is keyed on the function, and the
        # same train_step_unjitted with the same state would hand every setting the first program.
        with code_path(setting):
            lowered = jax.jit(functools.partial(train_step_unjitted)).lower(state, batch, key)
        compiled = lowered.compile(compiler_options=options)
        results[setting] = {"compiled": compiled, "state": state, "wall_s": [], "cpu_s": [],
                            "program_hash": hash(compiled.as_text())}
    for setting in SETTINGS:
        result = results[setting]
        for _ in range(3):
            result["state"], metrics = result["compiled"](result["state"], batch, key)
        jax.block_until_ready(metrics)
    for pair in range(pairs):
        for setting in SETTINGS if pair % 2 == 0 else SETTINGS[::-1]:
            result = results[setting]
            wall, cpu = time.perf_counter(), time.process_time()
            result["state"], metrics = result["compiled"](result["state"], batch, key)
            jax.block_until_ready(metrics)
            result["wall_s"].append(time.perf_counter() - wall)
            result["cpu_s"].append(time.process_time() - cpu)
    for result in results.values():
        del result["compiled"], result["state"]
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pooling", description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"model:batch,... (default {DEFAULT_ROWS})")
    p.add_argument("--pairs", type=int, default=100, help="interleaved steps per setting")
    args = p.parse_args(argv)
    if args.pairs < 1:
        p.error(f"Invalid --pairs {args.pairs}: expected a positive integer, e.g. 100.")
    from benchmarks.run import configure_environment, parse_args

    configure_environment(parse_args([]))  # XLA flags and TFDS data dir as benchmarks.run sets them
    from benchmarks.page_faults import parse_rows

    for model, batch_size in parse_rows(args.rows):
        results = compare(model, batch_size, pairs=args.pairs)
        before = results["before"]["wall_s"]
        programs = len({result["program_hash"] for result in results.values()})
        note = "" if programs == len(SETTINGS) else " (the network has no ConvPool, or no max pool)"
        print(f"{model} batch {batch_size}, {args.pairs} interleaved steps per setting, "
              f"{programs} distinct programs{note}:")
        for setting, result in results.items():
            wins = sum(new < old for new, old in zip(result["wall_s"], before)) / len(before)
            print(f"  {setting:<10} median {statistics.median(result['wall_s']) * 1e3:7.2f} ms"
                  f"  cpu {statistics.median(result['cpu_s']) * 1e3:7.2f} ms/step"
                  + ("" if setting == "before" else f"  faster than before in {wins:.0%} of steps"), flush=True)


if __name__ == "__main__":
    main()
