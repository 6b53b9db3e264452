"""The images the throughput rows train on, held in memory (the input pipeline is benchmarked apart).

Random images are not neutral. PyTorch's CPU max-pool and convolution backward run much faster on
MNIST digits than on noise of the same shape: MnistCNN, batch 128, SGD step 19 ms on real digits against
35-39 ms on normal, uniform or pixel-shuffled noise (``max_pool2d_with_indices`` 0.5 against 4.7 ms a
call), while jaxvision's step is the same on either. Smooth noise (bilinearly upsampled) does not
recover it, so the cause is the digits' large, exactly constant background, not the pixel statistics
(benchmarks/NOTES.md, "Inputs"). Rows of 28x28x1 models therefore use real MNIST training images when
the prepared dataset is at hand; the other shapes use standard-normal noise, and every row records which.

Reading MNIST needs TensorFlow and tensorflow-datasets; without them (a bare accelerator host) "auto"
is noise everywhere and nothing here imports TensorFlow.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

SOURCES = ("auto", "mnist", "synthetic")
MNIST_SHAPE = (28, 28, 1)


@functools.cache
def _mnist_train_images(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` MNIST training images, normalised as the training pipeline does (with these
    images' mean and standard deviation), and their labels."""
    from jaxvision.data import load_splits

    splits = load_splits("mnist", validation_fraction=1 - count / 60_000)
    return splits.arrays("train")


def tensorflow_available() -> bool:
    """Whether TensorFlow and tensorflow-datasets can be imported (``jaxvision.data`` needs both)."""
    for name in ("tensorflow", "tensorflow_datasets"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # a parent package missing, or a module blocked in sys.modules
            return False
    return True


def mnist_available() -> bool:
    """Whether TFDS finds a prepared MNIST ($TFDS_DATA_DIR or its default directory); False without TensorFlow."""
    if not tensorflow_available():
        return False
    try:
        from jaxvision.data.pipeline import builder

        return builder("mnist").info.splits["train"].num_examples > 0
    except Exception:  # any failure to import, find or read it means: not available here
        return False


def resolve_source(source: str, input_shape: tuple[int, int, int]) -> str:
    """"mnist" or "synthetic" for one model's rows.

    Raises:
      ValueError: for an unknown source, "mnist" asked for a shape other than 28x28x1, or "mnist"
        without TensorFlow.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown --images {source!r}: expected one of {', '.join(SOURCES)}.")
    if source == "auto":
        return "mnist" if tuple(input_shape) == MNIST_SHAPE and mnist_available() else "synthetic"
    if source == "mnist" and tuple(input_shape) != MNIST_SHAPE:
        raise ValueError(f"--images mnist needs 28x28x1 models, not {input_shape}: use --images auto to take "
                         "MNIST for those and noise for the rest.")
    if source == "mnist" and not tensorflow_available():
        raise ValueError("--images mnist reads MNIST with tensorflow-datasets, which is not installed here: "
                         "use --images auto (noise without it), or install jaxvision's dependencies (pip install -e .).")
    return source


def benchmark_inputs(input_shape: tuple[int, int, int], num_classes: int, batch_size: int, source: str,
                     *, seed: int = 0, mnist_pool: int = 1024) -> tuple[np.ndarray, np.ndarray, str]:
    """One batch for a throughput row.

    Args:
      input_shape: (height, width, channels) of one image.
      num_classes: labels are drawn from ``range(num_classes)`` (MNIST's own labels for "mnist").
      batch_size: rows of the batch; MNIST batches larger than ``mnist_pool`` repeat its images.
      source: "auto", "mnist" or "synthetic" (see ``resolve_source``).
      seed: seeds the synthetic images and labels.
      mnist_pool: how many of MNIST's first training images the batches are drawn from.

    Returns:
      images [batch, height, width, channels] float32, labels [batch] int32, and the source used.
    """
    used = resolve_source(source, input_shape)
    if used == "mnist":
        images, labels = _mnist_train_images(mnist_pool)
        rows = np.arange(batch_size) % len(labels)
        return images[rows], labels[rows].astype(np.int32), used
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, *input_shape), dtype=np.float32)
    return images, rng.integers(0, num_classes, batch_size).astype(np.int32), used
