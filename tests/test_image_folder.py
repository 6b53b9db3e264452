"""Image folders: layouts, stratified carving, formats and modes, sizes, bad files, the file cache, errors."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxvision import data
from jaxvision.data import image_folder

CLASS_SIZES = {"cats": 30, "dogs": 15, "owls": 10}


def _save(path, pixels, **options):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, **options)
    return str(path)


def _noise(rng, height, width, channels=3):
    return rng.integers(0, 256, (height, width, channels) if channels > 1 else (height, width), dtype=np.uint8)


def _tiny_pngs(root, sizes=CLASS_SIZES):
    """Solid 4x4 PNGs, ``sizes[c]`` per class, named so that sorting and numbering agree."""
    for label, (name, count) in enumerate(sizes.items()):
        for i in range(count):
            _save(os.path.join(root, name, f"{i:03d}.png"), np.full((4, 4, 3), (40 * label) % 256, np.uint8))
    return str(root)


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message, message
    return message


def _gradient_png(tmp_path, columns=(20, 60, 100, 140)):
    """A 2x4 grey image whose rows are ``columns``."""
    return _save(tmp_path / "gradient.png", np.tile(np.array(columns, np.uint8), (2, 1)))


# --- layouts and scanning ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """A flat folder of PNG/JPEG/BMP/GIF files in RGB, L, RGBA, P and 16-bit modes, mixed sizes, and a .txt file."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    sizes = [(12, 10), (12, 10), (20, 16), (9, 9)]
    for name, count in (("cats", 12), ("dogs", 12)):
        for i in range(count):
            height, width = sizes[i % 4]
            rgb = Image.fromarray(_noise(rng, height, width))
            folder = root / name
            kind = i % 6
            if kind == 0:
                _save(folder / f"{i}.png", rgb)
            elif kind == 1:
                _save(folder / f"{i}.jpg", rgb.convert("L"))
            elif kind == 2:
                _save(folder / f"{i}.PNG", rgb.convert("RGBA"))
            elif kind == 3:
                _save(folder / f"{i}.gif", rgb.convert("P"))
            elif kind == 4:
                _save(folder / f"{i}.bmp", rgb)
            else:
                _save(folder / f"{i}.png", (np.asarray(rgb)[..., 0].astype(np.uint16) * 257))
    (root / "cats" / "notes.txt").write_text("not an image")
    return str(root)


def test_flat_folder_of_mixed_formats_modes_and_sizes_loads(mixed_folder):
    splits = data.load_splits(mixed_folder, batch_size=4, eval_batch_size=4, validation_fraction=0.25)
    meta = splits.meta
    assert meta.class_names == ("cats", "dogs") and meta.num_classes == 2
    assert meta.skipped_files == 1 and meta.bad_images == ()
    # 12 per class: 20% (2.4 -> 2 or 3) for test, then 25% of the rest for validation, stratified.
    assert meta.class_counts["test"] == {"cats": 3, "dogs": 2} or meta.class_counts["test"] == {"cats": 2, "dogs": 3}
    assert sum(meta.class_counts["validation"].values()) == round(0.25 * (24 - 5))
    assert (meta.num_train, meta.num_validation, meta.num_test) == tuple(
        sum(meta.class_counts[s].values()) for s in ("train", "validation", "test")
    ) and meta.num_train + meta.num_validation + meta.num_test == 24
    # 12x10 is the most common size among the training images; colour images make 3 channels the default.
    assert meta.image_shape == (12, 10, 3)
    assert meta.preprocessing["image_size"] == [12, 10] and "most common size" in meta.preprocessing["image_size_chosen"]
    assert meta.preprocessing["channels"] == 3 and "colour" in meta.preprocessing["channels_chosen"]
    assert meta.preprocessing["scale"] == "pixels / 255, then (x - mean) / std"
    batch = next(iter(splits.train_batches(0)))
    assert batch.images.shape == (4, 12, 10, 3) and batch.images.dtype == np.float32 and batch.labels.dtype == np.int32
    assert sum(float(b.mask.sum()) for b in splits.eval_batches("test")) == meta.num_test
    images, _ = splits.arrays("train")
    assert abs(images.mean()) < 1e-4 and abs(images.std() - 1) < 1e-3  # normalised by the training statistics


def test_carving_is_stratified_by_class_and_seeded(tmp_path):
    root = _tiny_pngs(tmp_path)
    scan = data.scan_image_folder(root, validation_fraction=0.25, test_fraction=0.2, seed=0)
    counts = scan.class_counts()
    # 30/15/10 images: test is 20% of each class, validation 25% of each class's rest.
    assert counts["test"] == {"cats": 6, "dogs": 3, "owls": 2}
    assert counts["validation"] == {"cats": 6, "dogs": 3, "owls": 2}
    assert counts["train"] == {"cats": 18, "dogs": 9, "owls": 6}
    everything = [p for s in image_folder.SPLITS for p in scan.files[s]]
    assert len(everything) == len(set(everything)) == 55  # a partition: no image in two splits
    again = data.scan_image_folder(root, validation_fraction=0.25, seed=0)
    other = data.scan_image_folder(root, validation_fraction=0.25, seed=1)
    assert again.files == scan.files
    assert other.files["test"] != scan.files["test"] and other.files["validation"] != scan.files["validation"]
    # The carved files are spread over each class, not its first or last files in name order.
    cats = sorted(p for p in scan.files["train"] + scan.files["validation"] + scan.files["test"] if "cats" in p)
    positions = [cats.index(p) for p in scan.files["test"] if "cats" in p]
    assert positions != list(range(6)) and positions != list(range(24, 30))


def test_carving_hits_the_overall_fraction_with_many_small_classes(tmp_path):
    # 40 classes of 4: rounding per class would carve one each (25%) or none; apportioning carves 20% overall.
    root = _tiny_pngs(tmp_path, {f"c{i:02d}": 4 for i in range(40)})
    scan = data.scan_image_folder(root, validation_fraction=0.1, seed=3)
    assert len(scan.files["test"]) == 32 and len(scan.files["validation"]) == round(0.1 * 128)
    assert max(scan.class_counts()["test"].values()) == 1
    assert min(scan.class_counts()["train"].values()) >= 1


def test_split_layout_uses_val_and_test_folders(tmp_path):
    for split, per_class in (("train", 6), ("val", 3), ("test", 2)):
        _tiny_pngs(tmp_path / split, {"cats": per_class, "dogs": per_class + 1})
    splits = data.load_splits(str(tmp_path), batch_size=2, eval_batch_size=4)
    meta = splits.meta
    assert meta.class_counts == {"train": {"cats": 6, "dogs": 7}, "validation": {"cats": 3, "dogs": 4},
                                 "test": {"cats": 2, "dogs": 3}}
    assert meta.preprocessing["splits"] == {"train": "train/", "validation": "val/", "test": "test/"}
    assert sum(float(b.mask.sum()) for b in splits.eval_batches("validation")) == 7


@pytest.mark.parametrize(
    "present, expected",
    [
        # 30 images per split folder (10 cats, 20 dogs); test carves 20% of train, validation 10% of what is left.
        (("train", "test"), {"train": 27, "validation": 3, "test": 30}),
        (("train", "validation"), {"train": 24, "validation": 30, "test": 6}),
        (("train",), {"train": 22, "validation": 2, "test": 6}),
    ],
)
def test_split_layout_carves_missing_splits_from_train(tmp_path, present, expected):
    for split in present:
        _tiny_pngs(tmp_path / split, {"cats": 10, "dogs": 20})
    scan = data.scan_image_folder(str(tmp_path), validation_fraction=0.1, seed=0)
    assert {split: sum(c.values()) for split, c in scan.class_counts().items()} == expected
    for split in ("validation", "test"):
        assert scan.sources[split].startswith("carved from train/") == (split not in present)


def test_images_in_nested_subfolders_count_for_their_class(tmp_path):
    _tiny_pngs(tmp_path, {"cats": 5, "dogs": 5})
    for i in range(5):
        _save(tmp_path / "cats" / "indoor" / "sofa" / f"{i}.png", np.zeros((4, 4, 3), np.uint8))
    scan = data.scan_image_folder(str(tmp_path))
    assert sum(scan.class_counts()[s]["cats"] for s in image_folder.SPLITS) == 10
    assert scan.class_names == ("cats", "dogs")  # "indoor" is not a class


def test_non_images_are_skipped_and_counted_and_unnamed_images_are_sniffed(tmp_path):
    _tiny_pngs(tmp_path, {"cats": 5, "dogs": 5})
    (tmp_path / "cats" / "notes.txt").write_text("hello")
    (tmp_path / "cats" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "cats" / "._000.png").write_bytes(b"\0\5\x16\7")  # a macOS resource fork, named like an image
    (tmp_path / "README.md").write_text("my photos")
    _save(tmp_path / "dogs" / "no_extension", np.zeros((4, 4, 3), np.uint8), format="PNG")
    scan = data.scan_image_folder(str(tmp_path))
    assert sorted(os.path.basename(p) for p in scan.skipped_files) == [".DS_Store", "._000.png", "README.md", "notes.txt"]
    assert sum(scan.class_counts()[s]["dogs"] for s in image_folder.SPLITS) == 6


# --- errors at the boundary -------------------------------------------------------------------------------------


def test_a_class_found_only_in_test_is_an_error_naming_it(tmp_path):
    _tiny_pngs(tmp_path / "train", {"cats": 4, "dogs": 4})
    _tiny_pngs(tmp_path / "test", {"cats": 2, "birds": 2})
    with pytest.raises(ValueError) as excinfo:
        data.load_splits(str(tmp_path))
    message = _one_line_error(excinfo)
    assert "'birds'" in message and str(tmp_path / "test" / "birds") in message


def test_a_class_missing_from_test_is_allowed_and_counted_as_zero(tmp_path):
    _tiny_pngs(tmp_path / "train", {"cats": 6, "dogs": 6, "owls": 6})
    _tiny_pngs(tmp_path / "test", {"cats": 2, "dogs": 2})
    assert data.scan_image_folder(str(tmp_path)).class_counts()["test"] == {"cats": 2, "dogs": 2, "owls": 0}


@pytest.mark.parametrize("where", ["flat", "test"])
def test_an_empty_class_folder_is_an_error_naming_it(tmp_path, where):
    base = tmp_path if where == "flat" else tmp_path / "train"
    _tiny_pngs(base, {"cats": 5, "dogs": 5})
    empty = (tmp_path / "dogs") if where == "flat" else (tmp_path / "test" / "dogs")
    if where == "test":
        _tiny_pngs(tmp_path / "test", {"cats": 2})
    for f in empty.glob("*") if empty.exists() else []:
        f.unlink()
    empty.mkdir(parents=True, exist_ok=True)
    (empty / "readme.txt").write_text("todo")
    with pytest.raises(ValueError) as excinfo:
        data.load_splits(str(tmp_path))
    message = _one_line_error(excinfo)
    assert f"{empty} has no images (1 non-image file skipped)" in message


def test_one_class_is_an_error(tmp_path):
    _tiny_pngs(tmp_path, {"cats": 5})
    with pytest.raises(ValueError) as excinfo:
        data.load_splits(str(tmp_path))
    assert "a classifier needs at least 2 classes; found 1: cats" in _one_line_error(excinfo)


def _split_folders(*splits):
    return lambda root: [_tiny_pngs(root / split, {"cats": 2, "dogs": 2}) for split in splits]


def _only_a_file(root):
    root.mkdir()
    (root / "a.txt").write_text("x")


BAD_ROOTS = {
    "empty": (lambda root: root.mkdir(), r"is empty"),
    "missing": (lambda root: None, r"does not exist"),
    "file": (lambda root: root.write_text("x"), r"is a file, not a folder"),
    "only-files": (_only_a_file, r"has no class folders \(only 1 file directly in it\)"),
    "no-train": (_split_folders("test"), r"has test/ but no train/"),
    "two-val": (_split_folders("train", "val", "validation"), r"both val/ and validation/"),
    "extra-folder": (_split_folders("train", "extra"), r"other folders \(extra/\)"),
    "too-few-to-carve": (lambda root: _tiny_pngs(root, {"cats": 2, "dogs": 2}),
                         r"No validation images are left: the validation split is carved from .* smallest has 2 images"),
}


@pytest.mark.parametrize("make, expected", BAD_ROOTS.values(), ids=BAD_ROOTS.keys())
def test_bad_roots_are_one_line_errors(tmp_path, make, expected):
    root = tmp_path / "photos"
    make(root)
    with pytest.raises(ValueError, match=expected) as excinfo:
        data.load_splits(str(root))
    _one_line_error(excinfo)


def test_a_missing_relative_path_is_reported_as_a_folder_not_a_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("./photos", "data/photos"):
        with pytest.raises(ValueError, match=r"Image folder .*photos does not exist"):
            data.load_splits(name)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"image_size": (0, 4)}, r"Invalid image_size=\(0, 4\)"),
        ({"image_size": (4, 4, 3)}, r"Invalid image_size"),
        ({"resize": "crop"}, r"Invalid resize='crop': expected one of stretch, center-crop, resize-crop, pad"),
        ({"channels": 2}, r"Invalid channels=2"),
        ({"memory_budget_bytes": -1}, r"Invalid memory_budget_bytes=-1"),
        ({"std": [0.0]}, r"Invalid std=\[0.0\]"),
        ({"mean": [0.5, 0.5]}, r"Invalid mean=\[0.5, 0.5\]: expected 1 or 3"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, options, expected):
    root = _tiny_pngs(tmp_path, {"cats": 6, "dogs": 6})
    with pytest.raises(ValueError, match=expected) as excinfo:
        data.load_splits(root, **options)
    _one_line_error(excinfo)


def test_folder_only_options_are_refused_for_tfds_datasets():
    with pytest.raises(ValueError, match=r"resize='pad' applies to image folders only") as excinfo:
        data.load_splits("digits", resize="pad")
    _one_line_error(excinfo)


def test_tfds_datasets_get_class_counts_and_preprocessing():
    meta = data.load_splits("digits", image_size=12).meta
    assert set(meta.class_counts) == {"train", "validation", "test"}
    assert sum(meta.class_counts["test"].values()) == meta.num_test == 360
    assert sum(meta.class_counts["train"].values()) == meta.num_train and min(meta.class_counts["train"].values()) > 100
    assert meta.image_shape == (12, 12, 1) and meta.preprocessing["image_size"] == [12, 12]
    assert meta.preprocessing["resize"] == "stretch" and meta.skipped_files == 0 and meta.bad_images == ()


# --- bad files ----------------------------------------------------------------------------------------------------


@pytest.fixture
def folder_with_truncated_png(tmp_path):
    root = _tiny_pngs(tmp_path, {"cats": 10, "dogs": 10})
    path = _save(tmp_path / "dogs" / "broken.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    content = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(content[: len(content) // 2])
    return root, path


@pytest.mark.parametrize("budget", [image_folder.DEFAULT_MEMORY_BUDGET_BYTES, 0], ids=["memory", "file-cache"])
def test_a_truncated_png_stops_before_training_with_one_line_naming_it(folder_with_truncated_png, budget):
    root, path = folder_with_truncated_png
    with pytest.raises(ValueError) as excinfo:
        data.load_splits(root, memory_budget_bytes=budget)
    message = _one_line_error(excinfo)
    assert message.startswith(f"Cannot decode image {path} (") and "skip_bad_images=True" in message


def test_a_folder_whose_training_images_are_all_unreadable_is_one_line_naming_one(tmp_path):
    for cls in ("cats", "dogs"):
        for i in range(5):
            (tmp_path / cls).mkdir(exist_ok=True)
            (tmp_path / cls / f"{i}.png").write_text("not a png")
    with pytest.raises(ValueError, match=r"None of the 7 training images .* can be read \(first: .*\.png: ") as excinfo:
        data.load_splits(str(tmp_path), skip_bad_images=True)
    _one_line_error(excinfo)


@pytest.mark.parametrize("budget", [image_folder.DEFAULT_MEMORY_BUDGET_BYTES, 0], ids=["memory", "file-cache"])
def test_skip_bad_images_leaves_them_out_and_reports_them(folder_with_truncated_png, budget):
    root, path = folder_with_truncated_png
    splits = data.load_splits(root, skip_bad_images=True, memory_budget_bytes=budget)
    meta = splits.meta
    assert meta.bad_images == (path,)
    assert sum(len(splits.arrays(s)[1]) for s in image_folder.SPLITS) == 20  # the datasets leave it out too
    assert sum(meta.class_counts[s]["dogs"] for s in image_folder.SPLITS) == 10  # 11 files, one bad
    assert meta.num_train + meta.num_validation + meta.num_test == 20


# --- decoding -----------------------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((2, 4, 3), np.uint8)  # 2 rows, 4 columns as stored
    stored[:, :2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path / "rotated.jpg", stored, exif=exif.tobytes(), quality=100)
    assert image_folder.image_header(path)[:2] == (4, 2)
    raw = np.asarray(Image.open(path))  # as stored, orientation ignored
    decoded = data.decode_image(path, image_size=(4, 2), channels=3)
    assert decoded.shape == (4, 2, 3)
    np.testing.assert_array_equal(decoded, np.rot90(raw, k=-1))


def test_modes_decode_to_the_expected_pixels(tmp_path):
    size = (2, 2)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[...] = (200, 100, 50, 51)  # alpha 0.2: composited on black -> 0.2 * colour
    cases = {
        "rgba.png": (rgba, 3, [40, 20, 10]),
        "sixteen.png": (np.full((2, 2), 257 * 100, np.uint16), 1, [100]),
        "grey_as_rgb.bmp": (np.full((2, 2), 77, np.uint8), 3, [77, 77, 77]),
        "rgb_as_grey.png": (np.full((2, 2, 3), (255, 0, 0), np.uint8), 1, [76]),  # ITU-R 601-2: 0.299 * 255
    }
    for name, (pixels, channels, expected) in cases.items():
        path = _save(tmp_path / name, pixels)
        decoded = data.decode_image(path, image_size=size, channels=channels)
        assert decoded.dtype == np.uint8 and decoded.shape == (2, 2, channels)
        np.testing.assert_array_equal(decoded, np.broadcast_to(expected, (2, 2, channels)), err_msg=name)
    palette = Image.new("P", (2, 2))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putdata([1, 1, 1, 1])
    decoded = data.decode_image(_save(tmp_path / "p.png", palette), image_size=size)
    np.testing.assert_array_equal(decoded[0, 0], [10, 200, 30])
    frames = [Image.new("RGB", (2, 2), colour) for colour in ((0, 0, 255), (255, 0, 0))]
    gif = str(tmp_path / "animated.gif")
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert Image.open(gif).n_frames == 2
    first = data.decode_image(gif, image_size=size)[0, 0]
    assert first[2] > 200 and first[0] < 50  # the first (blue) frame, not the second (red)


def test_channels_default_to_one_when_every_training_image_is_grey(tmp_path):
    grey = {"a.png": Image.new("L", (4, 4), 10), "b.png": Image.new("LA", (4, 4), (10, 255)),
            "c.png": Image.fromarray(np.full((4, 4), 5000, np.uint16)), "d.gif": Image.new("L", (4, 4), 3).convert("P")}
    for cls in ("x", "y"):
        for i in range(3):
            for name, image in grey.items():
                _save(tmp_path / cls / f"{i}{name}", image)
    splits = data.load_splits(str(tmp_path), batch_size=2)
    assert splits.meta.image_shape == (4, 4, 1) and "grayscale" in splits.meta.preprocessing["channels_chosen"]
    for cls in ("x", "y"):  # enough that some land in the training split
        for i in range(6):
            _save(tmp_path / cls / f"colour{i}.png", Image.new("RGB", (4, 4), (200, 0, 0)))
    assert data.load_splits(str(tmp_path), batch_size=2, seed=0).meta.image_shape == (4, 4, 3)


def test_the_default_size_is_the_most_common_training_size(tmp_path):
    for cls in ("x", "y"):
        for i, (height, width) in enumerate([(3, 5)] * 2 + [(6, 8)] * 7 + [(10, 10)] * 3):
            _save(tmp_path / cls / f"{i:02d}.png", np.zeros((height, width, 3), np.uint8))
    meta = data.load_splits(str(tmp_path), batch_size=2).meta
    assert meta.image_shape[:2] == (6, 8)
    assert meta.preprocessing["image_size_chosen"].startswith("default: the most common size")
    given = data.load_splits(str(tmp_path), batch_size=2, image_size=5).meta
    assert given.image_shape[:2] == (5, 5) and given.preprocessing["image_size_chosen"] == "given: image_size=(5, 5)"


@pytest.mark.parametrize(
    "size, resize, expected_rows",
    [
        # Bilinear with half-pixel centres: doubling [20, 60, 100, 140] gives 20, 3/4 20 + 1/4 60 = 30, ...
        ((2, 8), "stretch", [[20, 30, 50, 70, 90, 110, 130, 140]] * 2),
        # Cover 4x4: scale 2 to 4x8 (the row above, 4 times), keep columns 2..5.
        ((4, 4), "center-crop", [[50, 70, 90, 110]] * 4),
        # Fit 4x4: scale 1, centred between a zero row above and below.
        ((4, 4), "pad", [[0] * 4, [20, 60, 100, 140], [20, 60, 100, 140], [0] * 4]),
        ((2, 8), "pad", [[0, 0, 20, 60, 100, 140, 0, 0]] * 2),
        # Cover 2x2: scale 1 (height already fits), keep columns 1..2.
        ((2, 2), "center-crop", [[60, 100]] * 2),
    ],
)
def test_resize_modes_give_hand_computed_pixels(tmp_path, size, resize, expected_rows):
    decoded = data.decode_image(_gradient_png(tmp_path), image_size=size, resize=resize, channels=1)
    np.testing.assert_array_equal(decoded[..., 0], np.array(expected_rows, np.uint8))


# --- memory and the file cache ------------------------------------------------------------------------------------


def _all_batches(splits):
    train = [(b.images, b.labels) for b in splits.train_batches(1)]
    test = [(b.images, b.labels, b.mask) for b in splits.eval_batches("test")]
    return train, test


def _examples(batches):
    """The (image bytes, label) pairs of train batches, as a sorted list: the epoch's examples in any order."""
    return sorted((image.tobytes(), int(label)) for images, labels in batches for image, label in zip(images, labels))


def test_streaming_from_a_file_cache_gives_the_in_memory_examples(mixed_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXVISION_CACHE_DIR", str(tmp_path / "cache"))
    options = dict(batch_size=4, eval_batch_size=4, image_size=(8, 8), resize="pad")
    memory = data.load_splits(mixed_folder, **options)
    streamed = data.load_splits(mixed_folder, memory_budget_bytes=1000, **options)  # 24 * 8 * 8 * 3 > 1000
    assert memory.meta.preprocessing["storage"].startswith("memory")
    assert streamed.meta.preprocessing["storage"].startswith("file cache: " + str(tmp_path / "cache"))
    assert len([f for f in os.listdir(tmp_path / "cache" / "image_folders") if ".partial-" not in f]) == 3
    (memory_train, memory_test), (streamed_train, streamed_test) = _all_batches(memory), _all_batches(streamed)
    # Streamed, the training files are read in one mixed order through a bounded shuffle buffer:
    # the same examples per epoch (the same dropped remainder size), in another order.
    assert len(memory_train) == len(streamed_train) > 0
    assert memory.shuffle_buffer is None and streamed.shuffle_buffer == min(streamed.meta.num_train, 256)
    memory_all = _examples(memory_train)
    streamed_all = _examples(streamed_train)
    assert len(memory_all) == len(streamed_all)
    assert set(streamed_all) <= set(_examples([(b.images, b.labels) for b in memory.train_batches(1)] +
                                             [(b.images, b.labels) for b in memory.train_batches(2)] +
                                             [(b.images, b.labels) for b in memory.train_batches(3)]))
    for a, b in zip(memory_test, streamed_test, strict=True):  # evaluation order is the files' order
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert memory.meta.mean == streamed.meta.mean and memory.meta.std == streamed.meta.std


def test_images_are_decoded_once_and_a_finished_file_cache_is_reused(mixed_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXVISION_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = image_folder.decode_image
    monkeypatch.setattr(image_folder, "decode_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    for budget in (image_folder.DEFAULT_MEMORY_BUDGET_BYTES, 0):
        calls.clear()
        splits = data.load_splits(mixed_folder, batch_size=4, image_size=(6, 6), memory_budget_bytes=budget)
        assert len(calls) == 24  # the up-front pass decodes every file once
        _all_batches(splits)
        _all_batches(splits)
        assert len(calls) == 24  # epochs read the cache
    calls.clear()
    data.load_splits(mixed_folder, batch_size=4, image_size=(6, 6), memory_budget_bytes=0)
    assert calls == []  # the same files, size and channels: the finished file cache is read, nothing decoded
