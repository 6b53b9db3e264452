"""Geometric augmentation of dense and box targets, so labels stay true under the image's affine warp.

The image ops in ``geometric`` reduce to one 3x3 forward matrix (see ``affine``); warping a mask or
boxes with the same matrix keeps them aligned with the warped image. Photometric ops change no
target and need nothing here.

Coordinates: matrices act on pixel centres (pixel ``(row, column)`` sits at ``x = column, y = row``),
while boxes use edges (``jaxvision.boxes``: the image spans ``[0, width] x [0, height]``), so a box
corner at ``x`` is the point ``x - 0.5`` in matrix space. With that shift a left-right flip sends
``[x1, x2]`` to ``[width - x2, width - x1]``, the same pixels the flipped mask covers.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxvision import boxes as box_ops
from jaxvision.augment import affine
from jaxvision.augment.spec import OPS, AugmentPipeline
from jaxvision.batch import Batch


def warp_mask(mask: jax.Array, matrix: jax.Array) -> jax.Array:
    """Warps a class-index mask by nearest neighbour, so no pixel gets a blend of two classes.

    Args:
      mask: [height, width] (or [height, width, 1]) integer class indices.
      matrix: 3x3 forward matrix in (x, y, 1) pixel coordinates, the one used for the image.

    Returns:
      The warped mask, same shape and dtype; pixels whose source lies outside the image are 0
      (background).
    """
    if not jnp.issubdtype(mask.dtype, jnp.integer) or mask.ndim not in (2, 3):
        raise ValueError(
            f"Invalid mask dtype {mask.dtype} of shape {mask.shape}: expected integer class indices [height, width]; "
            "pass the label mask (e.g. mask.astype(jnp.int32)), not probabilities."
        )
    squeeze = mask.ndim == 2
    warped = affine.warp_affine(mask[..., None] if squeeze else mask, matrix, mode="constant", cval=0, order=0)
    return warped[..., 0] if squeeze else warped


def warp_boxes(
    boxes: jax.Array, valid: jax.Array, matrix: jax.Array, height: int, width: int, *, min_area: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Warps padded boxes: corners transformed, re-boxed, clipped to the image, lost boxes marked invalid.

    The new box is the smallest axis-aligned box holding the four warped corners; under rotation or
    shear it is looser than the object (the usual price of axis-aligned boxes).

    Args:
      boxes: [N, 4] (x1, y1, x2, y2) pixels, padded to a fixed N.
      valid: [N] bool, which rows are real boxes.
      matrix: 3x3 forward matrix in (x, y, 1) pixel-centre coordinates, the one used for the image.
      height: image height in pixels (output image, the same as the input for these warps).
      width: image width in pixels.
      min_area: boxes whose clipped area is below this many square pixels (including boxes moved
        wholly out of the image, area 0) become invalid.

    Returns:
      (boxes [N, 4] float32, valid [N] bool); invalid rows are zeroed so stale coordinates cannot leak
      into a loss.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"Invalid boxes of shape {boxes.shape}: expected [N, 4] (x1, y1, x2, y2); pad to a fixed N and reshape.")
    if valid.shape != boxes.shape[:1]:
        raise ValueError(f"Invalid valid of shape {valid.shape}: expected [{boxes.shape[0]}], one flag per box row.")
    boxes = boxes.astype(jnp.float32)
    x1, y1, x2, y2 = (boxes[:, i] - 0.5 for i in range(4))
    corners = jnp.stack([jnp.stack([x1, y1], -1), jnp.stack([x2, y1], -1), jnp.stack([x1, y2], -1), jnp.stack([x2, y2], -1)], 1)
    matrix = matrix.astype(jnp.float32)
    warped = corners @ matrix[:2, :2].T + matrix[:2, 2] + 0.5  # [N, 4 corners, (x, y)], back to edge coordinates
    low = jnp.clip(warped.min(1), 0.0, jnp.asarray([width, height], jnp.float32))
    high = jnp.clip(warped.max(1), 0.0, jnp.asarray([width, height], jnp.float32))
    new_boxes = jnp.concatenate([low, high], -1)
    new_valid = valid.astype(bool) & (box_ops.area(new_boxes) >= min_area)
    return jnp.where(new_valid[:, None], new_boxes, 0.0), new_valid


# What a geometric warp does to each kind of target.
TARGET_KINDS = ("none", "mask", "boxes")


@dataclasses.dataclass(frozen=True)
class TargetAugment:
    """An ``AugmentPipeline`` that moves the targets with the pixels: ``augment(key, batch) -> batch``.

    Every example's image goes through ``pipeline`` exactly as ``pipeline(key, batch)`` would send it (the
    same per-example keys); the fused affine matrix of each geometric run also warps that example's mask
    (nearest neighbour, ``warp_mask``) or boxes (``warp_boxes``). Frozen and hashable, so it can be a train
    step's ``augment``.

    Attributes:
      pipeline: the parsed spec (``jaxvision.augment.parse_augment_spec``), without mixup or cutmix.
      kind: "mask" (labels [batch, H, W] integer classes), "boxes" (labels {"boxes" [batch, M, 4] pixels
        x1 y1 x2 y2, "classes" [batch, M], "valid" [batch, M]}) or "none" (labels a geometric op keeps).
    """

    pipeline: AugmentPipeline
    kind: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"Unknown target kind {self.kind!r}: expected one of {', '.join(TARGET_KINDS)}")
        mixers = [name for name, magnitude in self.pipeline.ops if OPS[name].kind == "batch" and magnitude > 0]
        if mixers and self.kind != "none":
            raise ValueError(f"{mixers[0]} blends two images, and their {self.kind} cannot be blended: drop "
                             f"{mixers[0]} from --augment for this task")

    @property
    def spec(self) -> str:
        return self.pipeline.spec

    def _example(self, key: jax.Array, image: jax.Array, targets):
        height, width = image.shape[:2]
        if self.kind == "mask":
            return self.pipeline.augment_example(key, image, targets, warp_mask)
        if self.kind == "boxes":
            def warp(current, matrix):
                boxes, valid = warp_boxes(current["boxes"], current["valid"], matrix, height, width)
                return {**current, "boxes": boxes, "valid": valid, "classes": jnp.where(valid, current["classes"], 0)}
            return self.pipeline.augment_example(key, image, targets, warp)
        return self.pipeline.augment_example(key, image, targets)

    def __call__(self, key: jax.Array, batch: Batch) -> Batch:
        if self.kind == "none":
            return self.pipeline(key, batch)
        # The same split as AugmentPipeline.__call__ and augment_images: the pixels match the plain pipeline's.
        image_key, _ = jax.random.split(key)
        keys = jax.random.split(image_key, batch.images.shape[0])
        images, labels = jax.vmap(self._example)(keys, batch.images, batch.labels)
        return batch.replace(images=images, labels=labels)


def refuse_mixing(pipeline: AugmentPipeline, task: str) -> None:
    """One line for mixup/cutmix on a task whose targets cannot be mixed as class probabilities."""
    mixers = [name for name, magnitude in pipeline.ops if OPS[name].kind == "batch" and magnitude > 0]
    if mixers:
        raise ValueError(f"Invalid --augment {pipeline.spec!r}: {mixers[0]} mixes class labels, which --task {task} "
                         f"does not have; drop {mixers[0]} (flips, crops, rotations and colour ops keep {task} targets true)")
