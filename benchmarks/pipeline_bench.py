"""Input pipeline: images/s the TFDS pipeline delivers, next to the train step's consumption rate.

The pipeline (tf.data on the host: shuffle, batch, normalise, prefetch) hands numpy batches to the
train step; augmentation runs on device inside the step, so it slows the consumer, not the producer.
The margin is pipeline images/s over train-step images/s: above 1 the pipeline is never the bottleneck.
It needs TensorFlow and tensorflow-datasets (imported when it runs, so the module imports without them).
"""

from __future__ import annotations

import time
from typing import Any

import jax

from benchmarks.jax_bench import MODELS_BY_NAME, build
from benchmarks.timing import time_function
from jaxvision.train import make_train_step

# dataset -> (model that consumes it, on-device augmentation spec)
CONSUMERS = {"mnist": ("simple_cnn", "crop:2,rotate:10"), "cifar10": ("resnet20", "flip,crop:4")}


def pipeline_images_per_s(splits, *, num_batches: int) -> float:
    """Images/s of ``splits.train_batches`` after its first batch (the pipeline's start-up), on the host."""
    iterator = splits.train_batches(0)
    next(iterator)
    start, images = time.perf_counter(), 0
    for _, batch in zip(range(num_batches), iterator):
        images += batch.images.shape[0]
    return images / (time.perf_counter() - start)


def consumer_images_per_s(model: str, batch_size: int, augment: str | None, *, repeats: int,
                          kernels: str = "auto") -> float:
    """Training images/s of ``model``'s train step on device, with the on-device augmentation or none."""
    from jaxvision.augment import parse_augment_spec

    spec = MODELS_BY_NAME[model]
    _, state, batch, key = build(spec, batch_size, "float32", kernels=kernels)
    train_step = make_train_step(augment=parse_augment_spec(augment) if augment else None)
    carry = [state]

    def step():
        carry[0], metrics = train_step(carry[0], batch, key)
        return metrics

    return batch_size / time_function(step, repeats=repeats).median


def bench_pipeline(*, batch_size: int, num_batches: int, repeats: int, synthetic_examples: int = 2048,
                   kernels: str = "auto", datasets=("mnist", "cifar10")) -> list[dict[str, Any]]:
    """One row per (dataset, augmentation): MNIST from TFDS_DATA_DIR, CIFAR-10-shaped from tfds mock data."""
    import tensorflow_datasets as tfds

    from jaxvision.data import load_splits

    rows = []
    for dataset in datasets:
        if dataset == "cifar10":
            # No CIFAR-10 on disk here: TFDS's mock data generates random examples of the real shapes.
            with tfds.testing.mock_data(num_examples=synthetic_examples):
                splits = load_splits("cifar10", batch_size=batch_size, validation_fraction=0.1)
                rate = pipeline_images_per_s(splits, num_batches=min(num_batches, splits.steps_per_epoch - 1))
            name = "cifar10 (synthetic, tfds mock)"
        else:
            splits = load_splits(dataset, batch_size=batch_size)
            rate = pipeline_images_per_s(splits, num_batches=num_batches)
            name = dataset
        model, augment = CONSUMERS[dataset]
        for spec in (None, augment):
            consumer = consumer_images_per_s(model, batch_size, spec, repeats=repeats, kernels=kernels)
            rows.append({"dataset": name, "batch_size": batch_size, "augment": spec or "none", "consumer_model": model,
                         "images_per_s": rate, "consumer_images_per_s": consumer,
                         "margin": rate / consumer})
    jax.clear_caches()
    return rows
