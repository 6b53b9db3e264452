"""``jaxvision.tasks.data.load_task_splits``: folders, COCO, YOLO and TFDS datasets (mocked) as task batches."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxvision.tasks import make_task
from jaxvision.tasks.data import load_task_splits


def _factory(task):
    return lambda names, train, shape: make_task(task, names, train, shape)


def _scene(i, size=16):
    """A square of class 1 + i % 2 at a position set by i, on black: image, mask and its box."""
    image = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    top, left = i % 5, (2 * i) % 7
    cls = 1 + i % 2
    image[top:top + 6, left:left + 6] = (200, 50 * cls, 30)
    mask[top:top + 6, left:left + 6] = cls
    return image, mask, (left, top, left + 6, top + 6), cls


def test_segmentation_folder_becomes_carved_splits_of_masks(tmp_path):
    root = tmp_path / "seg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nred\nyellow\n")
    for i in range(20):
        image, mask, _, _ = _scene(i)
        Image.fromarray(image).save(root / "images" / f"s{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i:02d}.png")
    splits, task = load_task_splits("segment", str(root), batch_size=4, make_task=_factory("segment"))
    assert task.class_names == ("background", "red", "yellow")
    assert splits.meta.num_train + splits.meta.num_validation + splits.meta.num_test == 20
    assert splits.meta.num_test == 2 and splits.meta.num_validation == 2
    batch = next(splits.train_batches(0))
    assert batch.images.shape == (4, 16, 16, 3) and batch.labels.shape == (4, 16, 16)
    # Masks stay aligned with their images: the red channel's square is exactly the non-background mask.
    raw = splits.raw["train"]
    np.testing.assert_array_equal(raw[..., 0] == 200, splits.targets["train"] > 0)


def _coco(tmp_path, count=20):
    images, annotations = [], []
    for i in range(count):
        image, _, (x1, y1, x2, y2), cls = _scene(i)
        Image.fromarray(image).save(tmp_path / f"c{i}.png")
        images.append({"id": i + 1, "file_name": f"c{i}.png", "width": 16, "height": 16})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 10 * cls, "bbox": [x1, y1, x2 - x1, y2 - y1]})
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 10, "name": "red"}, {"id": 20, "name": "yellow"}]}))
    return str(path)


def test_coco_file_becomes_box_batches(tmp_path):
    splits, task = load_task_splits("detect", _coco(tmp_path), batch_size=4, make_task=_factory("detect"))
    assert task.class_names == ("red", "yellow") and task.image_size == (16, 16)
    targets = splits.targets["train"]
    assert targets["boxes"].shape[1:] == (1, 4) and targets["valid"].all()
    raw = splits.raw["train"]
    for image, (x1, y1, x2, y2) in zip(raw, targets["boxes"][:, 0].astype(int)):
        rows, columns = np.nonzero(image[..., 0] == 200)
        assert (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1) == (x1, y1, x2, y2)


def test_yolo_folder_with_splits(tmp_path):
    for split, count in (("train", 12), ("test", 4)):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "labels").mkdir()
        for i in range(count):
            image, _, (x1, y1, x2, y2), cls = _scene(i)
            Image.fromarray(image).save(tmp_path / split / "images" / f"y{i}.png")
            (tmp_path / split / "labels" / f"y{i}.txt").write_text(
                f"{cls - 1} {(x1 + x2) / 32} {(y1 + y2) / 32} {(x2 - x1) / 16} {(y2 - y1) / 16}\n")
    (tmp_path / "classes.txt").write_text("red\nyellow\n")
    splits, task = load_task_splits("detect", str(tmp_path), batch_size=4, make_task=_factory("detect"))
    assert splits.meta.num_test == 4 and splits.meta.num_train + splits.meta.num_validation == 12
    assert task.class_names == ("red", "yellow")


def test_files_for_the_wrong_task_get_one_line(tmp_path):
    with pytest.raises(ValueError, match="holds no detection data"):
        load_task_splits("detect", str(tmp_path), make_task=_factory("detect"))
    with pytest.raises(ValueError, match="is not a segmentation folder"):
        load_task_splits("segment", str(tmp_path), make_task=_factory("segment"))


@pytest.mark.parametrize("name, task", [("oxford_iiit_pet", "segment"), ("voc/2007", "detect")])
def test_tfds_datasets_by_name(name, task):
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        splits, made = load_task_splits(task, name, image_size=(32, 32), make_task=_factory(task))
    shapes = jax.tree.map(np.shape, splits.targets["train"])
    if task == "segment":
        assert made.class_names == ("background", "pet", "border") and shapes == (splits.meta.num_train, 32, 32)
        assert set(np.unique(splits.targets["train"])) <= {0, 1, 2, 255}
    else:
        assert made.class_names[:3] == ("aeroplane", "bicycle", "bird") and len(made.class_names) == 20
        boxes = splits.targets["train"]["boxes"][splits.targets["train"]["valid"]]
        assert boxes.size and boxes.min() >= 0 and boxes.max() <= 32


def test_regression_targets_by_name_and_statistics_from_train():
    splits, task = load_task_splits("regress", "shapes/small", target="area_fraction,count",
                                    make_task=lambda names, train, shape: make_task("regress", names, train, shape,
                                                                                    target_names=names))
    assert task.target_names == ("area_fraction", "count")
    normalised = splits.targets["train"]
    np.testing.assert_allclose(normalised.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(0), 1.0, atol=1e-4)
    assert os.path.basename(splits.meta.name) == "small" or splits.meta.name == "shapes/small"
