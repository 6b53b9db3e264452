"""Semantic segmentation ("which pixels?"): per-pixel classes, cross-entropy plus soft Dice, pixel accuracy and mIoU."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision import segmentation_metrics as seg

# Mask pixels with this value are left out of the loss and the metrics (VOC's border, a "don't care" label).
IGNORE_INDEX = 255


@dataclasses.dataclass(frozen=True)
class SegmentationTask:
    """Logits [batch, H, W, classes] against class-index masks [batch, H, W].

    Attributes:
      class_names: one name per class; class 0 is usually the background.
      dice_weight: weight of the soft Dice loss added to the per-pixel cross-entropy (0 for cross-entropy only).
    """

    class_names: tuple[str, ...] = ("background", "foreground")
    dice_weight: float = 1.0

    name = "segment"
    score_name = "pixel_accuracy"
    target_kind = "mask"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check_targets(self, masks: np.ndarray, where: str) -> np.ndarray:
        masks = np.asarray(masks)
        if masks.ndim == 4 and masks.shape[-1] == 1:
            masks = masks[..., 0]
        bad = masks[(masks >= self.num_classes) & (masks != IGNORE_INDEX)]
        if masks.ndim != 3 or bad.size or (masks < 0).any():
            value = int(bad[0]) if bad.size else int(masks.min())
            raise ValueError(f"Invalid mask value {value} in {where}: expected class indices 0..{self.num_classes - 1} "
                             f"({', '.join(self.class_names)}) or {IGNORE_INDEX} (ignored), as [N, H, W]")
        return masks.astype(np.int32)

    def loss(self, outputs: jax.Array, masks: jax.Array) -> jax.Array:
        """[batch] mean per-pixel cross-entropy over labelled pixels, plus ``dice_weight`` x soft Dice."""
        labelled = (masks != IGNORE_INDEX).astype(jnp.float32)
        classes = jnp.where(masks == IGNORE_INDEX, 0, masks)
        pixel = optax.softmax_cross_entropy_with_integer_labels(outputs, classes) * labelled
        cross_entropy = pixel.sum((1, 2)) / jnp.maximum(labelled.sum((1, 2)), 1.0)
        if not self.dice_weight:
            return cross_entropy
        # Ignored pixels count as neither prediction nor truth in the Dice ratio.
        dice = seg.soft_dice_loss(outputs, classes, weights=labelled)
        return cross_entropy + self.dice_weight * dice

    def score(self, outputs: jax.Array, masks: jax.Array) -> jax.Array:
        labelled = (masks != IGNORE_INDEX).astype(jnp.float32)
        correct = (jnp.argmax(outputs, -1) == masks).astype(jnp.float32) * labelled
        return correct.sum((1, 2)) / jnp.maximum(labelled.sum((1, 2)), 1.0)

    def summarize(self, outputs: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
        predicted = np.argmax(outputs, -1)
        return {"confusion": np.asarray(seg.confusion_matrix(jnp.asarray(masks), jnp.asarray(predicted), self.num_classes))}

    def metrics(self, parts: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
        """Pixel accuracy, mean IoU and mean Dice over the classes present, per-class IoU, the confusion matrix."""
        matrix = jnp.asarray(np.sum([p["confusion"] for p in parts], axis=0))
        iou = np.asarray(seg.per_class_iou(matrix))
        dice = np.asarray(seg.per_class_dice(matrix))
        return {
            "pixel_accuracy": float(seg.pixel_accuracy(matrix)),
            "miou": float(seg.mean_iou(matrix)),
            "mean_dice": float(seg.mean_dice(matrix)),
            "per_class_iou": {name: None if np.isnan(v) else float(v) for name, v in zip(self.class_names, iou)},
            "per_class_dice": {name: None if np.isnan(v) else float(v) for name, v in zip(self.class_names, dice)},
            "confusion_matrix": np.asarray(matrix).tolist(),
            "pixels": int(np.asarray(matrix).sum()),
        }

    def decode(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        """Per image: the class mask [H, W] and the share of pixels of each class."""
        masks = np.argmax(outputs, -1).astype(np.uint8)
        return [{"mask": mask, "fractions": {name: float(np.mean(mask == c)) for c, name in enumerate(self.class_names)}}
                for mask in masks]

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "class_names": list(self.class_names), "dice_weight": self.dice_weight}
