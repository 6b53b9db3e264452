"""Images and task targets in memory, from a TFDS dataset, a segmentation folder, COCO JSON or YOLO txt.

``load_task_splits`` gives a ``fit`` data source whose batches carry the task's targets as ``Batch.labels``:
0/1 labels [batch] (binary), normalised targets [batch, K] (regress), class masks [batch, H, W] (segment),
or {"boxes" [batch, M, 4] pixels, "classes" [batch, M], "valid" [batch, M]} (detect). Training batches come in
an order seeded by (seed, epoch), the remainder dropped; evaluation batches cover every example once, the last
padded with ``mask = 0``, as ``jaxvision.data.ArraySplits``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from jaxvision.batch import Batch

SPLITS = ("train", "validation", "test")
# TFDS features that hold each kind of target, first match wins.
MASK_FEATURES = ("mask", "segmentation_mask")
BINARY_FEATURES = ("has_circle",)
# oxford_iiit_pet's trimap: 1 pet, 2 background, 3 border -> background 0, pet 1, border 2.
_PET_TRIMAP = {"names": ("background", "pet", "border"), "map": {1: 1, 2: 0, 3: 2}}


def _take(tree: Any, index: np.ndarray) -> Any:
    if isinstance(tree, dict):
        return {k: _take(v, index) for k, v in tree.items()}
    return tree[index]


def _pad(tree: Any, padding: int) -> Any:
    if isinstance(tree, dict):
        return {k: _pad(v, padding) for k, v in tree.items()}
    return np.concatenate([tree, np.zeros((padding, *tree.shape[1:]), tree.dtype)])


@dataclasses.dataclass
class TaskSplits:
    """Normalised images and checked targets of train, validation and test.

    Attributes:
      images: split -> [N, H, W, C] float32, normalised with ``meta.mean``/``meta.std``.
      targets: split -> the task's targets (see the module docstring), checked by ``task.check_targets``.
      meta: a ``jaxvision.data.DatasetMeta`` (num_classes is the task's class count).
      raw: split -> the uint8 images as loaded (for pictures).
      batch_size, eval_batch_size, seed: as ``ArraySplits``'.
    """

    images: dict[str, np.ndarray]
    targets: dict[str, Any]
    meta: Any
    raw: dict[str, np.ndarray]
    batch_size: int
    eval_batch_size: int = 1000
    seed: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.images["train"]) // self.batch_size

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        if not 0 <= start <= self.steps_per_epoch:
            raise ValueError(f"Invalid start={start}: expected a step in [0, {self.steps_per_epoch}] of the epoch.")
        images, targets = self.images["train"], self.targets["train"]
        order = np.random.default_rng((self.seed, epoch)).permutation(len(images))
        for step in range(start, self.steps_per_epoch):
            chosen = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield Batch(images=images[chosen], labels=_take(targets, chosen), mask=np.ones(len(chosen), np.float32))

    def eval_batches(self, split: str) -> Iterator[Batch]:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        images, targets = self.images[split], self.targets[split]
        size = self.eval_batch_size
        for first in range(0, len(images), size):
            index = np.arange(first, min(first + size, len(images)))
            part_images, part_targets = images[index], _take(targets, index)
            padding = size - len(index)
            mask = np.concatenate([np.ones(len(index), np.float32), np.zeros(padding, np.float32)])
            if padding:
                part_images, part_targets = _pad(part_images, padding), _pad(part_targets, padding)
            yield Batch(images=part_images, labels=part_targets, mask=mask)


# --- reading examples -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Examples:
    """One split as read: uint8 images [N, H, W, C] and raw targets (before the task checks them)."""

    images: np.ndarray
    targets: Any


def _resize_image(image: np.ndarray, size: tuple[int, int] | None, nearest: bool = False) -> np.ndarray:
    if size is None or tuple(image.shape[:2]) == tuple(size):
        return image
    squeeze = image.ndim == 3 and image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    resized = np.asarray(pil.resize((size[1], size[0]), Image.NEAREST if nearest else Image.BILINEAR))
    return resized[..., None] if squeeze else resized


def _padded_boxes(per_image: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    most = max([1] + [len(b) for b, _ in per_image])
    boxes = np.zeros((len(per_image), most, 4), np.float32)
    classes = np.zeros((len(per_image), most), np.int32)
    valid = np.zeros((len(per_image), most), bool)
    for i, (b, c) in enumerate(per_image):
        boxes[i, :len(b)], classes[i, :len(b)], valid[i, :len(b)] = b, c, True
    return {"boxes": boxes, "classes": classes, "valid": valid}


def _feature_names(info) -> dict[str, Any]:
    return dict(info.features.items()) if hasattr(info.features, "items") else {}


def _shape(feature) -> tuple:
    shape = getattr(feature, "shape", ())
    return tuple(shape) if isinstance(shape, (tuple, list)) else ()


def _is_mask(feature) -> bool:
    # An image-shaped integer feature of one channel: a class-index mask (TFDS Image or Tensor).
    shape = _shape(feature)
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] == 1)


def describe_targets(task: str, info, target: str | None) -> dict[str, Any]:
    """Which TFDS features give ``task``'s targets, and the class or target names: {"feature", "names"}.

    Raises:
      ValueError: the dataset has no such feature (the message lists what it has).
    """
    features = _feature_names(info)
    have = ", ".join(features) or "none"
    if task == "binary":
        name = target or next((f for f in BINARY_FEATURES if f in features), None)
        if name is None and info.supervised_keys and getattr(features.get(info.supervised_keys[1]), "num_classes", 0) == 2:
            name = info.supervised_keys[1]
        if name not in features:
            raise ValueError(f"Dataset {info.name} has no binary label{f' {target!r}' if target else ''} (features: {have}): "
                             "pass --target FEATURE (a two-class label) or use --task classify")
        label = features[name]
        names = tuple(getattr(label, "names", None) or ("negative", "positive"))
        if names == ("0", "1"):
            names = (f"not {name}", name)
        return {"feature": name, "names": names}
    if task == "regress":
        scalars = [f for f, feature in features.items() if type(feature).__name__ == "Scalar"]
        names = tuple(t.strip() for t in target.split(",")) if target else tuple(scalars[:1])
        missing = [n for n in names if n not in scalars and n not in features] or ([] if names else ["(none)"])
        if missing:
            raise ValueError(f"Dataset {info.name} has no numeric target {missing[0]!r} (scalar features: "
                             f"{', '.join(scalars) or 'none'}): pass --target NAME[,NAME...]")
        return {"feature": names, "names": names}
    if task == "segment":
        name = target or next((f for f in MASK_FEATURES if f in features), None)
        if name not in features:
            raise ValueError(f"Dataset {info.name} has no segmentation mask (features: {have}): pass --target FEATURE, "
                             "or train on a folder with images/, masks/ and classes.txt")
        if not _is_mask(features[name]):
            masks = [f for f, feature in features.items() if _is_mask(feature)]
            raise ValueError(f"Feature {name!r} of {info.name} is not a mask (shape {_shape(features[name])}, expected "
                             f"[height, width] or [height, width, 1]): pass --target with one of {', '.join(masks) or 'none'}")
        if info.name == "oxford_iiit_pet":
            return {"feature": name, "names": _PET_TRIMAP["names"]}
        label = features.get("label")
        objects = getattr(label, "names", None)
        return {"feature": name, "names": ("background", *objects) if objects else ("background", "foreground")}
    if task == "detect":
        name = target or "objects"
        objects = features.get(name)
        if objects is None or "bbox" not in getattr(objects, "feature", objects).keys():
            raise ValueError(f"Dataset {info.name} has no boxes (features: {have}): pass --target FEATURE (a sequence of "
                             "bbox and label), or train on COCO JSON or a YOLO folder")
        inner = objects.feature if hasattr(objects, "feature") else objects
        return {"feature": name, "names": tuple(inner["label"].names)}
    raise ValueError(f"Unknown task {task!r} for TFDS targets")


def _tfds_split(dataset_builder, split: str, task: str, described: dict[str, Any], image_size, *,
                progress: bool = True) -> _Examples:
    import tensorflow_datasets as tfds
    from tqdm.auto import tqdm

    feature = described["feature"]
    pet = dataset_builder.info.name == "oxford_iiit_pet" and task == "segment"
    images, targets = [], []
    dataset = dataset_builder.as_dataset(split=split, shuffle_files=False)
    total = int(dataset.cardinality())
    # Examples come one at a time (boxes vary in number); shapes' 8,000 take a few seconds.
    examples = tqdm(tfds.as_numpy(dataset), total=total if total >= 0 else None, desc=f"reading {split}",
                    unit="image", leave=False, disable=not progress or 0 <= total < 2000)
    for example in examples:
        image = example["image"]
        size = image_size or (images[0].shape[:2] if images else None)
        images.append(_resize_image(image, size))
        if task == "binary":
            targets.append(example[feature])
        elif task == "regress":
            targets.append([float(example[f]) for f in feature])
        elif task == "segment":
            mask = _resize_image(example[feature], size, nearest=True)[..., 0]
            if pet:
                mask = np.vectorize(lambda v: _PET_TRIMAP["map"].get(int(v), 255), otypes=[np.uint8])(mask)
            targets.append(mask)
        else:
            objects = example[feature]
            height, width = images[-1].shape[:2]
            yxyx = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
            labels = np.asarray(objects["label"], np.int32).reshape(-1)
            # Prepared TFDS data has one label per box; tfds.testing.mock_data draws each length on its own.
            count = min(len(yxyx), len(labels))
            yxyx, labels = yxyx[:count], labels[:count]
            boxes = np.stack([yxyx[:, 1] * width, yxyx[:, 0] * height, yxyx[:, 3] * width, yxyx[:, 2] * height], -1)
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            targets.append((boxes[keep], labels[keep]))
    if not images:
        raise ValueError(f"Split {split!r} of {dataset_builder.info.name} is empty: pick a dataset with examples")
    if task == "detect":
        return _Examples(np.stack(images), _padded_boxes(targets))
    return _Examples(np.stack(images), np.asarray(targets))


def _from_tfds(name: str, task: str, *, target: str | None, image_size, validation_fraction: float,
               data_dir: str | None, progress: bool = True) -> tuple[dict[str, _Examples], tuple[str, ...], dict[str, Any]]:
    from jaxvision.data import pipeline

    dataset_builder = pipeline.builder(name, data_dir=data_dir)
    described = describe_targets(task, dataset_builder.info, target)
    split_names = pipeline._split_names(dataset_builder, validation_fraction)
    examples = {key: _tfds_split(dataset_builder, split, task, described, image_size, progress=progress)
                for key, split in split_names.items()}
    return examples, tuple(described["names"]), {"source": f"tfds:{name}", "targets": described["feature"]}


def _carve(data_images: np.ndarray, targets: Any, fraction: float, seed: int) -> tuple[_Examples, _Examples]:
    order = np.random.default_rng(seed).permutation(len(data_images))
    cut = len(order) - int(round(len(order) * fraction))
    if not 0 < cut < len(order):
        raise ValueError(f"Invalid validation fraction {fraction} for {len(order)} examples: expected one that leaves "
                         "at least one example on each side, e.g. 0.1")
    first, second = np.sort(order[:cut]), np.sort(order[cut:])
    return _Examples(data_images[first], _take(targets, first)), _Examples(data_images[second], _take(targets, second))


def _three_splits(found: dict[str, Any], make, validation_fraction: float, seed: int) -> dict[str, _Examples]:
    """train/validation/test from whichever splits a folder has: a missing test or validation is carved from train."""
    splits = {key: make(value) for key, value in found.items()}
    if "val" in splits:
        splits["validation"] = splits.pop("val")
    if "train" not in splits:
        raise ValueError(f"No training split in {sorted(found)}: expected train/ (and optionally validation/ and test/)")
    if "test" not in splits:
        splits["train"], splits["test"] = _carve(splits["train"].images, splits["train"].targets, 0.1, seed + 1)
    if "validation" not in splits:
        splits["train"], splits["validation"] = _carve(splits["train"].images, splits["train"].targets,
                                                       validation_fraction, seed)
    return splits


def _from_files(path: str, task: str, *, image_size, channels: int, validation_fraction: float, seed: int):
    from jaxvision.data import detection_files, segmentation_folder

    if task == "segment":
        if not segmentation_folder.is_segmentation_folder(path) and not segmentation_folder.is_segmentation_folder(
                os.path.join(path, "train")):
            raise ValueError(f"{path} is not a segmentation folder: expected images/, masks/ (class-index PNGs) and "
                             "classes.txt, or train/ and test/ folders holding them")
        if os.path.isdir(os.path.join(path, "train")):
            found = segmentation_folder.read_segmentation_splits(path, image_size=image_size, channels=channels)
        else:
            found = {"train": segmentation_folder.read_segmentation_folder(path, image_size=image_size, channels=channels)}
        names = next(iter(found.values())).class_names
        splits = _three_splits(found, lambda d: _Examples(d.images, d.masks), validation_fraction, seed)
        return splits, names, {"source": f"segmentation folder {path}"}
    if task == "detect":
        def boxes(d):
            return _Examples(d.images, {"boxes": d.boxes, "classes": d.classes, "valid": d.valid})
        if detection_files.is_coco_file(path):
            data = detection_files.read_coco(path, image_size=image_size, channels=channels)
            return _three_splits({"train": data}, boxes, validation_fraction, seed), data.class_names, {"source": f"COCO {path}"}
        if detection_files.is_yolo_folder(path) or detection_files.is_yolo_folder(os.path.join(path, "train")):
            if os.path.isdir(os.path.join(path, "train")):
                found = detection_files.read_yolo_splits(path, image_size=image_size, channels=channels)
            else:
                found = {"train": detection_files.read_yolo(path, image_size=image_size, channels=channels)}
            names = next(iter(found.values())).class_names
            return _three_splits(found, boxes, validation_fraction, seed), names, {"source": f"YOLO {path}"}
        raise ValueError(f"{path} holds no detection data: expected a COCO annotations .json file or a YOLO folder "
                         "(images/, labels/ with class cx cy w h lines, classes.txt)")
    raise ValueError(f"--task {task} reads TFDS datasets only; {path} is a file or folder (image folders are for "
                     "--task classify)")


def _with_common_size(splits: dict[str, _Examples], task: str) -> dict[str, _Examples]:
    shapes = {key: examples.images.shape[1:] for key, examples in splits.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"Splits differ in image shape ({shapes}): pass --image-size H,W so they share one")
    return splits


def load_task_splits(task, dataset: str, *, batch_size: int = 64, eval_batch_size: int = 500,
                     validation_fraction: float = 0.1, seed: int = 0, image_size=None, target: str | None = None,
                     channels: int = 3, data_dir: str | None = None, make_task=None, mean=None, std=None,
                     progress: bool = True) -> tuple[TaskSplits, Any]:
    """Loads ``dataset`` for ``task`` ("binary", "regress", "segment" or "detect").

    Args:
      task: the task's name.
      dataset: a TFDS name ("shapes", "oxford_iiit_pet", "voc/2007", ...), a segmentation folder, a COCO
        annotations JSON or a YOLO folder.
      batch_size, eval_batch_size, validation_fraction, seed: as ``jaxvision.data.load_splits``.
      image_size: (height, width) to resize every image (and mask, and box) to; None keeps the first image's.
      target: the TFDS feature(s) to learn (regress: "area_fraction", "count" or both comma-separated).
      channels: 1 or 3, for folders and files.
      data_dir: TFDS data folder.
      make_task: ``(class_names, train_targets, image_shape) -> task object``; builds the task from the data
        (a regression task's statistics come from the training split).
      mean, std: per-channel normalisation in [0, 1] units (a trained run's); computed from the training split
        when not given.
      progress: a progress bar while a large TFDS split is read.

    Returns:
      (TaskSplits, the task object).
    """
    from jaxvision.data.pipeline import DatasetMeta

    if os.path.exists(dataset):
        splits, names, source = _from_files(dataset, task, image_size=image_size, channels=channels,
                                            validation_fraction=validation_fraction, seed=seed)
    else:
        splits, names, source = _from_tfds(dataset, task, target=target, image_size=image_size,
                                           validation_fraction=validation_fraction, data_dir=data_dir, progress=progress)
    splits = _with_common_size(splits, task)
    image_shape = tuple(int(d) for d in splits["train"].images.shape[1:])
    task_object = make_task(tuple(names), splits["train"].targets, image_shape)
    targets = {key: task_object.check_targets(examples.targets, f"the {key} split of {dataset}")
               for key, examples in splits.items()}
    if mean is None or std is None:
        pixels = splits["train"].images.astype(np.float64) / 255.0
        mean = pixels.mean((0, 1, 2))
        std = np.maximum(pixels.std((0, 1, 2)), 1e-3)
        del pixels
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    images = {key: ((e.images.astype(np.float32) / 255.0 - mean.astype(np.float32)) / std.astype(np.float32))
              for key, e in splits.items()}
    counts = {key: len(e.images) for key, e in splits.items()}
    meta = DatasetMeta(
        name=dataset, image_shape=image_shape, num_classes=len(names), num_train=counts["train"],
        num_validation=counts["validation"], num_test=counts["test"], mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std), class_names=tuple(names),
        preprocessing={"image_size": list(image_shape[:2]),
                       "image_size_chosen": f"given: image_size={list(image_size)}" if image_size else "the dataset's own size",
                       "resize": "stretch (masks: nearest)" if image_size else "none", "channels": image_shape[-1],
                       "scale": "pixels / 255", **source},
    )
    if not 1 <= batch_size:
        raise ValueError(f"Invalid batch_size={batch_size}: expected a positive integer")
    return TaskSplits(images=images, targets=targets, meta=meta, raw={k: e.images for k, e in splits.items()},
                      batch_size=min(batch_size, counts["train"]), eval_batch_size=eval_batch_size, seed=seed), task_object
