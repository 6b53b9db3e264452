"""What freezing buys: one train step with ``--finetune linear`` (no backbone gradient), ``last:1`` and
``all``, timed side by side in one process, alternating, after a warm-up.

    python -m benchmarks.finetune_speed [--model resnet18] [--image-size 64] [--batch-size 32] [--repeats 6]

The weights are the model's own random initialisation (the step's cost does not depend on their values),
so nothing is downloaded. Prints the median (min, max) step time per choice and the speed-up against
``all``; the record goes to ``--output`` (default runs/benchmarks/).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import optax

import jaxvision
from jaxvision import jsonio
from jaxvision.finetune import Weights, fine_tune_start

CHOICES = ("linear", "last:1", "all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--output", default=os.path.join("runs", "benchmarks"))
    args = parser.parse_args()
    shape = (args.image_size, args.image_size, 3)
    model = jaxvision.get_model(args.model, num_classes=10)
    source = jaxvision.create_train_state(model, shape, optax.sgd(0.1), jax.random.key(0))
    weights = Weights(variables=source.variables, source="random initialisation", kind="run", model_name=args.model,
                      num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3, channels=3, image_size=shape[:2],
                      resize="stretch")
    images = np.random.default_rng(0).normal(size=(args.batch_size, *shape)).astype(np.float32)
    batch = jaxvision.Batch.of(images, np.zeros(args.batch_size, np.int32))
    runs = {}
    for choice in CHOICES:
        begin = fine_tune_start(model, weights, num_classes=3, input_shape=shape, optimizer=optax.adam(1e-3),
                                key=jax.random.key(1), finetune=choice)
        step = jaxvision.make_train_step(frozen=begin.frozen)
        state, metrics = step(begin.state, batch, jax.random.key(2))  # compile and warm up
        jax.block_until_ready(metrics)
        runs[choice] = {"step": step, "state": state, "seconds": []}
    for _ in range(args.repeats):  # alternating, so load changes hit every choice alike
        for run in runs.values():
            start = time.perf_counter()
            run["state"], metrics = run["step"](run["state"], batch, jax.random.key(2))
            jax.block_until_ready(metrics)
            run["seconds"].append(time.perf_counter() - start)
    baseline = float(np.median(runs["all"]["seconds"]))
    record = {"model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
              "backend": jax.default_backend(), "results": {}}
    for choice, run in runs.items():
        seconds = run["seconds"]
        median = float(np.median(seconds))
        record["results"][choice] = {"median_s": median, "min_s": min(seconds), "max_s": max(seconds),
                                     "speedup_vs_all": baseline / median}
        print(f"{choice:>7}: {median * 1e3:7.1f} ms per step (min {min(seconds) * 1e3:.1f}, max "
              f"{max(seconds) * 1e3:.1f}), {baseline / median:.2f}x against all")
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, f"finetune_speed-{args.model}-{args.image_size}.json")
    jsonio.write_json(path, record)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
