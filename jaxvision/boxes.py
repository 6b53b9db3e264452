"""Axis-aligned box maths in jax.numpy: areas, IoU, GIoU, format conversions and box losses.

Boxes are ``[..., 4]`` float arrays ``(x1, y1, x2, y2)`` in pixels with ``x1 <= x2`` and ``y1 <= y2``;
the image spans ``[0, width] x [0, height]``, so pixel ``(row, column)`` covers
``[column, column + 1] x [row, row + 1]`` (the COCO convention; areas have no ``+ 1``).
Everything is shape-polymorphic and free of Python branching on values, so it jits and vmaps.

Other formats:
  normalised yxyx: ``(ymin, xmin, ymax, xmax)`` in [0, 1], the TFDS ``BBoxFeature`` layout;
  cxcywh: ``(centre x, centre y, width, height)`` in pixels;
  YOLO: cxcywh divided by the image width and height, as in YOLO label files.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def area(boxes: jax.Array) -> jax.Array:
    """Areas of ``[..., 4]`` boxes, ``[...]``; inverted boxes count as 0."""
    return jnp.clip(boxes[..., 2] - boxes[..., 0], 0) * jnp.clip(boxes[..., 3] - boxes[..., 1], 0)


def _safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator``, 0 where the denominator is 0 (two empty boxes overlap by 0, not NaN)."""
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def _intersection_and_union(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Intersection and union areas of broadcastable ``[..., 4]`` boxes."""
    top_left = jnp.maximum(a[..., :2], b[..., :2])
    bottom_right = jnp.minimum(a[..., 2:], b[..., 2:])
    size = jnp.clip(bottom_right - top_left, 0)
    intersection = size[..., 0] * size[..., 1]
    return intersection, area(a) + area(b) - intersection


def _elementwise_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    intersection, union = _intersection_and_union(a, b)
    return _safe_divide(intersection, union)


def _elementwise_giou(a: jax.Array, b: jax.Array) -> jax.Array:
    intersection, union = _intersection_and_union(a, b)
    enclosing = area(jnp.concatenate([jnp.minimum(a[..., :2], b[..., :2]), jnp.maximum(a[..., 2:], b[..., 2:])], -1))
    return _safe_divide(intersection, union) - _safe_divide(enclosing - union, enclosing)


def iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pairwise intersection over union.

    Args:
      a: [N, 4] boxes.
      b: [M, 4] boxes.

    Returns:
      [N, M] IoU in [0, 1]; 0 for pairs whose union is empty.
    """
    return _elementwise_iou(a[:, None, :], b[None, :, :])


def giou(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pairwise generalised IoU (Rezatofighi et al., 2019): IoU minus the empty share of the enclosing box.

    Args:
      a: [N, 4] boxes.
      b: [M, 4] boxes.

    Returns:
      [N, M] GIoU in [-1, 1]; unlike IoU it still ranks disjoint pairs by how far apart they are.
    """
    return _elementwise_giou(a[:, None, :], b[None, :, :])


def giou_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """``1 - GIoU`` of matched pairs, the box regression loss of DETR and FCOS-style detectors.

    Args:
      predictions: [..., 4] predicted boxes.
      targets: [..., 4] their target boxes, same shape.

    Returns:
      [...] losses in [0, 2]; 0 for a perfect box, with a useful gradient even when the boxes are disjoint.
    """
    return 1.0 - _elementwise_giou(predictions, targets)


def l1(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Sum of absolute coordinate differences of matched pairs.

    Args:
      predictions: [..., 4] predicted boxes (any one format, the same for both).
      targets: [..., 4] their target boxes.

    Returns:
      [...] losses, in the boxes' units.
    """
    return jnp.abs(predictions - targets).sum(-1)


def from_normalized_yxyx(boxes: jax.Array, height: int, width: int) -> jax.Array:
    """TFDS ``(ymin, xmin, ymax, xmax)`` in [0, 1] -> ``(x1, y1, x2, y2)`` pixels of a height x width image."""
    scale = jnp.asarray([width, height, width, height], jnp.float32)
    return boxes[..., jnp.array([1, 0, 3, 2])].astype(jnp.float32) * scale


def to_normalized_yxyx(boxes: jax.Array, height: int, width: int) -> jax.Array:
    """``(x1, y1, x2, y2)`` pixels -> TFDS ``(ymin, xmin, ymax, xmax)`` in [0, 1]."""
    scale = jnp.asarray([height, width, height, width], jnp.float32)
    return boxes[..., jnp.array([1, 0, 3, 2])].astype(jnp.float32) / scale


def to_cxcywh(boxes: jax.Array) -> jax.Array:
    """``(x1, y1, x2, y2)`` -> ``(centre x, centre y, width, height)``, same units."""
    size = boxes[..., 2:] - boxes[..., :2]
    return jnp.concatenate([boxes[..., :2] + size / 2, size], -1)


def from_cxcywh(boxes: jax.Array) -> jax.Array:
    """``(centre x, centre y, width, height)`` -> ``(x1, y1, x2, y2)``, same units."""
    half = boxes[..., 2:] / 2
    return jnp.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], -1)


def to_yolo(boxes: jax.Array, height: int, width: int) -> jax.Array:
    """``(x1, y1, x2, y2)`` pixels -> YOLO's cxcywh as fractions of the image width and height."""
    return to_cxcywh(boxes) / jnp.asarray([width, height, width, height], jnp.float32)


def from_yolo(boxes: jax.Array, height: int, width: int) -> jax.Array:
    """YOLO's normalised cxcywh -> ``(x1, y1, x2, y2)`` pixels of a height x width image."""
    return from_cxcywh(boxes * jnp.asarray([width, height, width, height], jnp.float32))
