"""Detection post-processing and scoring on the host, in NumPy: greedy NMS, AP and COCO-style mAP.

Boxes are ``[N, 4]`` ``(x1, y1, x2, y2)`` pixels as in ``jaxvision.boxes``. These run once per
evaluation over variable-length lists, which is what NumPy is for; the jitted model only emits
fixed-size score and box maps.

``mean_average_precision`` follows ``pycocotools.cocoeval`` for the bounding-box task with one area
range ("all") and crowd annotations not supported:
  1. per image and class, detections sorted by score (at most ``max_detections``) are matched greedily,
     each to the unmatched ground truth of highest IoU, if that IoU is >= the threshold;
  2. per class, all images' detections are sorted by score into a precision/recall curve;
  3. precision is made monotone (each point takes the best precision at any higher recall) and read at
     the 101 recalls 0, 0.01, ..., 1 (0 beyond the highest recall reached); AP is their mean;
  4. classes with no ground truth are left out; mAP is the mean over classes and IoU thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # linspace, not arange: 0.5 + 9 * 0.05 is not exactly 0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) if np.size(boxes) == 0 else np.asarray(boxes, np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"Invalid {name} of shape {boxes.shape}: expected [N, 4] (x1, y1, x2, y2) boxes; reshape them to [-1, 4].")
    return boxes


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] IoU of ``[N, 4]`` and ``[M, 4]`` boxes; 0 where the union is empty."""
    a, b = _as_boxes(a, "boxes"), _as_boxes(b, "boxes")
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    size = np.clip(bottom_right - top_left, 0, None)
    intersection = size[..., 0] * size[..., 1]

    def area(boxes: np.ndarray) -> np.ndarray:
        return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)

    union = area(a)[:, None] + area(b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_outputs: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Boxes are visited by decreasing score; each one is kept unless its IoU with an already kept box is
    greater than ``iou_threshold``. Run it per class (or offset boxes by class) for class-aware NMS.

    Args:
      boxes: [N, 4] boxes.
      scores: [N] scores.
      iou_threshold: IoU above which the lower-scored box is dropped, in [0, 1].
      max_outputs: keep at most this many (the highest-scored); None keeps all survivors.

    Returns:
      [K] int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    boxes = _as_boxes(boxes, "boxes")
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"Invalid scores of length {scores.shape[0]}: expected one per box ({boxes.shape[0]}); pass [N] scores for [N, 4] boxes.")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"Invalid iou_threshold {iou_threshold}: expected a float in [0, 1], e.g. 0.5.")
    if max_outputs is not None and max_outputs < 1:
        raise ValueError(f"Invalid max_outputs {max_outputs}: expected an integer >= 1 or None, e.g. 100.")
    order = np.argsort(-scores, kind="stable")
    overlaps = pairwise_iou(boxes[order], boxes[order])
    suppressed = np.zeros(len(order), bool)
    kept = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        kept.append(order[position])
        if max_outputs is not None and len(kept) == max_outputs:
            break
        suppressed |= overlaps[position] > iou_threshold
    return np.asarray(kept, np.int64)


def average_precision(scores: np.ndarray, is_true_positive: np.ndarray, num_ground_truth: int) -> float:
    """COCO's 101-point interpolated AP of one class at one IoU threshold.

    Args:
      scores: [D] scores of all of the class's detections, over all images.
      is_true_positive: [D] bool, whether each detection was matched to a ground truth.
      num_ground_truth: how many ground-truth boxes of the class there are, >= 1.

    Returns:
      AP in [0, 1]; 0 when there are no detections.
    """
    if num_ground_truth < 1:
        raise ValueError(f"Invalid num_ground_truth {num_ground_truth}: expected >= 1; leave classes without ground truth out of the mean.")
    scores, is_true_positive = np.asarray(scores, np.float64).reshape(-1), np.asarray(is_true_positive, bool).reshape(-1)
    if scores.shape != is_true_positive.shape:
        raise ValueError(f"Invalid is_true_positive of length {is_true_positive.size}: expected one flag per score ({scores.size}).")
    order = np.argsort(-scores, kind="mergesort")  # cocoeval's sort, stable on ties
    true_positive = is_true_positive[order]
    tp = np.cumsum(true_positive)
    fp = np.cumsum(~true_positive)
    recall = tp / num_ground_truth
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    # Monotone from the right: the precision at recall r is the best precision at any recall >= r.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    indices = np.searchsorted(recall, RECALL_POINTS, side="left")
    reached = indices < len(precision)  # recall points beyond the highest recall reached score 0
    sampled = np.zeros(len(RECALL_POINTS))
    sampled[reached] = precision[indices[reached]]
    return float(np.mean(sampled))


def _match_image(
    boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray, iou_threshold: float, max_detections: int
) -> tuple[np.ndarray, np.ndarray]:
    """One image, one class: (scores, is_true_positive) of its top detections after greedy matching."""
    order = np.argsort(-scores, kind="mergesort")[:max_detections]
    boxes, scores = boxes[order], scores[order]
    overlaps = pairwise_iou(boxes, truth)
    matched = np.zeros(len(truth), bool)
    true_positive = np.zeros(len(boxes), bool)
    for detection in range(len(boxes)):
        candidates = np.where(matched, -1.0, overlaps[detection])
        if candidates.size and candidates.max() >= iou_threshold:
            # cocoeval keeps the last of equally good ground truths, so ties resolve as there.
            best = len(candidates) - 1 - int(np.argmax(candidates[::-1]))
            matched[best] = True
            true_positive[detection] = True
    return scores, true_positive


def _image_fields(record: Mapping[str, np.ndarray], kind: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    required = {"boxes", "labels", "scores"} if kind == "detections" else {"boxes", "labels"}
    missing = required - set(record)
    if missing:
        raise ValueError(f"Invalid {kind}[{index}] with keys {sorted(record)}: missing {sorted(missing)}; pass dicts of 'boxes' [N, 4], 'labels' [N]" + (", 'scores' [N]." if kind == "detections" else "."))
    boxes = _as_boxes(record["boxes"], f"{kind}[{index}]['boxes']")
    labels = np.asarray(record["labels"]).reshape(-1).astype(np.int64)
    scores = np.asarray(record.get("scores", np.ones(len(labels))), np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f"Invalid {kind}[{index}]: {len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores; give one label (and score) per box.")
    return boxes, labels, scores


def mean_average_precision(
    detections: Sequence[Mapping[str, np.ndarray]],
    ground_truths: Sequence[Mapping[str, np.ndarray]],
    iou_thresholds: Sequence[float] | np.ndarray = (0.5,),
    *,
    max_detections: int = 100,
) -> dict[str, object]:
    """COCO-style mAP over images (see the module docstring for the procedure).

    Args:
      detections: one dict per image: "boxes" [D, 4], "scores" [D], "labels" [D] integer classes.
      ground_truths: one dict per image, same order: "boxes" [G, 4], "labels" [G].
      iou_thresholds: (0.5,) for mAP@0.5; ``COCO_IOU_THRESHOLDS`` for mAP@[0.5:0.95].
      max_detections: per image and class, only the highest-scored this many count (COCO's 100).

    Returns:
      {"map": mean AP over classes with ground truth and thresholds (0.0 if no class has any),
       "per_class": {class: AP averaged over thresholds},
       "per_threshold": {threshold: AP averaged over classes}}.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"Invalid detections for {len(detections)} images: expected one entry per ground-truth image ({len(ground_truths)}); pass an empty dict of arrays for images without detections.")
    thresholds = np.asarray(iou_thresholds, np.float64).reshape(-1)
    if thresholds.size == 0 or np.any((thresholds < 0) | (thresholds > 1)):
        raise ValueError(f"Invalid iou_thresholds {thresholds.tolist()}: expected one or more floats in [0, 1], e.g. (0.5,).")
    images = [
        (_image_fields(d, "detections", i), _image_fields(g, "ground_truths", i))
        for i, (d, g) in enumerate(zip(detections, ground_truths))
    ]
    classes = sorted({int(c) for _, (_, labels, _) in images for c in labels})
    table = np.zeros((len(thresholds), len(classes)))
    for column, cls in enumerate(classes):
        num_truth = sum(int(np.sum(truth_labels == cls)) for _, (_, truth_labels, _) in images)
        for row, threshold in enumerate(thresholds):
            all_scores, all_hits = [], []
            for (boxes, labels, scores), (truth_boxes, truth_labels, _) in images:
                mine = labels == cls
                kept_scores, hits = _match_image(boxes[mine], scores[mine], truth_boxes[truth_labels == cls], threshold, max_detections)
                all_scores.append(kept_scores)
                all_hits.append(hits)
            table[row, column] = average_precision(np.concatenate(all_scores), np.concatenate(all_hits), num_truth)
    return {
        "map": float(table.mean()) if classes else 0.0,
        "per_class": {cls: float(table[:, column].mean()) for column, cls in enumerate(classes)},
        "per_threshold": {float(t): float(table[row].mean()) if classes else 0.0 for row, t in enumerate(thresholds)},
    }
