"""Object detection ("where is it?"): a CenterNet-style anchor-free detector's targets, loss and decoding.

Zhou, Wang and Krähenbühl, "Objects as Points" (2019): each object is the peak of a per-class heat map at its
box centre, on a grid ``stride`` times coarser than the image, with the box size and the centre's sub-cell
offset read off at that peak. The model (``jaxvision.models.centernet``) returns one array
``[batch, h, w, classes + 4]``: heat-map logits, then (log width, log height) in grid cells, then the (x, y)
offset. Training: the penalty-reduced focal loss on Gaussian-splatted heat maps, L1 on size and offset, and
GIoU on the decoded boxes (Rezatofighi et al., 2019). Inference: 3x3 max-pool peaks, top-k, per-class NMS.
Boxes everywhere are (x1, y1, x2, y2) pixels with edges (``jaxvision.boxes``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import boxes as box_ops
from jaxvision import detection_metrics

# CenterNet's minimum IoU between a box and one shifted by the Gaussian radius.
MIN_OVERLAP = 0.7
# A heat-map peak must reach this probability to count as a found centre in the training score.
CENTER_FOUND = 0.3


def gaussian_radius(height: jax.Array, width: jax.Array, min_overlap: float = MIN_OVERLAP) -> jax.Array:
    """CenterNet's Gaussian radius (in grid cells) for boxes of ``height`` x ``width`` cells.

    The smallest of the three corner-shift radii of CornerNet (Law and Deng, 2018), kept exactly as the
    reference implementation computes them (``gaussian_radius`` in xingyizhou/CenterNet), so the targets
    match the paper's.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + jnp.sqrt(jnp.maximum(b1 ** 2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + jnp.sqrt(jnp.maximum(b2 ** 2 - 16 * c2, 0.0))) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + jnp.sqrt(jnp.maximum(b3 ** 2 - 4 * a3 * c3, 0.0))) / 2
    return jnp.maximum(jnp.floor(jnp.minimum(jnp.minimum(r1, r2), r3)), 0.0)


@dataclasses.dataclass(frozen=True)
class DetectionTask:
    """Boxes and classes from a ``CenterNet`` output.

    Attributes:
      class_names: the object classes (no background class).
      image_size: (height, width) of the model's input in pixels.
      stride: the output grid's stride in pixels (the model's ``output_stride``).
      max_detections: detections kept per image (top-k heat-map peaks, then NMS).
      nms_iou: per-class NMS drops a box whose IoU with a higher-scored one is above this.
      score_threshold: detections below this score are dropped (low, as COCO's evaluation expects).
      size_weight, offset_weight, giou_weight: the loss terms' weights (CenterNet's 0.1 and 1, plus GIoU).
    """

    class_names: tuple[str, ...] = ("object",)
    image_size: tuple[int, int] = (64, 64)
    stride: int = 4
    max_detections: int = 100
    nms_iou: float = 0.5
    score_threshold: float = 0.01
    size_weight: float = 0.1
    offset_weight: float = 1.0
    giou_weight: float = 1.0

    name = "detect"
    score_name = "centers_found"
    target_kind = "boxes"

    def __post_init__(self) -> None:
        height, width = self.image_size
        if height % self.stride or width % self.stride:
            raise ValueError(f"Invalid image size {height}x{width} for a detector of stride {self.stride}: expected "
                             f"multiples of {self.stride}; resize, e.g. --image-size {height // self.stride * self.stride or self.stride}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.stride, self.image_size[1] // self.stride

    def check_targets(self, targets: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        boxes = np.asarray(targets["boxes"], np.float32)
        classes = np.asarray(targets["classes"], np.int64)
        valid = np.asarray(targets["valid"], bool)
        if boxes.ndim != 3 or boxes.shape[-1] != 4 or classes.shape != boxes.shape[:2] or valid.shape != boxes.shape[:2]:
            raise ValueError(f"Invalid boxes in {where}: boxes {boxes.shape}, classes {classes.shape}, valid {valid.shape}; "
                             "expected [N, M, 4], [N, M] and [N, M]")
        bad = classes[valid & ((classes < 0) | (classes >= self.num_classes))]
        if bad.size:
            raise ValueError(f"Invalid box class {int(bad[0])} in {where}: expected 0..{self.num_classes - 1} "
                             f"({', '.join(self.class_names)})")
        height, width = self.image_size
        real = boxes[valid]
        if real.size and ((real[:, 2] <= real[:, 0]).any() or (real[:, 3] <= real[:, 1]).any()
                          or real.min() < -1e-3 or (real[:, [0, 2]] > width + 1e-3).any() or (real[:, [1, 3]] > height + 1e-3).any()):
            raise ValueError(f"Invalid boxes in {where}: expected x1 < x2 <= {width} and y1 < y2 <= {height} pixels "
                             "(x1, y1, x2, y2 of the resized image)")
        return {"boxes": np.where(valid[..., None], boxes, 0).astype(np.float32),
                "classes": np.where(valid, classes, 0).astype(np.int32), "valid": valid}

    # --- targets and loss, on device -------------------------------------------------------------------------

    def _centres(self, boxes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Per box: centre (x, y) in grid units, its cell (ix, iy), and size (w, h) in cells."""
        h, w = self.grid
        cx = (boxes[..., 0] + boxes[..., 2]) / (2 * self.stride)
        cy = (boxes[..., 1] + boxes[..., 3]) / (2 * self.stride)
        ix = jnp.clip(jnp.floor(cx), 0, w - 1).astype(jnp.int32)
        iy = jnp.clip(jnp.floor(cy), 0, h - 1).astype(jnp.int32)
        size = jnp.stack([(boxes[..., 2] - boxes[..., 0]) / self.stride, (boxes[..., 3] - boxes[..., 1]) / self.stride], -1)
        return jnp.stack([cx, cy], -1), ix, iy, size

    def heatmap(self, targets: dict[str, jax.Array]) -> jax.Array:
        """The training heat map [batch, h, w, classes]: a Gaussian per object, 1 exactly at its centre cell."""
        h, w = self.grid
        _, ix, iy, size = self._centres(targets["boxes"])
        sigma = (2 * gaussian_radius(size[..., 1], size[..., 0]) + 1) / 6  # [batch, M]
        ys = jnp.arange(h, dtype=jnp.float32)[:, None]
        xs = jnp.arange(w, dtype=jnp.float32)[None, :]
        distance = (xs - ix[..., None, None]) ** 2 + (ys - iy[..., None, None]) ** 2  # [batch, M, h, w]
        gaussian = jnp.exp(-distance / (2 * sigma[..., None, None] ** 2))
        owner = jax.nn.one_hot(targets["classes"], self.num_classes) * targets["valid"][..., None]  # [batch, M, C]
        return jnp.max(gaussian[..., None] * owner[:, :, None, None, :], axis=1)

    def _at_centres(self, outputs: jax.Array, ix: jax.Array, iy: jax.Array) -> jax.Array:
        """outputs [batch, h, w, D] read at each object's cell: [batch, M, D]."""
        batch, h, w, depth = outputs.shape
        flat = outputs.reshape(batch, h * w, depth)
        return jnp.take_along_axis(flat, (iy * w + ix)[..., None], axis=1)

    def decoded_boxes(self, raw: jax.Array, ix: jax.Array, iy: jax.Array) -> jax.Array:
        """Pixel boxes from the size/offset channels ``raw`` [..., 4] at cells (ix, iy)."""
        size = jnp.exp(jnp.clip(raw[..., 0:2], -6.0, 6.0))
        cx = (ix + raw[..., 2]) * self.stride
        cy = (iy + raw[..., 3]) * self.stride
        half_w, half_h = size[..., 0] * self.stride / 2, size[..., 1] * self.stride / 2
        return jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1)

    def loss(self, outputs: jax.Array, targets: dict[str, jax.Array]) -> jax.Array:
        """[batch] focal heat-map loss + size/offset L1 + GIoU, each per object of the image."""
        classes = self.num_classes
        logits, raw = outputs[..., :classes], outputs[..., classes:]
        heat = self.heatmap(targets)
        peak = (heat >= 1.0 - 1e-6).astype(jnp.float32)
        log_p, log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
        p = jnp.exp(log_p)
        focal = -(peak * jnp.square(1 - p) * log_p + (1 - peak) * jnp.power(1 - heat, 4) * jnp.square(p) * log_not_p)
        valid = targets["valid"].astype(jnp.float32)
        objects = jnp.maximum(valid.sum(-1), 1.0)
        centre, ix, iy, size = self._centres(targets["boxes"])
        at = self._at_centres(raw, ix, iy)  # [batch, M, 4]
        size_error = jnp.abs(jnp.exp(jnp.clip(at[..., 0:2], -6.0, 6.0)) - size).sum(-1)
        offset_error = jnp.abs(at[..., 2:4] - (centre - jnp.stack([ix, iy], -1))).sum(-1)
        giou = box_ops.giou_loss(self.decoded_boxes(at, ix, iy), targets["boxes"])
        per_object = self.size_weight * size_error + self.offset_weight * offset_error + self.giou_weight * giou
        return focal.sum((1, 2, 3)) / objects + (per_object * valid).sum(-1) / objects

    def score(self, outputs: jax.Array, targets: dict[str, jax.Array]) -> jax.Array:
        """The share of an image's objects whose class peak at the centre cell reaches ``CENTER_FOUND``."""
        _, ix, iy, _ = self._centres(targets["boxes"])
        at = self._at_centres(outputs[..., :self.num_classes], ix, iy)
        found = jnp.take_along_axis(jax.nn.sigmoid(at), targets["classes"][..., None], -1)[..., 0] >= CENTER_FOUND
        valid = targets["valid"].astype(jnp.float32)
        return jnp.where(valid.sum(-1) > 0, (found * valid).sum(-1) / jnp.maximum(valid.sum(-1), 1.0), 1.0)

    # --- inference --------------------------------------------------------------------------------------------

    def peaks(self, outputs: jax.Array) -> dict[str, jax.Array]:
        """Top-``max_detections`` 3x3 heat-map peaks of a batch, before NMS: boxes [batch, K, 4], scores, classes."""
        classes = self.num_classes
        heat = jax.nn.sigmoid(outputs[..., :classes].astype(jnp.float32))
        pooled = nn.max_pool(heat, (3, 3), strides=(1, 1), padding="SAME")
        heat = jnp.where(heat == pooled, heat, 0.0)
        batch, h, w, _ = heat.shape
        k = min(self.max_detections, h * w * classes)
        scores, index = jax.lax.top_k(heat.reshape(batch, -1), k)
        cell, cls = index // classes, index % classes
        iy, ix = cell // w, cell % w
        raw = self._at_centres(outputs[..., classes:].astype(jnp.float32), ix, iy)
        boxes = self.decoded_boxes(raw, ix, iy)
        height, width = self.image_size
        boxes = jnp.clip(boxes, 0.0, jnp.asarray([width, height, width, height], jnp.float32))
        return {"boxes": boxes, "scores": scores, "classes": cls}

    def detections(self, peaks: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image: the peaks above ``score_threshold`` after per-class NMS, by decreasing score."""
        result = []
        for boxes, scores, classes in zip(np.asarray(peaks["boxes"]), np.asarray(peaks["scores"]), np.asarray(peaks["classes"])):
            keep = scores >= self.score_threshold
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
            kept = []
            for cls in np.unique(classes):
                members = np.flatnonzero(classes == cls)
                kept.extend(members[detection_metrics.nms(boxes[members], scores[members], self.nms_iou)])
            kept = np.asarray(sorted(kept, key=lambda i: -scores[i]), np.int64)
            result.append({"boxes": boxes[kept].astype(np.float32), "scores": scores[kept].astype(np.float32),
                           "classes": classes[kept].astype(np.int32)})
        return result

    def summarize(self, outputs: np.ndarray, targets: dict[str, np.ndarray]) -> dict[str, Any]:
        found = self.detections(jax.device_get(_peaks(self, jnp.asarray(outputs))))
        truths = [{"boxes": b[v], "labels": c[v]} for b, c, v in zip(targets["boxes"], targets["classes"], targets["valid"])]
        return {"detections": [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["classes"]} for d in found],
                "ground_truths": truths}

    def metrics(self, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """mAP@0.5 and mAP@[0.5:0.95] the COCO way (``jaxvision.detection_metrics``), per class too."""
        detections = [d for p in parts for d in p["detections"]]
        truths = [t for p in parts for t in p["ground_truths"]]
        at_50 = detection_metrics.mean_average_precision(detections, truths, (0.5,), max_detections=self.max_detections)
        coco = detection_metrics.mean_average_precision(detections, truths, detection_metrics.COCO_IOU_THRESHOLDS,
                                                        max_detections=self.max_detections)
        name = dict(enumerate(self.class_names))
        return {
            "map50": float(at_50["map"]),
            "map": float(coco["map"]),
            "per_class_ap50": {name[int(c)]: float(v) for c, v in at_50["per_class"].items()},
            "per_class_ap": {name[int(c)]: float(v) for c, v in coco["per_class"].items()},
            "images": len(truths),
            "objects": int(sum(len(t["labels"]) for t in truths)),
        }

    def decode(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return self.detections(jax.device_get(_peaks(self, jnp.asarray(outputs))))

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "class_names": list(self.class_names), "image_size": list(self.image_size),
                "stride": self.stride, "max_detections": self.max_detections, "nms_iou": self.nms_iou,
                "score_threshold": self.score_threshold}


# The task is static (frozen and hashable): one compiled program per task and output shape.
@functools.partial(jax.jit, static_argnums=0)
def _peaks(task: DetectionTask, outputs: jax.Array) -> dict[str, jax.Array]:
    return task.peaks(outputs)
