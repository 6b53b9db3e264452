"""Segmentation folders, COCO JSON and YOLO folders read from tiny files whose pixels and boxes are known.

Golden boxes are computed by hand in the comments; golden resized images come from Pillow's own resize of the
written pixels, golden resized masks from index arithmetic (nearest sampling at pixel centres).
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxvision.data.detection_files import is_coco_file, is_yolo_folder, read_coco, read_yolo, read_yolo_splits
from jaxvision.data.segmentation_folder import (
    is_segmentation_folder,
    read_segmentation_folder,
    read_segmentation_splits,
)

HEIGHT, WIDTH = 8, 12


def _pixels(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _mask(seed: int, values=(0, 2, 255), height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.array(values, np.uint8), (height, width))


def _write(path, array: np.ndarray) -> None:
    """A PNG: uint8 [h, w] is mode L (a class-index mask), [h, w, 3] is RGB."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def _segmentation_folder(root, classes=("background", "cat", "dog"), count: int = 2) -> dict:
    """Writes count image/mask pairs; returns name -> (pixels, mask)."""
    os.makedirs(root, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n\n")
    written = {}
    for i in range(count):
        name = f"img{i}"
        pixels, mask = _pixels(i), _mask(10 + i)
        _write(str(root / "images" / f"{name}.png"), pixels)
        _write(str(root / "masks" / f"{name}.png"), mask)
        written[name] = (pixels, mask)
    return written


# ---------------------------------------------------------------------------------------------------------------
# Segmentation folders.


def test_segmentation_folder_reads_pixels_masks_and_classes_exactly(tmp_path):
    written = _segmentation_folder(tmp_path)
    data = read_segmentation_folder(str(tmp_path))
    assert data.class_names == ("background", "cat", "dog")
    assert data.names == ("img0", "img1")
    assert data.images.dtype == np.uint8 and data.images.shape == (2, HEIGHT, WIDTH, 3)
    assert data.masks.dtype == np.int32 and data.masks.shape == (2, HEIGHT, WIDTH)
    for i, (pixels, mask) in enumerate(written.values()):
        np.testing.assert_array_equal(data.images[i], pixels)
        np.testing.assert_array_equal(data.masks[i], mask)  # 255 (ignore) kept as 255
    assert (data.masks == 255).any()


def test_palette_masks_read_as_indices_not_colours(tmp_path):
    _segmentation_folder(tmp_path, count=1)
    mask = _mask(3, values=(0, 1, 2))
    palette_mask = Image.fromarray(mask, "P")
    palette_mask.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * (256 * 3 - 9))
    palette_mask.save(tmp_path / "masks" / "img0.png")
    np.testing.assert_array_equal(read_segmentation_folder(str(tmp_path)).masks[0], mask)


def test_masks_resize_by_nearest_and_images_by_bilinear(tmp_path):
    written = _segmentation_folder(tmp_path, count=1)
    pixels, mask = written["img0"]
    shrunk = read_segmentation_folder(str(tmp_path), image_size=(4, 6))
    # Halving both sides, nearest samples the source pixel under each output centre: 2i + 1.
    np.testing.assert_array_equal(shrunk.masks[0], mask[1::2, 1::2])
    assert set(np.unique(shrunk.masks)) <= {0, 2, 255}
    expected = np.asarray(Image.fromarray(pixels).resize((6, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(shrunk.images[0], expected)
    grown = read_segmentation_folder(str(tmp_path), image_size=(16, 24), channels=1)
    np.testing.assert_array_equal(grown.masks[0], np.repeat(np.repeat(mask, 2, 0), 2, 1))
    assert grown.images.shape == (1, 16, 24, 1)


def test_no_image_size_stretches_every_image_to_the_first(tmp_path):
    _segmentation_folder(tmp_path, count=1)
    small_mask = _mask(5, height=4, width=6)
    _write(str(tmp_path / "images" / "img1.png"), _pixels(5, 4, 6))
    _write(str(tmp_path / "masks" / "img1.png"), small_mask)
    data = read_segmentation_folder(str(tmp_path))
    assert data.images.shape == (2, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(data.masks[1], np.repeat(np.repeat(small_mask, 2, 0), 2, 1))


def test_segmentation_splits_share_classes_and_size(tmp_path):
    _segmentation_folder(tmp_path / "train", count=2)
    _segmentation_folder(tmp_path / "val", count=1)
    (tmp_path / "train" / "classes.txt").unlink()
    (tmp_path / "val" / "classes.txt").unlink()
    (tmp_path / "classes.txt").write_text("background\ncat\ndog\n")
    _write(str(tmp_path / "val" / "images" / "img0.png"), _pixels(0, 4, 6))
    _write(str(tmp_path / "val" / "masks" / "img0.png"), _mask(1, height=4, width=6))
    assert is_segmentation_folder(str(tmp_path)) and not is_segmentation_folder(str(tmp_path / "train" / "images"))
    splits = read_segmentation_splits(str(tmp_path))
    assert sorted(splits) == ["train", "validation"]
    assert splits["train"].masks.shape == (2, HEIGHT, WIDTH)
    assert splits["validation"].images.shape == (1, HEIGHT, WIDTH, 3)  # stretched to the training size
    assert splits["validation"].class_names == ("background", "cat", "dog")
    with pytest.raises(ValueError, match="read_segmentation_splits"):
        read_segmentation_folder(str(tmp_path))


def _break(root, what: str) -> None:
    if what == "no images folder":
        os.rename(root / "images", root / "pictures")
    elif what == "no masks folder":
        os.rename(root / "masks", root / "labels")
    elif what == "no classes file":
        (root / "classes.txt").unlink()
    elif what == "image without mask":
        (root / "masks" / "img1.png").unlink()
    elif what == "mask without image":
        _write(str(root / "masks" / "extra.png"), _mask(0))
    elif what == "mask size":
        _write(str(root / "masks" / "img1.png"), _mask(0, height=HEIGHT, width=WIDTH + 1))
    elif what == "mask value":
        mask = _mask(0)
        mask[0, 0] = 5
        _write(str(root / "masks" / "img1.png"), mask)
    elif what == "rgb mask":
        _write(str(root / "masks" / "img1.png"), np.stack([_mask(0)] * 3, -1))
    elif what == "empty":
        for name in os.listdir(root / "images"):
            (root / "images" / name).unlink()


@pytest.mark.parametrize(
    "what,match",
    [
        ("no images folder", r"Missing folder .*images"),
        ("no masks folder", r"Missing folder .*masks"),
        ("no classes file", r"Missing classes file .*classes.txt"),
        ("image without mask", r"img1.png has no mask"),
        ("mask without image", r"extra.png has no image"),
        ("mask size", r"is 8x13 .* but its image is 8x12"),
        ("mask value", r"img1.png has value 5 but classes.txt names 3 classes"),
        ("rgb mask", r"save masks as class-index PNGs \(mode L or P\)"),
        ("empty", r"No images in .*images"),
    ],
)
def test_segmentation_folder_errors_name_the_problem(tmp_path, what, match):
    _segmentation_folder(tmp_path)
    _break(tmp_path, what)
    with pytest.raises(ValueError, match=match):
        read_segmentation_folder(str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# COCO.


def _coco(tmp_path, annotations=None, images=None) -> str:
    """Three 8x12 images: a (three boxes, one crowd, one empty), b (one box), c (none)."""
    for i, name in enumerate("abc"):
        _write(str(tmp_path / "images" / f"{name}.png"), _pixels(i))
    if images is None:
        images = [{"id": 10 + i, "file_name": f"images/{n}.png", "width": WIDTH, "height": HEIGHT} for i, n in enumerate("abc")]
    if annotations is None:
        annotations = [
            {"image_id": 10, "category_id": 3, "bbox": [1, 2, 3, 4]},  # cat: (1, 2, 4, 6)
            {"image_id": 10, "category_id": 7, "bbox": [10, 6, 5, 5]},  # dog: (10, 6, 15, 11) clipped to (10, 6, 12, 8)
            {"image_id": 10, "category_id": 7, "bbox": [0, 0, 4, 4], "iscrowd": 1},  # skipped
            {"image_id": 10, "category_id": 3, "bbox": [2, 2, 0, 3]},  # zero width: dropped
            {"image_id": 11, "category_id": 7, "bbox": [0, 0, 12, 8]},  # dog: the whole image
        ]
    categories = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path)


def test_coco_boxes_classes_and_padding(tmp_path):
    data = read_coco(_coco(tmp_path))
    assert data.class_names == ("cat", "dog")  # sorted category id order: 3, 7
    assert data.names == ("images/a", "images/b", "images/c")
    assert data.images.shape == (3, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(data.images[1], _pixels(1))
    assert data.boxes.dtype == np.float32 and data.classes.dtype == np.int32 and data.valid.dtype == bool
    expected = np.zeros((3, 2, 4), np.float32)
    expected[0, 0], expected[0, 1], expected[1, 0] = (1, 2, 4, 6), (10, 6, 12, 8), (0, 0, 12, 8)
    np.testing.assert_array_equal(data.boxes, expected)
    np.testing.assert_array_equal(data.classes, [[0, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(data.valid, [[True, True], [True, False], [False, False]])
    assert is_coco_file(_coco(tmp_path)) and not is_coco_file(str(tmp_path / "images" / "a.png"))


def test_coco_boxes_scale_with_the_resize(tmp_path):
    data = read_coco(_coco(tmp_path), image_size=(4, 24))
    # x scales by 24 / 12 = 2, y by 4 / 8 = 0.5.
    np.testing.assert_allclose(data.boxes[0], [[2, 1, 8, 3], [20, 3, 24, 4]])
    np.testing.assert_allclose(data.boxes[1, 0], [0, 0, 24, 4])
    assert data.images.shape == (3, 4, 24, 3)


def test_coco_images_dir_is_where_file_names_are_relative_to(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT}]
    path = _coco(tmp_path, annotations=[], images=images)
    with pytest.raises(ValueError, match="Missing image .*a.png .*images_dir"):
        read_coco(path)
    data = read_coco(path, str(tmp_path / "images"))
    assert data.names == ("a",) and data.boxes.shape == (1, 1, 4) and not data.valid.any()


@pytest.mark.parametrize(
    "annotation,match",
    [
        ({"image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1]}, r"image_id=99, which no image has"),
        ({"image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1]}, r"category_id=5, not one of the categories \[3, 7\]"),
        ({"image_id": 10, "category_id": 3, "bbox": [4, 4, -2, 1]}, r"negative size"),
        ({"image_id": 10, "category_id": 3, "bbox": [4, 4, 2]}, r"expected \[x, y, width, height\]"),
    ],
)
def test_coco_annotation_errors(tmp_path, annotation, match):
    with pytest.raises(ValueError, match=match):
        read_coco(_coco(tmp_path, annotations=[annotation]))


def test_coco_missing_file_and_wrong_size_errors(tmp_path):
    with pytest.raises(ValueError, match="Missing COCO annotations file"):
        read_coco(str(tmp_path / "nope.json"))
    images = [{"id": 10, "file_name": "images/a.png", "width": 24, "height": HEIGHT}]
    with pytest.raises(ValueError, match=r"a.png is 8x12 .* says 8x24"):
        read_coco(_coco(tmp_path, annotations=[], images=images))


# ---------------------------------------------------------------------------------------------------------------
# YOLO.


def _yolo(root, labels=None, classes="cat\ndog\n") -> None:
    for i, name in enumerate("ab"):
        _write(str(root / "images" / f"{name}.png"), _pixels(i))
    os.makedirs(root / "labels", exist_ok=True)
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    if labels is None:
        # 0: centre (6, 4), size 6 x 2 -> (3, 3, 9, 5).
        # 1: centre (1.2, 7.2), size 4.8 x 3.2 -> (-1.2, 5.6, 3.6, 8.8), clipped to (0, 5.6, 3.6, 8).
        labels = "0 0.5 0.5 0.5 0.25\n\n1 0.1 0.9 0.4 0.4\n"
    (root / "labels" / "a.txt").write_text(labels)  # b.png has no label file: no objects


def test_yolo_boxes_in_pixels_and_padding(tmp_path):
    _yolo(tmp_path)
    data = read_yolo(str(tmp_path))
    assert data.class_names == ("cat", "dog") and data.names == ("a", "b")
    np.testing.assert_array_equal(data.images[0], _pixels(0))
    np.testing.assert_allclose(data.boxes[0], [[3, 3, 9, 5], [0, 5.6, 3.6, 8]], rtol=1e-6)
    np.testing.assert_array_equal(data.boxes[1], 0)
    np.testing.assert_array_equal(data.classes, [[0, 1], [0, 0]])
    np.testing.assert_array_equal(data.valid, [[True, True], [False, False]])
    assert is_yolo_folder(str(tmp_path)) and not is_yolo_folder(str(tmp_path / "images"))


def test_yolo_boxes_scale_with_the_resize(tmp_path):
    _yolo(tmp_path, labels="0 0.5 0.5 0.5 0.25\n")
    data = read_yolo(str(tmp_path), image_size=(4, 24))
    # Normalised centre (0.5, 0.5), size 0.5 x 0.25 of a 24-wide, 4-high image: (6, 1.5, 18, 2.5).
    np.testing.assert_allclose(data.boxes[0], [[6, 1.5, 18, 2.5]])
    assert data.boxes.shape == (2, 1, 4) and data.images.shape == (2, 4, 24, 3)


@pytest.mark.parametrize(
    "yaml_text",
    [
        "path: .\nnames: [cat, 'dog']  # two\nnc: 2\n",
        "names:\n  - cat\n  - \"dog\"\ntrain: images\n",
        "nc: 2\nnames:\n  0: cat\n  1: dog\n",
    ],
)
def test_yolo_class_names_from_data_yaml(tmp_path, yaml_text):
    _yolo(tmp_path, classes=None)
    (tmp_path / "data.yaml").write_text(yaml_text)
    assert read_yolo(str(tmp_path)).class_names == ("cat", "dog")


def test_yolo_accepts_rounding_just_outside_the_unit_range(tmp_path):
    _yolo(tmp_path, labels="1 0.5 0.5 1.0000004 1\n")
    data = read_yolo(str(tmp_path))
    np.testing.assert_allclose(data.boxes[0, 0], [0, 0, WIDTH, HEIGHT])


@pytest.mark.parametrize(
    "labels,match",
    [
        ("0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n", r"Line 2 of .*a.txt has class 2, but there are 2 classes"),
        ("0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1\n", r"Line 2 of .*a.txt is malformed .*expected `class cx cy w h`"),
        ("0.5 0.5 0.5 0.1 0.1\n", r"Line 1 of .*a.txt is malformed"),
        ("0 0.5 1.1 0.1 0.1\n", r"Line 1 of .*a.txt has coordinates .* outside \[0, 1\]"),
        ("0 0.5 0.5 -0.1 0.1\n", r"outside \[0, 1\]"),
    ],
)
def test_yolo_label_errors(tmp_path, labels, match):
    _yolo(tmp_path, labels=labels)
    with pytest.raises(ValueError, match=match):
        read_yolo(str(tmp_path))


def test_yolo_folder_errors(tmp_path):
    _yolo(tmp_path, classes=None)
    with pytest.raises(ValueError, match=r"Missing .*classes.txt"):
        read_yolo(str(tmp_path))
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "labels" / "ghost.txt").write_text("")
    with pytest.raises(ValueError, match=r"ghost.txt has no image"):
        read_yolo(str(tmp_path))
    os.rename(tmp_path / "labels", tmp_path / "annotations")
    with pytest.raises(ValueError, match=r"Missing folder .*labels"):
        read_yolo(str(tmp_path))


def test_yolo_splits(tmp_path):
    _yolo(tmp_path / "train", classes=None)
    _yolo(tmp_path / "test", labels="1 0.5 0.5 1 1\n", classes=None)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    splits = read_yolo_splits(str(tmp_path), image_size=(4, 6))
    assert sorted(splits) == ["test", "train"]
    np.testing.assert_allclose(splits["test"].boxes[0, 0], [0, 0, 6, 4])
    assert splits["train"].boxes.shape == (2, 2, 4) and splits["test"].images.shape == (2, 4, 6, 3)
    with pytest.raises(ValueError, match="read_yolo_splits"):
        read_yolo(str(tmp_path))
