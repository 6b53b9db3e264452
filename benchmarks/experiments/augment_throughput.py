"""Throughput of the fused on-device augmentation pipeline, beside the train step it runs in.

Times, on one batch (default 256 images of 32x32x3), each jitted and synced with block_until_ready:
  augment:            the pipeline alone, ``pipeline(key, batch)``;
  train step:         ``train_step`` without augmentation;
  train step + aug:   ``train_step`` with the pipeline inside it.
Each is warmed up (compiled) first, then repeated; the median is reported with min and max.

  python -m benchmarks.experiments.augment_throughput
  python -m benchmarks.experiments.augment_throughput --augment flip,crop:4 --model simple_cnn --repeats 50
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from benchmarks.timing import Timing, time_function
from jaxvision import augment, models
from jaxvision.batch import Batch
from jaxvision.optimizers import make_optimizer
from jaxvision.train import create_train_state, make_train_step


def _report(name: str, timing: Timing, images: int) -> float:
    print(
        f"{name:<36} median {timing.median * 1e3:8.2f} ms (min {timing.min * 1e3:.2f}, max {timing.max * 1e3:.2f})"
        f"  {images / timing.median:>12,.0f} images/s"
    )
    return timing.median


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.augment_throughput",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--augment", default="flip,crop:4,rotate:15,shear:10,jitter:0.2", help="pipeline spec")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-shape", default="32,32,3")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--kernels", choices=("auto", "reference", "cpu"), default="auto")
    args = parser.parse_args(argv)

    shape = tuple(int(d) for d in args.image_shape.split(","))
    rng = np.random.default_rng(0)
    batch = Batch.of(rng.standard_normal((args.batch_size, *shape), np.float32), rng.integers(0, 10, args.batch_size))
    # Photometric ops run in pixel units: pass a normalisation, as training on a real dataset would.
    pipeline = augment.parse_augment_spec(args.augment, num_classes=10, mean=[0.5] * shape[-1], std=[0.25] * shape[-1])
    key = jax.random.key(0)
    print(f"{jax.default_backend()} ({jax.device_count()} device), batch {args.batch_size} x {shape}, spec {pipeline.spec!r}")

    augment_jitted = jax.jit(pipeline)
    timing = time_function(lambda: augment_jitted(key, batch).images, repeats=args.repeats, warmup=args.warmup)
    augment_median = _report("augment (fused pipeline)", timing, args.batch_size)

    model = models.get_model(args.model, num_classes=10, kernels=args.kernels)
    state = create_train_state(model, shape, make_optimizer("adam", 1e-3), key)
    results = {}
    for name, augment_fn in (("train step, no augmentation", None), ("train step + augmentation", pipeline)):
        train_step = make_train_step(augment=augment_fn)
        # The same state every call: the timing is of one step, not of a changing run.
        timing = time_function(lambda: train_step(state, batch, key)[1]["loss"], repeats=args.repeats, warmup=args.warmup)
        results[name] = _report(f"{name} ({args.model})", timing, args.batch_size)
    step = results["train step, no augmentation"]
    print(
        f"augmentation costs {augment_median / step:.2f}x a {args.model} step alone; inside the step it adds "
        f"{(results['train step + augmentation'] - step) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
