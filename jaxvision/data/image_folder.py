"""A folder of the user's own images as train/validation/test ``tf.data`` datasets.

Two layouts, told apart by the folder names directly under the root:

- ``root/<class>/.../<image>``: one pool; test and validation are carved from it, stratified by class.
- ``root/{train, val or validation, test}/<class>/.../<image>``: each split folder is used when present; a
  missing ``val/`` or ``test/`` is carved from ``train/``, stratified by class.

Images in nested subfolders of a class folder belong to that class. Class names are the sorted names of the
training class folders; a class folder in ``val/`` or ``test/`` must also exist in ``train/``.

Decoding is Pillow's, in a parallel ``tf.data`` map (Pillow releases the GIL while it decodes and resizes):
PNG, JPEG, BMP and GIF (first frame), in any mode, with EXIF orientation applied. Every image is decoded once up
front, before training: that pass finds bad files, computes the training split's mean and std, and fills the
cache the epochs then read (in memory below ``memory_budget_bytes``, else a file cache on disk).

Scanning and carving are plain Python (``os.walk``, sorted), so the splits depend only on the files and the seed.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

# Decoding lives in a module without TensorFlow (predict and visualize import it alone).
from jaxvision.image_decode import IMAGE_EXTENSIONS, RESIZE_MODES, decode_image, image_header, is_image_file

SPLITS = ("train", "validation", "test")
DEFAULT_MEMORY_BUDGET_BYTES = 2 * 1024**3
SCALE = "pixels / 255, then (x - mean) / std"
DECODING = (
    "Pillow; GIF: first frame; EXIF orientation applied; alpha composited on black; 16-bit scaled to 8 bits "
    "(x * 255 / 65535); 3 -> 1 channel by ITU-R 601-2 luma; bilinear resampling (antialiased when shrinking)"
)
# Folder names under the root that make it a split layout, and the split each one fills.
_SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
# Bump when decoding changes, so stale file caches are never read.
_CACHE_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class FolderScan:
    """What scanning an image folder found, before any image is decoded.

    Attributes:
      root: the folder, as an absolute path.
      layout: "flat" (``root/<class>/...``) or "splits" (``root/train/<class>/...``).
      class_names: sorted training class folder names; a label is an index into them.
      files: split -> absolute image paths, ordered by (label, path).
      labels: split -> the label of each path in ``files``.
      sources: split -> where its images come from, e.g. "val/" or "carved from train/ (10%, ...)".
      skipped_files: absolute paths of the non-image files found (and ignored).
    """

    root: str
    layout: str
    class_names: tuple[str, ...]
    files: dict[str, tuple[str, ...]]
    labels: dict[str, tuple[int, ...]]
    sources: dict[str, str]
    skipped_files: tuple[str, ...]

    def class_counts(self) -> dict[str, dict[str, int]]:
        """split -> {class name: number of images}, every class listed (0 where a split has none)."""
        counts = {split: np.bincount(self.labels[split], minlength=len(self.class_names)) for split in SPLITS}
        return {split: {name: int(n) for name, n in zip(self.class_names, counts[split])} for split in SPLITS}


@dataclasses.dataclass(frozen=True)
class ImageFolderData:
    """An image folder decoded and checked: datasets plus what the caller reports and records.

    Attributes:
      datasets: split -> ``(image uint8 [height, width, channels], label int64)`` examples in file order,
        bad images left out.
      scan: the scan the datasets were built from.
      image_shape: (height, width, channels) of every image.
      mean, std: per-channel statistics of the training images, in [0, 1] pixel units.
      class_counts: split -> {class name: count} of the images actually used.
      bad_images: absolute paths of images that could not be decoded (only with ``skip_bad_images``).
      preprocessing: how images were turned into arrays: size, resize mode, channels, and why each was chosen.
    """

    datasets: dict[str, tf.data.Dataset]
    scan: FolderScan
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_counts: dict[str, dict[str, int]]
    bad_images: tuple[str, ...]
    preprocessing: dict


# ---------------------------------------------------------------------------------------------------------------
# Scanning: which files are images, of which class, in which split.


def _ignored_folder(name: str) -> bool:
    # Hidden folders (.git, .ipynb_checkpoints) and zip tools' __MACOSX are never classes.
    return name.startswith(".") or name == "__MACOSX"


def _subfolders(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not _ignored_folder(e.name))


def _direct_files(path: str) -> list[str]:
    return sorted(os.path.join(path, e.name) for e in os.scandir(path) if e.is_file())


def _class_images(folder: str, skipped: list[str]) -> list[str]:
    """Every image under ``folder``, nested subfolders included, sorted; non-images go to ``skipped``."""
    images = []
    for directory, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _ignored_folder(d))  # in place: os.walk descends in this order
        for name in sorted(names):
            path = os.path.join(directory, name)
            (images if is_image_file(path) else skipped).append(path)
    return images


def _split_folder_classes(split_dir: str, skipped: list[str]) -> dict[str, list[str]]:
    """class name -> image paths of one folder of class folders; an empty class folder is an error."""
    skipped.extend(_direct_files(split_dir))  # files beside the class folders belong to no class
    classes = {}
    for name in _subfolders(split_dir):
        before = len(skipped)
        images = _class_images(os.path.join(split_dir, name), skipped)
        if not images:
            others = len(skipped) - before
            note = f" ({others} non-image file{'s' if others != 1 else ''} skipped)" if others else ""
            raise ValueError(
                f"Class folder {os.path.join(split_dir, name)} has no images{note}: expected .png, .jpg, .jpeg, .bmp "
                "or .gif files in it. Add images or remove the folder."
            )
        classes[name] = images
    return classes


def _check_root(root: str) -> str:
    path = os.path.abspath(os.path.expanduser(root))
    if not os.path.exists(path):
        raise ValueError(
            f"Image folder {path} does not exist: expected a folder laid out as root/<class>/<image> or "
            "root/train/<class>/<image>. Check the path (or pass a TFDS dataset name)."
        )
    if not os.path.isdir(path):
        raise ValueError(
            f"{path} is a file, not a folder: expected a folder laid out as root/<class>/<image> or "
            "root/train/<class>/<image>. Pass the folder (extract an archive first)."
        )
    return path


def _layout(root: str) -> tuple[str, dict[str, str]]:
    """("flat", {}) or ("splits", {split: folder path}); odd split layouts are errors."""
    folders = _subfolders(root)
    split_folders = [f for f in folders if f.lower() in _SPLIT_FOLDERS]
    if not split_folders:
        return "flat", {}
    if not any(f.lower() == "train" for f in split_folders):
        raise ValueError(
            f"{root} has {', '.join(f + '/' for f in split_folders)} but no train/: a split layout needs "
            "root/train/<class>/<image>. Add train/, or lay the images out as root/<class>/<image>."
        )
    named: dict[str, str] = {}
    for folder in split_folders:
        split = _SPLIT_FOLDERS[folder.lower()]
        if split in named:
            raise ValueError(
                f"{root} has both {os.path.basename(named[split])}/ and {folder}/ for the {split} split: expected one. "
                "Merge them into one folder."
            )
        named[split] = os.path.join(root, folder)
    others = [f for f in folders if f not in split_folders]
    if others:
        raise ValueError(
            f"{root} mixes split folders ({', '.join(f + '/' for f in split_folders)}) with other folders "
            f"({', '.join(f + '/' for f in others)}): expected only train/, val/ (or validation/) and test/. Move "
            "class folders into train/ (or use the flat layout root/<class>/<image> without split folders)."
        )
    return "splits", named


def _apportion(counts: Sequence[int], fraction: float) -> list[int]:
    """Per-class shares of ``round(fraction * sum(counts))``, proportional to ``counts``.

    Largest-remainder apportionment: each class gets the floor of its quota, and the images still owed go to
    the classes with the largest remainders (ties to the lower label). Every class keeps at least one image
    on the other side, so carving never empties a class of training images.
    """
    target = int(round(fraction * sum(counts)))
    quotas = [n * fraction for n in counts]
    shares = [min(math.floor(q), max(n - 1, 0)) for q, n in zip(quotas, counts)]
    order = sorted(range(len(counts)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), i))
    owed = target - sum(shares)
    while owed > 0:
        given = 0
        for i in order:
            if owed > 0 and shares[i] < counts[i] - 1:
                shares[i] += 1
                owed -= 1
                given += 1
        if not given:
            break
    return shares


def _carve(
    pool: dict[int, list[str]], fraction: float, seed: int, stream: int
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Splits each class's paths into (kept, carved), ``fraction`` of them carved, by a seeded permutation.

    Args:
      pool: label -> sorted paths.
      fraction: share of the pool to carve, apportioned across classes by ``_apportion``.
      seed: with the label and ``stream``, seeds each class's permutation.
      stream: 0 for test, 1 for validation, so the two carvings draw independent permutations.

    Returns:
      (label -> kept paths, label -> carved paths), each sorted.
    """
    labels = sorted(pool)
    shares = _apportion([len(pool[label]) for label in labels], fraction)
    kept, carved = {}, {}
    for label, share in zip(labels, shares):
        paths = pool[label]
        # SeedSequence wants non-negative entropy; the modulus maps any int seed to one, deterministically.
        order = np.random.default_rng(np.random.SeedSequence([seed % 2**64, stream, label])).permutation(len(paths))
        carved[label] = sorted(paths[i] for i in order[:share])
        kept[label] = sorted(paths[i] for i in order[share:])
    return kept, carved


def _require_images(split: str, count: int, source: str, fraction_name: str, smallest: int) -> None:
    if count == 0:
        folder = "val" if split == "validation" else split
        raise ValueError(
            f"No {split} images are left: the {split} split is {source}, and the classes are too small for that "
            f"(the smallest has {smallest} images). Add images, raise {fraction_name}, or add a {folder}/ folder of "
            "class folders."
        )


def scan_image_folder(
    root: str, *, validation_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> FolderScan:
    """Finds the images of an image folder, their classes and splits (nothing is decoded).

    Args:
      root: the folder: ``root/<class>/...`` or ``root/{train,val|validation,test}/<class>/...``.
      validation_fraction: share of the training images carved for validation when there is no ``val/``.
      test_fraction: share of the images carved for test when there is no ``test/`` (taken first; validation
        is then ``validation_fraction`` of the rest).
      seed: seeds the carving: per class, a permutation seeded by (seed, label).

    Returns:
      The FolderScan.

    Raises:
      ValueError: one line, for a missing root, a file, an empty root, an empty class folder, fewer than two
        classes, a class in val/ or test/ but not in train/, or carving that leaves a split empty.
    """
    root = _check_root(root)
    with os.scandir(root) as entries:
        empty = not any(not _ignored_folder(entry.name) for entry in entries)
    if empty:
        raise ValueError(
            f"Image folder {root} is empty: expected root/<class>/<image> or root/train/<class>/<image>. "
            "Put each class's images in its own folder under it."
        )
    layout, split_dirs = _layout(root)
    skipped: list[str] = _direct_files(root) if layout == "splits" else []
    train_dir = split_dirs.get("train", root)
    train_classes = _split_folder_classes(train_dir, skipped)
    if not train_classes:
        found = len(skipped)
        plural = "s" if found != 1 else ""
        only = f" (only {found} file{plural} directly in it)" if found else ""
        raise ValueError(
            f"{train_dir} has no class folders{only}: expected one folder of images per class, root/<class>/<image>. "
            "Put each class's images in its own folder."
        )
    class_names = tuple(sorted(train_classes))
    if len(class_names) < 2:
        raise ValueError(
            f"{train_dir}: a classifier needs at least 2 classes; found 1: {class_names[0]}. Add a folder of images "
            "for each other class beside it."
        )
    label_of = {name: label for label, name in enumerate(class_names)}
    pools: dict[str, dict[int, list[str]]] = {"train": {label_of[n]: p for n, p in train_classes.items()}}
    sources = {"train": os.path.relpath(train_dir, root) + "/" if layout == "splits" else "root/<class>/"}
    for split in ("validation", "test"):
        if split not in split_dirs:
            continue
        classes = _split_folder_classes(split_dirs[split], skipped)
        unknown = [name for name in classes if name not in label_of]
        if unknown:
            raise ValueError(
                f"Class {unknown[0]!r} is in {os.path.join(split_dirs[split], unknown[0])} but not in {train_dir}: "
                f"every class needs training images (training classes: {', '.join(class_names)}). Add "
                f"{os.path.join(train_dir, unknown[0])}/ or remove it from {os.path.basename(split_dirs[split])}/."
            )
        if not classes:
            raise ValueError(
                f"{split_dirs[split]} has no class folders: expected {os.path.basename(split_dirs[split])}/<class>/"
                "<image>. Add class folders to it or remove it (the split is then carved from train)."
            )
        pools[split] = {label_of[n]: p for n, p in classes.items()}
        sources[split] = os.path.basename(split_dirs[split]) + "/"
    carved_from = sources["train"]
    if "test" not in pools:
        pools["train"], pools["test"] = _carve(pools["train"], test_fraction, seed, 0)
        sources["test"] = f"carved from {carved_from} ({test_fraction:.0%} stratified by class, seed {seed})"
    if "validation" not in pools:
        pools["train"], pools["validation"] = _carve(pools["train"], validation_fraction, seed, 1)
        sources["validation"] = (
            f"carved from {carved_from} ({validation_fraction:.0%} of the rest, stratified by class, seed {seed})"
        )
    files, labels = {}, {}
    for split in SPLITS:
        ordered = [(label, path) for label in sorted(pools[split]) for path in pools[split][label]]
        files[split] = tuple(path for _, path in ordered)
        labels[split] = tuple(label for label, _ in ordered)
    smallest = min(len(paths) for paths in train_classes.values())
    _require_images("test", len(files["test"]), sources["test"], "the test fraction", smallest)
    _require_images("validation", len(files["validation"]), sources["validation"], "validation_fraction", smallest)
    return FolderScan(
        root=root, layout=layout, class_names=class_names, files=files, labels=labels, sources=sources,
        skipped_files=tuple(skipped),
    )


# ---------------------------------------------------------------------------------------------------------------
# Decoding one image: Pillow, any mode, EXIF orientation, one of three resize modes.


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text}"


def _try_decode(path: bytes, image_size, resize: str, channels: int) -> tuple[np.ndarray, np.bool_]:
    try:
        return decode_image(path.decode(), image_size=image_size, resize=resize, channels=channels), np.True_
    except Exception:  # noqa: BLE001 - any failure marks the file bad; the check pass names it
        return np.zeros((*image_size, channels), np.uint8), np.False_


# ---------------------------------------------------------------------------------------------------------------
# Defaults chosen from the training images' headers.


def _headers(paths: Sequence[str]) -> list[tuple[int, int, bool] | None]:
    def header(path):
        try:
            return image_header(path)
        except Exception:  # noqa: BLE001 - the decode pass reports the file by name
            return None

    # Opening headers is I/O-bound: threads overlap the file reads.
    with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(header, paths))


def _default_size(headers, count: int) -> tuple[tuple[int, int], str]:
    sizes = collections.Counter((h, w) for h, w, _ in headers)
    # Most common; ties go to the larger image, then the taller, so the choice never depends on file order.
    (height, width), n = max(sizes.items(), key=lambda item: (item[1], item[0][0] * item[0][1], item[0]))
    if len(sizes) == 1:
        why = f"default: every training image is {height}x{width}"
    else:
        why = (f"default: the most common size of the training images ({n} of {count} are {height}x{width}; "
               f"{len(sizes)} sizes in all)")
    return (height, width), why


def _default_channels(headers) -> tuple[int, str]:
    if headers and all(grey for _, _, grey in headers):
        return 1, "default: every training image is grayscale"
    colour = sum(1 for _, _, grey in headers if not grey)
    return 3, f"default: {colour} training image{'s are' if colour != 1 else ' is'} in colour"


# ---------------------------------------------------------------------------------------------------------------
# The datasets: decode once, check, count, cache.


def _cache_root() -> str:
    base = os.environ.get("JAXVISION_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "jaxvision")
    return os.path.join(base, "image_folders")


def _cache_key(paths: Sequence[str], labels: Sequence[int], image_size, resize: str, channels: int) -> str:
    digest = hashlib.sha256(f"{_CACHE_VERSION}|{tuple(image_size)}|{resize}|{channels}".encode())
    for path, label in zip(paths, labels):
        stat = os.stat(path)
        # Size and modification time: a file edited in place gets a new cache, never stale pixels.
        digest.update(f"\0{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _decoded(paths, labels, image_size, resize: str, channels: int) -> tf.data.Dataset:
    """(image uint8 [h, w, c], ok bool, label int64) per file, decoded by Pillow in a parallel map."""
    height, width = image_size

    def decode(path):
        image, ok = tf.numpy_function(
            lambda p: _try_decode(p, (height, width), resize, channels), [path], [tf.uint8, tf.bool], stateful=False
        )
        image.set_shape([height, width, channels])
        ok.set_shape([])
        return image, ok

    def with_label(path, label):
        image, ok = decode(path)
        return image, ok, label

    examples = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, np.int64)))
    # One call per core from the start: AUTOTUNE ramps up from few calls, and a single pass over the files is
    # mostly over before it settles (measured on 2 shared cores: 290-420 images/s against ~620). Pillow releases the GIL
    # while it decodes and resamples, so the calls run in parallel.
    return examples.map(with_label, num_parallel_calls=os.cpu_count() or 1, deterministic=True)


def _is_good(image, ok, label):
    return ok


def _without_flag(image, ok, label):
    return image, label


def _batch_histogram(images, ok, labels):
    """[channels, 256] int64 counts of the ok images' pixel values, computed in TensorFlow (no GIL)."""
    good = tf.boolean_mask(images, ok)
    pixels = tf.cast(tf.reshape(good, [-1, tf.shape(images)[-1]]), tf.int32)
    counts = tf.map_fn(
        lambda values: tf.math.bincount(values, minlength=256, maxlength=256, dtype=tf.int64),
        tf.transpose(pixels), fn_output_signature=tf.int64,
    )
    return ok, counts


def _check_pass(dataset: tf.data.Dataset, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads ``dataset`` once, filling its cache.

    Returns:
      ok flags [n] bool, and a histogram [channels, 256] int64 of the ok images' pixel values: exact, small,
      and all the mean and std need.
    """
    flags = []
    histogram = np.zeros((channels, 256), np.int64)
    batches = dataset.batch(64).map(_batch_histogram, num_parallel_calls=2).prefetch(2)
    for ok, counts in batches.as_numpy_iterator():
        flags.append(ok)
        histogram += counts
    return (np.concatenate(flags) if flags else np.zeros(0, bool)), histogram


def _statistics(histogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std [channels] float64, in [0, 1] units, of a [channels, 256] histogram."""
    values = np.arange(256, dtype=np.float64) / 255.0
    count = histogram.sum(1)
    mean = histogram @ values / count
    return mean, np.sqrt(np.maximum(histogram @ values**2 / count - mean**2, 1e-12))


def _file_cached(decoded: tf.data.Dataset, key: str, channels: int):
    """``decoded`` cached in a file named by ``key``, and its check pass's flags and histogram.

    The cache and the check pass's results are written to a private folder and renamed into place once
    complete, so an interrupted run never leaves half a cache, and a later run with the same files reads both
    back without decoding anything.
    """
    root = _cache_root()
    final = os.path.join(root, key)
    if not os.path.isfile(os.path.join(final, "check.npz")):
        staging = f"{final}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.makedirs(staging)
        except OSError as error:
            raise ValueError(
                f"Cannot write the image cache under {root} ({_one_line(error)}): the decoded images are over "
                "memory_budget_bytes, so they go to disk. Set JAXVISION_CACHE_DIR to a writable folder."
            ) from None
        try:
            flags, histogram = _check_pass(decoded.cache(os.path.join(staging, "cache")), channels)
            np.savez(os.path.join(staging, "check.npz"), flags=flags, histogram=histogram)
            # OSError: another process finished the same cache first; theirs is as good.
            with contextlib.suppress(OSError):
                os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    with np.load(os.path.join(final, "check.npz")) as check:
        flags, histogram = check["flags"], check["histogram"]
    return decoded.cache(os.path.join(final, "cache")), flags, histogram, final


def _mixed_training_order(scan: FolderScan, seed: int) -> FolderScan:
    """``scan`` with its training files in one seeded random order instead of class by class.

    A streamed folder is shuffled through a bounded buffer (``Splits.shuffle_buffer``); read class by
    class, a buffer smaller than a class would give batches of one class. Mixed once here, on the file
    list, the cache file holds the classes interleaved and the buffer only has to shuffle locally.
    """
    order = np.random.default_rng(np.random.SeedSequence([seed % 2**64, 2])).permutation(len(scan.files["train"]))
    files = {**scan.files, "train": tuple(scan.files["train"][i] for i in order)}
    labels = {**scan.labels, "train": tuple(scan.labels["train"][i] for i in order)}
    return dataclasses.replace(scan, files=files, labels=labels)


def _cached_splits(scan: FolderScan, image_size, resize: str, channels: int, in_memory: bool) -> dict:
    """split -> (cached dataset, ok flags, pixel histogram, cache folder or None)."""
    results = {}
    for split in SPLITS:
        paths, labels = scan.files[split], scan.labels[split]
        decoded = _decoded(paths, labels, image_size, resize, channels)
        if in_memory:
            cached = decoded.cache()
            results[split] = (cached, *_check_pass(cached, channels), None)
        else:
            results[split] = _file_cached(decoded, _cache_key(paths, labels, image_size, resize, channels), channels)
    return results


def _decode_failure(path: str, image_size, resize: str, channels: int) -> str:
    """Why ``path`` does not decode, in one line (the check pass only flags it)."""
    try:
        decode_image(path, image_size=image_size, resize=resize, channels=channels)
    except Exception as error:  # noqa: BLE001 - the message is the point
        return _one_line(error)
    return "it could not be decoded"


def _bad_image_error(paths: Sequence[str], image_size, resize: str, channels: int) -> ValueError:
    more = ""
    if len(paths) > 1:
        more = f"; {len(paths) - 1} more bad image{'s' if len(paths) > 2 else ''} (next: {paths[1]})"
    return ValueError(
        f"Cannot decode image {paths[0]} ({_decode_failure(paths[0], image_size, resize, channels)}){more}. Replace or "
        "remove it, or pass skip_bad_images=True (--skip-bad-images) to train without such files."
    )


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    values = (image_size,) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(_is_int(v) and v > 0 for v in values):
        raise ValueError(
            f"Invalid image_size={image_size!r}: expected a positive int or (height, width) of positive ints, "
            "e.g. 224 or (224, 224)."
        )
    return int(values[0]), int(values[1])


def check_folder_options(image_size, resize: str, channels, memory_budget_bytes) -> tuple[int, int] | None:
    """Validates the image-folder options; returns ``image_size`` as (height, width) or None.

    Raises:
      ValueError: one line naming the bad option, what was expected, and an example.
    """
    size = _check_size(image_size)
    if resize not in RESIZE_MODES:
        raise ValueError(f"Invalid resize={resize!r}: expected one of {', '.join(RESIZE_MODES)}, e.g. 'center-crop'.")
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ValueError(f"Invalid channels={channels!r}: expected 1 (grey), 3 (RGB) or None (chosen from the images).")
    if not _is_int(memory_budget_bytes) or memory_budget_bytes < 0:
        raise ValueError(
            f"Invalid memory_budget_bytes={memory_budget_bytes!r}: expected a non-negative int, e.g. "
            f"{DEFAULT_MEMORY_BUDGET_BYTES} (2 GiB)."
        )
    return size


def load_image_folder(
    root: str,
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    image_size: int | Sequence[int] | None = None,
    resize: str = "stretch",
    channels: int | None = None,
    skip_bad_images: bool = False,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
) -> ImageFolderData:
    """Scans, decodes and checks an image folder; every error is raised here, before any training.

    Args:
      root: ``root/<class>/...`` or ``root/{train,val|validation,test}/<class>/...`` (see the module docstring).
      validation_fraction, test_fraction, seed: how missing splits are carved (see ``scan_image_folder``).
      image_size: (height, width), or one int for a square. Default: the most common size among the training
        images (ties to the larger); ``preprocessing["image_size_chosen"]`` says which and why.
      resize: "stretch", "center-crop", "resize-crop" or "pad" (see ``resize_image``).
      channels: 1 or 3. Default: 1 if every training image is grayscale-like by its header (grey mode or grey
        palette), else 3.
      skip_bad_images: leave out images that cannot be decoded (listed in ``bad_images``) instead of raising.
      memory_budget_bytes: decoded uint8 images of all splits up to this size stay in memory; above it they are
        cached to a file under $JAXVISION_CACHE_DIR/image_folders (else the temp dir), keyed by a hash of the
        files (paths, sizes, modification times), size, resize mode and channels, and read from disk each epoch.

    Returns:
      The ImageFolderData.

    Raises:
      ValueError: one line, for a bad option, a bad layout (see ``scan_image_folder``), or a bad image (the file's
        full path) without ``skip_bad_images``.
    """
    size = check_folder_options(image_size, resize, channels, memory_budget_bytes)
    scan = scan_image_folder(root, validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed)
    train_files = scan.files["train"]
    size_chosen = f"given: image_size={size}"
    channels_chosen = f"given: channels={channels}"
    if size is None or channels is None:
        headers = [h for h in _headers(train_files) if h is not None]
        if not headers:
            raise ValueError(
                f"None of the {len(train_files)} training images of {scan.root} can be read (first: {train_files[0]}: "
                f"{_decode_failure(train_files[0], (1, 1), resize, 3)}). Replace the files."
            )
        if size is None:
            size, size_chosen = _default_size(headers, len(train_files))
        if channels is None:
            channels, channels_chosen = _default_channels(headers)
    height, width = size
    total_bytes = sum(len(scan.files[s]) for s in SPLITS) * height * width * channels
    in_memory = total_bytes <= memory_budget_bytes
    if not in_memory:
        scan = _mixed_training_order(scan, seed)
    results = _cached_splits(scan, size, resize, channels, in_memory)

    bad = [path for split in SPLITS for path, ok in zip(scan.files[split], results[split][1]) if not ok]
    if bad and not skip_bad_images:
        raise _bad_image_error(bad, size, resize, channels)
    datasets, class_counts = {}, {}
    for split in SPLITS:
        cached, ok, _, _ = results[split]
        labels = np.asarray(scan.labels[split], np.int64)[ok]
        counts = np.bincount(labels, minlength=len(scan.class_names))
        class_counts[split] = {name: int(n) for name, n in zip(scan.class_names, counts)}
        if len(labels) == 0:
            raise ValueError(
                f"Every {split} image of {scan.root} is bad ({len(ok)} skipped): nothing is left to "
                f"{'train on' if split == 'train' else 'evaluate'}. Replace the files."
            )
        datasets[split] = cached.filter(_is_good).map(_without_flag)
    empty = [name for name, n in class_counts["train"].items() if n == 0]
    if empty:
        raise ValueError(
            f"Every training image of class {empty[0]!r} is bad (skipped): the class cannot be learned. "
            f"Replace its files in {scan.root}, or remove the class."
        )
    mean, std = _statistics(results["train"][2])
    cache_dirs = [results[s][3] for s in SPLITS]
    preprocessing = {
        "image_size": [height, width],
        "image_size_chosen": size_chosen,
        "resize": resize,
        "channels": channels,
        "channels_chosen": channels_chosen,
        "scale": SCALE,
        "decoding": DECODING,
        "layout": scan.layout,
        "splits": dict(scan.sources),
        "storage": ("memory" if in_memory else "file cache: " + ", ".join(cache_dirs))
        + f" ({total_bytes} bytes decoded; memory_budget_bytes={memory_budget_bytes})",
    }
    return ImageFolderData(
        datasets=datasets,
        scan=scan,
        image_shape=(height, width, channels),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        class_counts=class_counts,
        bad_images=tuple(bad),
        preprocessing=preprocessing,
    )


# What other modules import from here; decoding is jaxvision.image_decode's.
__all__ = [
    "DEFAULT_MEMORY_BUDGET_BYTES", "DECODING", "IMAGE_EXTENSIONS", "RESIZE_MODES", "SCALE", "SPLITS", "FolderScan",
    "ImageFolderData", "check_folder_options", "decode_image", "image_header", "is_image_file", "load_image_folder",
    "scan_image_folder",
]
