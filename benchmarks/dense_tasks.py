"""The train step of each task's default network on 64x64 ``shapes``-sized inputs, with flax's layers
(``kernels="reference"``) and the XLA:CPU kernels (``"cpu"``) side by side in one process, alternating, after a
warm-up: the measurement behind the ``kernels`` each task defaults to (``jaxvision.tasks.DEFAULTS``).

    python -m benchmarks.dense_tasks [--batch-size 32] [--repeats 5] [--steps 4]

Synthetic inputs and targets (the step's cost does not depend on their values). Prints images/s as the median
(min, max) over repeats and the cpu/reference ratio; the record goes to ``--output`` (default runs/benchmarks/).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision import jsonio
from jaxvision.batch import Batch
from jaxvision.tasks import DEFAULTS, build_model, make_task
from jaxvision.train import create_train_state, make_train_step

SHAPE = (64, 64, 3)
KERNELS = ("reference", "cpu")


def _targets(task: str, batch: int):
    if task == "binary":
        return jnp.ones(batch)
    if task == "regress":
        return jnp.zeros((batch, 1))
    if task == "segment":
        return jnp.zeros((batch, *SHAPE[:2]), jnp.int32)
    boxes = jnp.tile(jnp.asarray([[[4.0, 4.0, 20.0, 20.0], [30.0, 30.0, 50.0, 50.0], [0.0, 0.0, 0.0, 0.0]]]), (batch, 1, 1))
    return {"boxes": boxes, "classes": jnp.zeros((batch, 3), jnp.int32),
            "valid": jnp.tile(jnp.asarray([[True, True, False]]), (batch, 1))}


def _task(name: str):
    names = {"binary": ("no", "yes"), "regress": ("area",), "segment": ("bg", "a", "b", "c"), "detect": ("a", "b", "c")}[name]
    return make_task(name, names, np.asarray([[0.0], [1.0]]), SHAPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="steps per timed repeat")
    parser.add_argument("--tasks", default="binary,segment,detect")
    parser.add_argument("--output", default=os.path.join("runs", "benchmarks"))
    args = parser.parse_args()
    rows = []
    for name in args.tasks.split(","):
        task = _task(name)
        step = make_train_step(loss=task.loss, score=task.score)
        batch = Batch(images=jnp.ones((args.batch_size, *SHAPE)), labels=_targets(name, args.batch_size),
                      mask=jnp.ones(args.batch_size))
        states = {}
        for kernels in KERNELS:
            model = build_model(task, DEFAULTS[name]["model"], SHAPE, kernels=kernels)
            state = create_train_state(model, SHAPE, optax.adam(1e-3), jax.random.key(0))
            state, _ = step(state, batch, jax.random.key(1))  # compile and warm up
            states[kernels] = jax.block_until_ready(state)
        seconds = {kernels: [] for kernels in KERNELS}
        for _ in range(args.repeats):
            for kernels in KERNELS:  # alternating, so drift on a shared host hits both alike
                state = states[kernels]
                began = time.perf_counter()
                for _ in range(args.steps):
                    state, metrics = step(state, batch, jax.random.key(1))
                jax.block_until_ready((state, metrics))
                seconds[kernels].append(time.perf_counter() - began)
                states[kernels] = state
        rate = {k: [args.steps * args.batch_size / s for s in v] for k, v in seconds.items()}
        row = {"task": name, "model": DEFAULTS[name]["model"], "batch_size": args.batch_size,
               **{f"{k}_images_per_second": {"median": float(np.median(v)), "min": float(min(v)), "max": float(max(v))}
                  for k, v in rate.items()},
               "cpu_over_reference": float(np.median(rate["cpu"]) / np.median(rate["reference"]))}
        rows.append(row)
        cells = "  ".join(f"{k} {np.median(v):7.1f} ({min(v):.1f}-{max(v):.1f})" for k, v in rate.items())
        print(f"{name:<8} {row['model']:<11} images/s  {cells}  cpu/reference {row['cpu_over_reference']:.2f}x", flush=True)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "dense_tasks.json")
    jsonio.write_json(path, {"backend": jax.default_backend(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
