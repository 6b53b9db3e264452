"""The generated ``shapes`` dataset: deterministic builds, split sizes, and every target checked against an
independent rendering (matplotlib's point-in-polygon) and against the stored mask itself."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from matplotlib.path import Path

from jaxvision.data import shapes

SIZE = 32  # the "small" config
# Seconds: a build of the small config takes about 2 s on one shared core; 10x leaves room for a busy machine.
MAX_BUILD_SECONDS = 20.0


def _build(data_dir) -> tuple[tfds.core.DatasetBuilder, float]:
    builder = tfds.builder("shapes/small", data_dir=str(data_dir))
    start = time.perf_counter()
    builder.download_and_prepare()
    return builder, time.perf_counter() - start


def _read(builder, split: str) -> list[dict]:
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two independent builds of the small config, their seconds, and their examples per split."""
    first, first_seconds = _build(tmp_path_factory.mktemp("first"))
    second, second_seconds = _build(tmp_path_factory.mktemp("second"))
    return {
        "builder": first,
        "seconds": (first_seconds, second_seconds),
        "first": {split: _read(first, split) for split in ("train", "test")},
        "second": {split: _read(second, split) for split in ("train", "test")},
    }


def _oracle_owner(scene: shapes.Scene) -> tuple[np.ndarray, np.ndarray]:
    """Image and per-pixel shape index (-1 background) drawn without jaxvision's rasteriser."""
    centres = np.stack(np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5, indexing="xy"), -1).reshape(-1, 2)
    image = scene.background.copy()
    owner = np.full((SIZE, SIZE), -1)
    for index, shape in enumerate(scene.shapes):
        if shape.kind == "circle":
            inside = np.hypot(centres[:, 0] - shape.center_x, centres[:, 1] - shape.center_y) <= shape.radius
        else:
            inside = Path(shape.vertices()).contains_points(centres)
        inside = inside.reshape(SIZE, SIZE)
        image[inside] = shape.colour
        owner[inside] = index
    return image, owner


def _tight_box(pixels: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(pixels)
    return np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]) / SIZE


def test_two_builds_are_identical_and_quick(built):
    for split in ("train", "test"):
        for one, two in zip(built["first"][split], built["second"][split], strict=True):
            for key in ("image", "mask", "label", "has_circle", "area_fraction", "count"):
                np.testing.assert_array_equal(one[key], two[key])
            np.testing.assert_array_equal(one["objects"]["bbox"], two["objects"]["bbox"])
            np.testing.assert_array_equal(one["objects"]["label"], two["objects"]["label"])
    assert max(built["seconds"]) < MAX_BUILD_SECONDS, built["seconds"]


def test_split_sizes_and_configs(built):
    info = built["builder"].info
    assert {split: info.splits[split].num_examples for split in ("train", "test")} == {"train": 800, "test": 200}
    assert [len(built["first"][split]) for split in ("train", "test")] == [800, 200]
    assert info.supervised_keys == ("image", "label")
    assert info.features["label"].names == ["circle", "square", "triangle"]
    assert built["first"]["train"][0]["image"].shape == (SIZE, SIZE, 3)
    default = tfds.builder("shapes", data_dir=str(built["builder"].data_dir))
    assert default.builder_config.name == "64"
    assert (default.builder_config.image_size, default.builder_config.num_train, default.builder_config.num_test) == (
        64,
        8000,
        1000,
    )
    assert default.info.features["image"].shape == (64, 64, 3)


def test_splits_are_different_scenes(built):
    train = {example["image"].tobytes() for example in built["first"]["train"]}
    test = {example["image"].tobytes() for example in built["first"]["test"]}
    assert len(train) == 800 and len(test) == 200 and not train & test


@pytest.mark.parametrize("split", ["train", "test"])
def test_stored_examples_match_an_independent_rendering(built, split):
    stored = {example["image"].tobytes(): example for example in built["first"][split]}
    for index in range(len(stored)):
        scene = shapes.sample_scene(np.random.default_rng((0, shapes.SPLIT_IDS[split], index)), SIZE)
        image, owner = _oracle_owner(scene)
        example = stored.pop(image.tobytes())  # KeyError: no stored example shows this scene
        visible = [i for i in range(len(scene.shapes)) if (owner == i).any()]
        classes = np.array([scene.shapes[i].label for i in visible])
        expected_mask = np.zeros((SIZE, SIZE), np.uint8)
        for i in visible:
            expected_mask[owner == i] = scene.shapes[i].label + 1
        np.testing.assert_array_equal(example["mask"][..., 0], expected_mask)
        assert example["count"] == len(visible)
        np.testing.assert_array_equal(example["objects"]["label"], classes)
        np.testing.assert_allclose(example["objects"]["bbox"], [_tight_box(owner == i) for i in visible], atol=1e-7)
        areas = np.array([(owner == i).sum() for i in visible])
        assert example["label"] == classes[np.argmax(areas)]
        assert example["area_fraction"] == pytest.approx(areas.max() / SIZE**2, abs=1e-7)
        assert example["has_circle"] == int(0 in classes)
    assert not stored  # every stored example was accounted for


def test_targets_follow_from_the_stored_mask(built):
    distinct_examples = 0
    for example in built["first"]["train"]:
        mask = example["mask"][..., 0]
        labels = example["objects"]["label"]
        assert example["has_circle"] == int((mask == 1).any())
        assert set(np.unique(mask)) == {0} | set(labels + 1)
        # Every shape pixel lies in a box of its own class.
        covered = np.zeros_like(mask, bool)
        for (ymin, xmin, ymax, xmax), label in zip(np.round(example["objects"]["bbox"] * SIZE).astype(int), labels):
            covered[ymin:ymax, xmin:xmax] |= mask[ymin:ymax, xmin:xmax] == label + 1
        np.testing.assert_array_equal(covered, mask > 0)
        if len(set(labels)) == len(labels):
            # One shape per class: its pixels are exactly the mask's pixels of that class.
            distinct_examples += 1
            pixels = np.array([(mask == label + 1).sum() for label in labels])
            for box, label in zip(example["objects"]["bbox"], labels):
                np.testing.assert_allclose(box, _tight_box(mask == label + 1), atol=1e-7)
            assert example["area_fraction"] == pytest.approx(pixels.max() / SIZE**2, abs=1e-7)
            assert example["label"] == labels[np.argmax(pixels)]
    # About 2/3 of scenes have no repeated class (all of the one-shape ones, 2/3 and 2/9 of the others).
    assert distinct_examples > 0.6 * len(built["first"]["train"])


def test_target_distributions(built):
    train = built["first"]["train"]
    labels = np.bincount([example["label"] for example in train], minlength=3) / len(train)
    counts = np.bincount([example["count"] for example in train], minlength=4)
    # Classes and shape counts are drawn uniformly; hiding and ties move them by a few percent.
    np.testing.assert_allclose(labels, 1 / 3, atol=0.06)
    assert counts[0] == 0 and np.all(counts[1:] > 0.25 * len(train))
    # P(has a circle) = 1 - E[(2/3)^n] with n uniform in 1..3 = 1 - (2/3 + 4/9 + 8/27) / 3 = 0.531 before hiding.
    assert np.mean([example["has_circle"] for example in train]) == pytest.approx(0.531, abs=0.06)
    areas = np.array([example["area_fraction"] for example in train])
    # A whole shape covers pi s^2 with s in [0.10, 0.22] of the side; the largest is rarely much occluded.
    assert areas.max() <= np.pi * shapes.MAX_SCALE**2 + 0.01
    assert np.median(areas) > np.pi * shapes.MIN_SCALE**2
    assert np.std(areas) > 0.02


def _axis_square(center: float, half_side: float) -> shapes.Shape:
    # At angle pi/4 the corners sit at (center +- half_side, center +- half_side): an axis-aligned square.
    return shapes.Shape("square", center, center, half_side * np.sqrt(2.0), np.pi / 4, (200, 0, 0))


def test_fully_hidden_shape_is_dropped():
    circle = shapes.Shape("circle", 16.0, 16.0, 2.5, 0.0, (0, 200, 0))
    scene = shapes.Scene(np.zeros((SIZE, SIZE, 3), np.uint8), (circle, _axis_square(16.0, 4.0)))
    example = shapes.render_scene(scene)
    # Hand count: pixel centres 12.5 .. 19.5 lie inside [12, 20], so rows and columns 12 .. 19, 64 pixels.
    assert (example["count"], example["label"], example["has_circle"]) == (1, 1, 0)
    assert example["area_fraction"] == pytest.approx(64 / 1024)
    np.testing.assert_array_equal(example["objects"]["label"], [1])
    np.testing.assert_allclose(example["objects"]["bbox"], [[12 / 32, 12 / 32, 20 / 32, 20 / 32]])
    np.testing.assert_array_equal(np.unique(example["mask"]), [0, 2])


def test_partly_hidden_shape_keeps_its_visible_pixels():
    circle = shapes.Shape("circle", 16.0, 22.0, 3.0, 0.0, (0, 200, 0))
    scene = shapes.Scene(np.zeros((SIZE, SIZE, 3), np.uint8), (_axis_square(16.0, 4.0), circle))
    example = shapes.render_scene(scene)
    # Hand count of centres within 3 of (16, 22): offsets (+-0.5, +-1.5, +-2.5) with a^2 + b^2 <= 9 give 32
    # pixels, rows 13 .. 18 and columns 19 .. 24; of those, column 19 (dx = -2.5) covers rows 14 .. 17 of the
    # square, which keeps 64 - 4 = 60.
    assert (example["count"], example["label"], example["has_circle"]) == (2, 1, 1)
    assert example["area_fraction"] == pytest.approx(60 / 1024)
    assert [(example["mask"] == value).sum() for value in (1, 2)] == [32, 60]
    np.testing.assert_allclose(
        example["objects"]["bbox"], [[12 / 32, 12 / 32, 20 / 32, 20 / 32], [13 / 32, 19 / 32, 19 / 32, 25 / 32]]
    )
    np.testing.assert_array_equal(example["image"][16, 19], (0, 200, 0))
    np.testing.assert_array_equal(example["image"][16, 18], (200, 0, 0))
