"""The data types every part of training shares: ``Batch``, ``BatchAugment`` and ``Metrics``.

Kept apart from the train step so that ``jaxvision.data`` and ``jaxvision.augment`` import only this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

# Per-step scalars of a train step ({"loss", "accuracy", ...}) or sums of an eval step.
Metrics = dict[str, jax.Array]


@struct.dataclass
class Batch:
    """One batch of examples.

    Attributes:
      images: [batch, height, width, channels] float32, normalised.
      labels: [batch] int32 classes, or [batch, num_classes] float32 soft labels.
      mask: [batch] float32; 1 for a real example, 0 for padding (only the last eval batch has any).
    """

    images: jax.Array
    labels: jax.Array
    mask: jax.Array

    @classmethod
    def of(cls, images: Any, labels: Any) -> "Batch":
        """A batch with every example real (mask of ones)."""
        images = jnp.asarray(images, jnp.float32)
        return cls(images=images, labels=jnp.asarray(labels), mask=jnp.ones(images.shape[0], jnp.float32))


# (key, batch) -> batch, run on device inside the train step. It may change the labels too
# (mixup and cutmix return soft labels [batch, num_classes]).
BatchAugment = Callable[[jax.Array, Batch], Batch]

__all__ = ["Batch", "BatchAugment", "Metrics"]
