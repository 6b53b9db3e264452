"""A population of N members trained three ways, timed per step on this machine's default backend:

- vmap:   one ``jit(vmap(train_step))`` over the stacked members (``population_train_step``, the
          "vmap" strategy of ``fit_population``);
- python: N separate states, one jitted ``train_step`` call per member per step (N sequential runs;
          the "loop" strategy of ``fit_population`` does this);
- map:    (with --lax-map) the members one after another inside one jitted program (``jax.lax.map``).

Each timing warms up (compiles) first, blocks on the result, and takes the median of several repeats.
It prints ms per step for the whole population and the crossover: the smallest N from which vmap is
faster than the Python loop. Usage:

    python -m benchmarks.experiments.population_vs_loop --models mlp,lenet5 --sizes 1,2,4,8,16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import models
from jaxvision.batch import Batch
from jaxvision.optimizers import make_optimizer
from jaxvision.population import _population_train_step, create_population, member_grid, member_keys, population_train_step
from jaxvision.train import create_train_state, train_step


def _time(function, repeats: int, steps: int) -> float:
    """Median seconds per call of ``function`` (which runs ``steps`` steps and returns arrays)."""
    jax.block_until_ready(function())  # compile and warm up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function())
        samples.append((time.perf_counter() - start) / steps)
    return statistics.median(samples)


@jax.jit
def _lax_map_step(population, batch, keys):
    """``_population_train_step`` with the members' vmap replaced by a sequential ``lax.map``."""

    def one(inputs):
        state, rate, active, member_batch, key = inputs
        single = population.replace(
            state=jax.tree.map(lambda x: x[None], state),
            dropout_rate=None if rate is None else rate[None],
            active=active[None],
        )
        new, metrics = _population_train_step(single, jax.tree.map(lambda x: x[None], member_batch), key[None],
                                              step=train_step)
        return jax.tree.map(lambda x: x[0], (new.state, metrics))

    state, metrics = jax.lax.map(one, (population.state, population.dropout_rate, population.active, batch, keys))
    return population.replace(state=state), metrics


def measure(model_name: str, size: int, *, batch_size: int, steps: int, repeats: int, lax_map: bool = False,
            kernels: str = "auto") -> dict[str, float]:
    """Seconds per population step (all N members one step) for each strategy."""
    model = models.get_model(model_name, num_classes=10, kernels=kernels)
    optimizer = make_optimizer("adam", 1e-3)
    members = member_grid(range(size))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(size, batch_size, 28, 28, 1)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 10, size=(size, batch_size)).astype(np.int32))
    batch = Batch(images=images, labels=labels, mask=jnp.ones((size, batch_size), jnp.float32))
    keys = jnp.stack([member_keys(m.seed)[1] for m in members])
    results = {}
    population = create_population(model, (28, 28, 1), optimizer, members)
    for name, step in (("vmap", population_train_step), ("map", _lax_map_step)):
        if name == "map" and not lax_map:
            continue

        def run(step=step, population=population):
            for _ in range(steps):
                population, metrics = step(population, batch, keys)
            return population.state.params, metrics

        results[name] = _time(run, repeats, steps)

    states = [create_train_state(model, (28, 28, 1), optimizer, member_keys(m.seed)[0]) for m in members]
    member_batches = [Batch(images=images[i], labels=labels[i], mask=batch.mask[i]) for i in range(size)]

    def run_python():
        outputs = []
        for i in range(size):
            state = states[i]
            for _ in range(steps):
                state, metrics = train_step(state, member_batches[i], keys[i])
            outputs.append(state.params)
        return outputs

    results["python"] = _time(run_python, repeats, steps)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.population_vs_loop",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,lenet5")
    parser.add_argument("--sizes", default="1,2,4,8,16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lax-map", action="store_true", help="also time members looped inside one program (jax.lax.map)")
    parser.add_argument("--kernels", choices=("auto", "reference", "cpu"), default="auto")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    device = jax.devices()[0]
    print(f"backend {jax.default_backend()} ({device.device_kind}), {os.cpu_count()} CPU cores, batch {args.batch_size} per member")
    report = {"backend": jax.default_backend(), "device": device.device_kind, "cpu_count": os.cpu_count(), "batch_size": args.batch_size, "models": {}}
    for model_name in args.models.split(","):
        print(f"\n{model_name}: ms per population step (all N members one step)")
        print(f"{'N':>4} {'vmap':>10} {'python':>10} {'lax.map':>10} {'vmap speedup':>13}")
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            seconds = measure(model_name, size, batch_size=args.batch_size, steps=args.steps, repeats=args.repeats,
                              lax_map=args.lax_map, kernels=args.kernels)
            speedup = seconds["python"] / seconds["vmap"]
            rows.append({"members": size, **{k: v * 1e3 for k, v in seconds.items()}, "vmap_speedup_over_python": speedup})
            lax_map = f"{seconds['map'] * 1e3:>10.2f}" if "map" in seconds else f"{'-':>10}"
            print(f"{size:>4} {seconds['vmap'] * 1e3:>10.2f} {seconds['python'] * 1e3:>10.2f} {lax_map} {speedup:>12.2f}x", flush=True)
        # The crossover: the smallest N from which vmap wins at every larger measured N too.
        crossover = None
        for row in reversed(rows):
            if row["members"] == 1 or row["vmap_speedup_over_python"] <= 1.0:
                break
            crossover = row["members"]
        where = f"vmap is faster from N = {crossover} on" if crossover else "vmap does not beat the Python loop at the largest N measured"
        print(f"crossover: {where}")
        report["models"][model_name] = {"rows": rows, "crossover_members": crossover}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
