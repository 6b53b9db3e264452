"""Splits held in memory as NumPy arrays: a ``fit`` data source for arrays a user already has (a few
labelled examples per class, a generated set, a subset of another dataset).

It behaves as ``jaxvision.data.Splits``: training batches of exactly ``batch_size`` in an order seeded by
(seed, epoch), the remainder dropped; evaluation batches cover every example once, the last padded with
``mask = 0`` so the eval step never recompiles. No TensorFlow is involved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from jaxvision.batch import Batch

SPLITS = ("train", "validation", "test")


def _checked(split: str, arrays: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (np.asarray(a) for a in arrays)
    if images.ndim != 4 or not len(images):
        raise ValueError(f"Invalid {split} images of shape {images.shape}: expected [N, height, width, channels] "
                         "with N >= 1 (normalised float32)")
    if labels.shape[:1] != images.shape[:1]:
        raise ValueError(f"Invalid {split} labels of shape {labels.shape}: expected one label per image "
                         f"([{len(images)}] classes or [{len(images)}, classes] soft labels)")
    return images.astype(np.float32), labels.astype(np.int32) if labels.ndim == 1 else labels.astype(np.float32)


@dataclasses.dataclass
class ArraySplits:
    """Train, validation and test splits from arrays.

    Attributes:
      train, validation, test: ``(images [N, H, W, C] float32, normalised; labels [N] int)`` each.
      batch_size: training batch size (at most the training set's size).
      eval_batch_size: batch size of validation and test evaluation.
      seed: seeds every epoch's order, with the epoch: ``np.random.default_rng((seed, epoch))``.
    """

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    batch_size: int
    eval_batch_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for split in SPLITS:
            setattr(self, split, _checked(split, getattr(self, split)))
        if not 1 <= self.batch_size <= len(self.train[0]):
            raise ValueError(f"Invalid batch_size={self.batch_size}: expected 1 to {len(self.train[0])} (the training "
                             "set's size)")
        if self.eval_batch_size < 1:
            raise ValueError(f"Invalid eval_batch_size={self.eval_batch_size}: expected a positive integer, e.g. 1000")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train[0]) // self.batch_size

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches of exactly ``batch_size`` in epoch ``epoch``'s order, from step ``start`` on."""
        if not 0 <= start <= self.steps_per_epoch:
            raise ValueError(f"Invalid start={start}: expected a step in [0, {self.steps_per_epoch}] of the epoch.")
        images, labels = self.train
        order = np.random.default_rng((self.seed, epoch)).permutation(len(images))
        for step in range(start, self.steps_per_epoch):
            chosen = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield Batch(images=images[chosen], labels=labels[chosen], mask=np.ones(len(chosen), np.float32))

    def eval_batches(self, split: str) -> Iterator[Batch]:
        """Every example of ``split`` ("train", "validation" or "test") once, padded to ``eval_batch_size``."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        images, labels = getattr(self, split)
        size = self.eval_batch_size
        for first in range(0, len(images), size):
            part_images, part_labels = images[first:first + size], labels[first:first + size]
            padding = size - len(part_images)
            mask = np.concatenate([np.ones(len(part_images), np.float32), np.zeros(padding, np.float32)])
            if padding:
                part_images = np.concatenate([part_images, np.zeros((padding, *images.shape[1:]), np.float32)])
                part_labels = np.concatenate([part_labels, np.zeros((padding, *labels.shape[1:]), labels.dtype)])
            yield Batch(images=part_images, labels=part_labels, mask=mask)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """A whole split: ``(images, labels)``."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        return getattr(self, split)


def per_class_subset(images: np.ndarray, labels: np.ndarray, per_class: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` examples of every class, drawn without replacement by ``seed``, in a shuffled order.

    Raises:
      ValueError: a class has fewer than ``per_class`` examples.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"Invalid per_class={per_class}: class {label} has only {len(members)} examples")
        chosen.append(rng.choice(members, per_class, replace=False))
    order = rng.permutation(np.concatenate(chosen))
    return images[order], labels[order]


__all__ = ["ArraySplits", "per_class_subset"]
