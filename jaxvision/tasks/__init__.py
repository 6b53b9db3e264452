"""Every task of the course on one image: classify, binary, regress, segment and detect.

A task object (``BinaryTask``, ``RegressionTask``, ``SegmentationTask``, ``DetectionTask``) says what the
network outputs mean: its ``loss(outputs, targets) -> [batch]`` and ``score(outputs, targets) -> [batch]``
go into the one train step (``make_train_step(loss=task.loss, score=task.score)``, or ``fit(..., score=...)``),
``check_targets`` validates targets on the host before anything compiles, ``summarize``/``metrics`` give the
test figures, and ``decode`` turns outputs into predictions (probabilities, values, masks, boxes). Classification
stays ``jaxvision.train``'s default and needs no task object.
"""

from __future__ import annotations

from typing import Any

from jaxvision.tasks.binary import BinaryTask
from jaxvision.tasks.detection import DetectionTask
from jaxvision.tasks.regression import REGRESSION_LOSSES, RegressionTask
from jaxvision.tasks.segmentation import IGNORE_INDEX, SegmentationTask

TASKS = ("classify", "binary", "regress", "segment", "detect")
# Per task, what `jaxvision train --task T` uses when an option is not given: each reaches the quality
# bar on `shapes` in a few minutes on two CPU cores (see examples/README.md for the figures).
DEFAULTS: dict[str, dict[str, Any]] = {
    "classify": {"model": "mlp", "epochs": 20, "batch_size": 64, "learning_rate": 3e-3, "kernels": "auto"},
    "binary": {"model": "convnet", "epochs": 10, "batch_size": 64, "learning_rate": 3e-3, "kernels": "auto"},
    "regress": {"model": "convnet", "epochs": 10, "batch_size": 64, "learning_rate": 3e-3, "kernels": "auto"},
    # The XLA:CPU kernels are tuned for classifiers; on the U-Net and the detector flax's layers train faster
    # (benchmarks/README.md, "dense tasks").
    "segment": {"model": "unet_small", "epochs": 6, "batch_size": 32, "learning_rate": 3e-3, "kernels": "reference"},
    "detect": {"model": "convnet", "epochs": 8, "batch_size": 32, "learning_rate": 3e-3, "kernels": "reference"},
}
# What each task's metrics.json reports as test_<name>, first the headline.
HEADLINES = {
    "binary": ("auc", "accuracy", "precision", "recall", "f1"),
    "regress": ("r2", "mae", "rmse"),
    "segment": ("miou", "pixel_accuracy", "mean_dice"),
    "detect": ("map50", "map"),
}


def check_task(name: str) -> str:
    if name not in TASKS:
        from jaxvision._suggest import unknown_name_error

        raise unknown_name_error("task", name, TASKS)
    return name


def make_task(name: str, class_names, train_targets=None, image_shape=None, *, target_names=None,
              loss: str | None = None, stride: int = 4):
    """The task object for ``name`` and a dataset's class names (and, for regression, its training targets)."""
    check_task(name)
    if name == "binary":
        names = tuple(class_names)
        return BinaryTask(class_names=names if len(names) == 2 else ("negative", "positive"))
    if name == "regress":
        return RegressionTask.fitted(train_targets, target_names or class_names, loss_name=loss or "mse")
    if name == "segment":
        return SegmentationTask(class_names=tuple(class_names))
    if name == "detect":
        return DetectionTask(class_names=tuple(class_names), image_size=tuple(image_shape[:2]), stride=stride)
    raise ValueError("--task classify needs no task object: it is jaxvision.train's default")


def task_from_record(record: dict[str, Any]):
    """The task object a run.json's "task" entry describes."""
    name = record["name"]
    if name == "binary":
        return BinaryTask(class_names=tuple(record["class_names"]), threshold=record.get("threshold", 0.5))
    if name == "regress":
        return RegressionTask(tuple(record["target_names"]), tuple(record["mean"]), tuple(record["std"]), record["loss"])
    if name == "segment":
        return SegmentationTask(class_names=tuple(record["class_names"]), dice_weight=record.get("dice_weight", 1.0))
    if name == "detect":
        return DetectionTask(class_names=tuple(record["class_names"]), image_size=tuple(record["image_size"]),
                             stride=record["stride"], max_detections=record["max_detections"],
                             nms_iou=record["nms_iou"], score_threshold=record["score_threshold"])
    raise ValueError(f"Unknown task {name!r} in run.json: expected one of {', '.join(TASKS[1:])}")


def build_model(task, model_name: str, input_shape, *, kernels: str = "auto", **overrides: Any):
    """The network for ``task``: a zoo model with ``task.num_outputs`` outputs (binary, regress), a U-Net
    (``model_name="unet"``) or a U-Net decoder on a zoo backbone (segment), a CenterNet on a zoo backbone (detect)."""
    from jaxvision import models

    if task.name in ("binary", "regress"):
        return models.get_model(model_name, num_classes=task.num_outputs, kernels=kernels, **overrides)
    if task.name == "segment" and model_name.startswith("unet"):
        return models.get_model(model_name, num_classes=task.num_classes, kernels=kernels, **overrides)
    if model_name.startswith("unet"):
        raise ValueError("Invalid --model unet for --task detect: a detector needs a backbone, e.g. --model resnet20")
    backbone = models.get_model(model_name, kernels=kernels, **overrides)
    if task.name == "segment":
        return models.segmentation_model(backbone, task.num_classes, tuple(input_shape))
    return models.detection_model(backbone, task.num_classes, tuple(input_shape), output_stride=task.stride)


__all__ = ["BinaryTask", "DEFAULTS", "DetectionTask", "HEADLINES", "IGNORE_INDEX", "REGRESSION_LOSSES", "RegressionTask",
           "SegmentationTask", "TASKS", "build_model", "check_task", "make_task", "task_from_record"]
