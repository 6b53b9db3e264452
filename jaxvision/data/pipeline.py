"""TFDS input pipelines: train/validation/test splits, normalisation, shuffling, batching, prefetch.

Any TFDS image-classification dataset works by its catalog name (mnist, fashion_mnist, cifar10,
cifar100, eurosat, ...), plus ``digits``, scikit-learn's bundled 8x8 digits, the offline default, and
a folder of the user's own images, ``root/<class>/<image>`` or ``root/{train,val,test}/<class>/<image>``
(read by ``jaxvision.data.image_folder``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxvision._suggest import unknown_name_error
from jaxvision.data import digits as _digits  # registers the ``digits`` builder with TFDS
from jaxvision.data import shapes as _shapes  # registers the ``shapes`` builder with TFDS
from jaxvision.data import image_folder as _image_folder
from jaxvision.batch import Batch

# tf.data only feeds the host; any accelerator belongs to JAX.
# RuntimeError: TensorFlow's devices were already initialised by the caller, who chose for themselves.
with contextlib.suppress(RuntimeError):
    tf.config.set_visible_devices([], "GPU")

COMMON_DATASETS = ("digits", "shapes", "mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "cifar100", "svhn_cropped", "eurosat")
# The test split is carved from the end of "train" for datasets that have no "test" split.
CARVED_TEST_FRACTION = 0.2
_DIGITS_NAME = _digits.Digits.name
# Datasets generated locally on first use (a config may follow the name: shapes/small).
_GENERATED_NAMES = (_DIGITS_NAME, _shapes.Shapes.name)


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What the model and the report need to know about a loaded dataset."""

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    num_train: int
    num_validation: int
    num_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    # split -> {class name: number of examples}, for "train", "validation" and "test".
    class_counts: dict = dataclasses.field(default_factory=dict, hash=False)
    # Non-image files found in an image folder and ignored (0 for TFDS datasets).
    skipped_files: int = 0
    # Full paths of an image folder's images that could not be decoded and were left out (skip_bad_images).
    bad_images: tuple[str, ...] = ()
    # How images became arrays: image_size and image_size_chosen, resize, channels and channels_chosen, scale, ...
    preprocessing: dict = dataclasses.field(default_factory=dict, hash=False)


def resolve_data_dir(data_dir: str | None = None) -> str | None:
    """``data_dir`` if given, else ``$TFDS_DATA_DIR``, else None (TFDS's default, ~/tensorflow_datasets)."""
    return data_dir or os.environ.get("TFDS_DATA_DIR") or None


def _digits_data_dir(data_dir: str | None) -> str:
    # digits is prepared on first use, so it needs a folder it can write; a shared read-only
    # TFDS_DATA_DIR (like the one holding MNIST in CI) is skipped in favour of a user cache.
    if data_dir and os.access(data_dir, os.W_OK):
        return data_dir
    cache = os.environ.get("JAXVISION_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxvision"))
    return os.path.join(cache, "tensorflow_datasets")


def builder(name: str, *, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The TFDS builder for ``name``, prepared: digits is generated locally, others must be on disk.

    Raises:
      ValueError: for an unknown dataset name, or a dataset that is not prepared in the data dir.
    """
    if os.path.isdir(name):
        return tfds.folder_dataset.ImageFolder(name)
    data_dir = resolve_data_dir(data_dir)
    if name.split("/")[0] in _GENERATED_NAMES:
        dataset_builder = tfds.builder(name, data_dir=_digits_data_dir(data_dir))
        dataset_builder.download_and_prepare()
        return dataset_builder
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = sorted(set(COMMON_DATASETS) | set(tfds.list_builders()))
        close = unknown_name_error("dataset", name, known)
        suggestion = str(close).split("Did you mean", 1)
        hint = f" Did you mean{suggestion[1]}" if len(suggestion) == 2 else ""
        raise ValueError(
            f"Unknown dataset {name!r}. Known: {', '.join(COMMON_DATASETS)}, or any of the "
            f"{len(known)} TFDS catalog names (tfds.list_builders()).{hint}"
        ) from None


def _sliced_folder_split(folder: tfds.folder_dataset.ImageFolder, split: str) -> tf.data.Dataset:
    # ImageFolder has no TFDS sub-split API, so the "train[a:b]" strings this module builds are
    # applied here with skip/take, in the order TFDS gives (a fixed, deterministic shuffle of the files).
    match = re.fullmatch(r"(\w+)(?:\[(\d*):(\d*)\])?", split)
    if match is None:
        raise ValueError(f"Unsupported split {split!r} for an image folder: expected 'name' or 'name[start:stop]'.")
    name, start, stop = match.groups()
    dataset = folder.as_dataset(split=name, as_supervised=True, shuffle_files=False)
    start = int(start or 0)
    dataset = dataset.skip(start)
    return dataset.take(int(stop) - start) if stop else dataset


def _as_dataset(dataset_builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
    if isinstance(dataset_builder, tfds.folder_dataset.ImageFolder):
        return _sliced_folder_split(dataset_builder, split)
    try:
        return dataset_builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    except AssertionError as error:  # TFDS asserts when the data was never prepared.
        name = dataset_builder.name
        raise ValueError(
            f"Dataset {name!r} is not prepared in {dataset_builder.data_dir}. Point TFDS_DATA_DIR (or --data-dir) "
            f"at a folder that holds {name}/ (e.g. ../shared/tensorflow_datasets), or run `tfds build {name}` online."
        ) from error


def _num_examples(dataset_builder: tfds.core.DatasetBuilder, split: str) -> int:
    if dataset_builder.info.splits:
        return dataset_builder.info.splits[split].num_examples
    # No split metadata (tfds.testing.mock_data, or data never prepared): ask the data itself (whole examples
    # for a dataset without a supervised pair, such as voc's boxes).
    if getattr(dataset_builder.info, "supervised_keys", None) or isinstance(dataset_builder, tfds.folder_dataset.ImageFolder):
        dataset = _as_dataset(dataset_builder, split)
    else:
        dataset = dataset_builder.as_dataset(split=split, shuffle_files=False)
    cardinality = int(dataset.cardinality())
    return cardinality if cardinality >= 0 else sum(1 for _ in dataset)


def _split_names(dataset_builder: tfds.core.DatasetBuilder, validation_fraction: float) -> dict[str, str]:
    """TFDS split strings for train/validation/test; validation is always carved from train."""
    num_train_total = _num_examples(dataset_builder, "train")
    splits = dataset_builder.info.splits
    if not splits or "test" in splits:
        test = "test"
    else:
        num_test = int(round(num_train_total * CARVED_TEST_FRACTION))
        num_train_total -= num_test
        test = f"train[{num_train_total}:]"
    num_validation = int(round(num_train_total * validation_fraction))
    if not 0 < num_validation < num_train_total:
        raise ValueError(
            f"validation_fraction={validation_fraction} leaves {num_validation} of {num_train_total} "
            "training examples for validation; pick a fraction that keeps at least one on each side."
        )
    cut = num_train_total - num_validation
    return {"train": f"train[:{cut}]", "validation": f"train[{cut}:{num_train_total}]", "test": test}


def _first_image_size(dataset: tf.data.Dataset) -> tuple[int, int]:
    for image, _ in dataset.take(1):
        return int(image.shape[0]), int(image.shape[1])
    raise ValueError("The dataset has no images; an image folder needs root/<split>/<class>/<image files>.")


def load(
    name: str, split: str, *, data_dir: str | None = None, image_size: Sequence[int] | None = None
) -> tuple[tf.data.Dataset, tfds.core.DatasetInfo]:
    """Raw ``(image uint8 [h, w, c], label int64)`` examples of one TFDS split, in file order.

    Args:
      name: TFDS catalog name, "digits", or the path of an image folder (``root/<split>/<class>/<file>``).
      split: any TFDS split string, e.g. "train", "train[:90%]", "test" (image folders: "train" or
        "train[start:stop]").
      data_dir: where TFDS finds prepared data; defaults to $TFDS_DATA_DIR.
      image_size: (height, width) to resize to, for datasets whose images vary in size.

    Returns:
      The dataset and its TFDS info.
    """
    dataset_builder = builder(name, data_dir=data_dir)
    dataset = _as_dataset(dataset_builder, split)
    if image_size is None and None in dataset.element_spec[0].shape:
        image_size = _first_image_size(dataset)  # image folders decode to [None, None, 3]
    if image_size is not None:
        height, width = image_size
        dataset = dataset.map(
            lambda image, label: (tf.cast(tf.image.resize(image, (height, width)), tf.uint8), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset, dataset_builder.info


def channel_statistics(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of images scaled to [0, 1], in float64."""
    total = total_sq = None
    count = 0
    for images, _ in dataset.batch(8192).as_numpy_iterator():
        pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
        total = pixels.sum(0) if total is None else total + pixels.sum(0)
        total_sq = (pixels**2).sum(0) if total_sq is None else total_sq + (pixels**2).sum(0)
        count += pixels.shape[0]
    if count == 0:
        raise ValueError("Cannot compute normalisation statistics of an empty training split.")
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))


@dataclasses.dataclass
class Splits:
    """A dataset's train, validation and test splits as iterators of normalised ``Batch``es.

    Training batches are shuffled with a seed derived from (seed, epoch), so epoch k of a resumed run
    sees the same order as epoch k of the original run. Evaluation batches cover every example exactly
    once; the last is padded to full size with ``mask = 0``, so the eval step never recompiles.
    """

    meta: DatasetMeta
    batch_size: int
    eval_batch_size: int
    seed: int
    _datasets: dict[str, tf.data.Dataset]
    # Images the shuffle holds at once; None: min(num_train, 100_000). A streamed image folder bounds it.
    shuffle_buffer: int | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.meta.num_train // self.batch_size

    def _normalize(self, images: tf.Tensor) -> tf.Tensor:
        mean = tf.constant(self.meta.mean, tf.float32)
        std = tf.constant(self.meta.std, tf.float32)
        return (tf.cast(images, tf.float32) / 255.0 - mean) / std

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Shuffled training batches of exactly ``batch_size``; the remainder is dropped.

        Args:
          epoch: seeds the epoch's order (with ``seed``).
          start: the first step to yield: a run resumed at step ``start`` of the epoch gets the
            batches the uninterrupted run got from there.
        """
        if not 0 <= start <= self.steps_per_epoch:
            raise ValueError(f"Invalid start={start}: expected a step in [0, {self.steps_per_epoch}] of the epoch.")
        buffer = self.shuffle_buffer or min(self.meta.num_train, 100_000)
        dataset = self._datasets["train"].shuffle(
            buffer, seed=self.seed * 1_000_003 + epoch, reshuffle_each_iteration=False
        )
        # Skipping whole batches after the seeded shuffle keeps the order exactly.
        dataset = dataset.batch(self.batch_size, drop_remainder=True).skip(start)
        dataset = dataset.map(lambda x, y: (self._normalize(x), tf.cast(y, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
        for images, labels in dataset.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
            yield Batch(images=images, labels=labels, mask=np.ones(len(labels), np.float32))

    def eval_batches(self, split: str) -> Iterator[Batch]:
        """Every example of "validation" or "test" once, in batches padded to ``eval_batch_size``."""
        size = self.eval_batch_size

        def pad(images, labels):
            real = tf.shape(labels)[0]
            padding = size - real
            images = tf.pad(images, [[0, padding], [0, 0], [0, 0], [0, 0]])
            mask = tf.concat([tf.ones([real], tf.float32), tf.zeros([padding], tf.float32)], 0)
            labels = tf.pad(tf.cast(labels, tf.int32), [[0, padding]])
            return self._normalize(images), labels, mask

        dataset = self._datasets[split].batch(size).map(pad, num_parallel_calls=tf.data.AUTOTUNE)
        for images, labels, mask in dataset.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
            yield Batch(images=images, labels=labels, mask=mask)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """A whole split in memory: normalised images [n, h, w, c] float32 and labels [n] int32."""
        dataset = self._datasets[split].batch(8192).map(lambda x, y: (self._normalize(x), tf.cast(y, tf.int32)))
        parts = list(dataset.as_numpy_iterator())
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _is_folder(name: str) -> bool:
    """True when ``name`` is a path rather than a TFDS name: it exists, or it is spelled like a path."""
    if os.path.exists(os.path.expanduser(name)):
        return True
    if name in (".", "..") or name.startswith(("/", "./", "../", "~")):
        return True
    # "emnist/letters" is a TFDS config; "data/photos" is a path when data/ is a folder here.
    parts = name.replace(os.sep, "/").split("/", 1)
    return len(parts) == 2 and os.path.isdir(parts[0])


def _per_channel(values: Sequence[float] | float, channels: int, what: str, *, positive: bool) -> tuple[float, ...]:
    array = np.asarray(values, np.float64).reshape(-1)
    if array.size not in (1, channels) or not np.all(np.isfinite(array)) or (positive and not np.all(array > 0)):
        kind = "positive finite" if positive else "finite"
        raise ValueError(
            f"Invalid {what}={[float(v) for v in array]}: expected 1 or {channels} {kind} numbers (one per channel) "
            f"in [0, 1] pixel units, e.g. {what}=[{0.25 if positive else 0.5}]."
        )
    return tuple(float(v) for v in np.broadcast_to(array, (channels,)))


def _folder_splits(
    name: str, *, batch_size: int, eval_batch_size: int, validation_fraction: float, seed: int,
    mean: Sequence[float] | None, std: Sequence[float] | None, **folder_options,
) -> Splits:
    folder = _image_folder.load_image_folder(
        name, validation_fraction=validation_fraction, test_fraction=CARVED_TEST_FRACTION, seed=seed, **folder_options
    )
    channels = folder.image_shape[-1]
    counts = {split: sum(per_class.values()) for split, per_class in folder.class_counts.items()}
    meta = DatasetMeta(
        name=name,
        image_shape=folder.image_shape,
        num_classes=len(folder.scan.class_names),
        num_train=counts["train"],
        num_validation=counts["validation"],
        num_test=counts["test"],
        mean=_per_channel(folder.mean if mean is None else mean, channels, "mean", positive=False),
        std=_per_channel(folder.std if std is None else std, channels, "std", positive=True),
        class_names=folder.scan.class_names,
        class_counts=folder.class_counts,
        skipped_files=len(folder.scan.skipped_files),
        bad_images=folder.bad_images,
        preprocessing=folder.preprocessing,
    )
    shuffle_buffer = None
    if not str(folder.preprocessing.get("storage", "memory")).startswith("memory"):
        # Streamed from its file cache: a quarter of the memory budget of decoded images at a time
        # (the file order is already mixed across classes).
        budget = folder_options.get("memory_budget_bytes", _image_folder.DEFAULT_MEMORY_BUDGET_BYTES)
        shuffle_buffer = int(min(meta.num_train, max(256, budget // (4 * int(np.prod(folder.image_shape))))))
    return Splits(
        meta=meta,
        batch_size=min(batch_size, meta.num_train),
        eval_batch_size=eval_batch_size,
        seed=seed,
        _datasets=dict(folder.datasets),
        shuffle_buffer=shuffle_buffer,
    )


def load_splits(
    name: str,
    *,
    batch_size: int = 128,
    eval_batch_size: int = 1000,
    validation_fraction: float = 0.1,
    seed: int = 0,
    data_dir: str | None = None,
    image_size: int | Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: str = "stretch",
    channels: int | None = None,
    skip_bad_images: bool = False,
    memory_budget_bytes: int = _image_folder.DEFAULT_MEMORY_BUDGET_BYTES,
) -> Splits:
    """Loads a dataset's train/validation/test splits, ready to iterate.

    Args:
      name: TFDS catalog name, "digits", or an image folder's path: ``root/<class>/<image>`` (validation and
        test carved from it, stratified by class) or ``root/{train,val|validation,test}/<class>/<image>``
        (see ``jaxvision.data.image_folder``).
      batch_size: training batch size; one at least the training set's size is full-batch gradient
        descent, 1 is single-example SGD.
      eval_batch_size: batch size of validation and test evaluation.
      validation_fraction: share of the training split held out for validation, in (0, 1). TFDS: the end of
        "train" (TFDS split slicing), never "test". Image folders without val/: a seeded, stratified share.
      seed: shuffling seed; for image folders also the seed of the carved splits.
      data_dir: where TFDS finds prepared data; defaults to $TFDS_DATA_DIR.
      image_size: (height, width), or one int for a square, to resize every image to. Image folders default to
        the most common size of their training images (``meta.preprocessing["image_size_chosen"]`` says so).
      mean, std: per-channel normalisation in [0, 1] pixel units; computed from the training split
        when not given.
      resize: image folders: "stretch", "center-crop" (scale to cover, crop the centre), "resize-crop"
        (torchvision's evaluation transform: resize to 256/224 of the size, crop the centre) or "pad" (scale to
        fit, letterbox with zeros). TFDS datasets stretch.
      channels: 1 or 3. Image folders: default 1 if every training image is grayscale, else 3. TFDS datasets:
        default their own; 3 repeats a grey channel, 1 converts RGB to luma.
      skip_bad_images: image folders: leave out images that cannot be decoded (``meta.bad_images``) instead of
        raising a ValueError that names the first.
      memory_budget_bytes: image folders: decoded images up to this many bytes stay in memory; above it they
        are cached to a file under $JAXVISION_CACHE_DIR and read from disk each epoch.

    Returns:
      The Splits.

    Raises:
      ValueError: one line, for any bad option, dataset name, folder layout or image file.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"Invalid validation_fraction={validation_fraction}: expected a number in (0, 1), e.g. 0.1.")
    if batch_size < 1 or eval_batch_size < 1:
        raise ValueError(f"Invalid batch size {min(batch_size, eval_batch_size)}: expected a positive integer, e.g. 128.")
    image_size = _image_folder.check_folder_options(image_size, resize, channels, memory_budget_bytes)
    if _is_folder(name):
        return _folder_splits(
            name, batch_size=batch_size, eval_batch_size=eval_batch_size, validation_fraction=validation_fraction,
            seed=seed, mean=mean, std=std, image_size=image_size, resize=resize, channels=channels,
            skip_bad_images=skip_bad_images, memory_budget_bytes=memory_budget_bytes,
        )
    if resize != "stretch":
        raise ValueError(
            f"resize={resize!r} applies to image folders only; {name!r} is a TFDS dataset, whose images are "
            "stretched to image_size. Drop the option (or pass an image folder)."
        )
    dataset_builder = builder(name, data_dir=data_dir)
    info = dataset_builder.info
    split_names = _split_names(dataset_builder, validation_fraction)
    datasets = {key: load(name, split, data_dir=data_dir, image_size=image_size)[0].cache() for key, split in split_names.items()}
    own_channels = int(datasets["train"].element_spec[0].shape[-1])
    if channels is not None and channels != own_channels:
        # Grey to RGB repeats the channel (what a pretrained RGB network expects of a grey image); RGB to
        # grey is ITU-R 601-2 luma, as the image folders' Pillow conversion.
        convert = tf.image.grayscale_to_rgb if channels == 3 else tf.image.rgb_to_grayscale
        datasets = {key: ds.map(lambda image, label: (convert(image), label)).cache() for key, ds in datasets.items()}
    label_feature = info.features[info.supervised_keys[1]]
    num_classes = int(label_feature.num_classes)
    # One pass per split counts it (per class too) and fills its in-memory cache.
    class_totals = {key: np.zeros(num_classes, np.int64) for key in datasets}
    for key, ds in datasets.items():
        for _, labels in ds.batch(8192).as_numpy_iterator():
            class_totals[key] += np.bincount(labels, minlength=num_classes)[:num_classes]
    counts = {key: int(totals.sum()) for key, totals in class_totals.items()}
    if mean is None or std is None:
        computed_mean, computed_std = channel_statistics(datasets["train"])
        mean = computed_mean if mean is None else mean
        std = computed_std if std is None else std
    image_spec = datasets["train"].element_spec[0]
    image_shape = tuple(int(d) for d in image_spec.shape)
    class_names = tuple(label_feature.names)
    meta = DatasetMeta(
        name=name,
        image_shape=image_shape,
        num_classes=num_classes,
        num_train=counts["train"],
        num_validation=counts["validation"],
        num_test=counts["test"],
        mean=_per_channel(mean, image_shape[-1], "mean", positive=False),
        std=_per_channel(std, image_shape[-1], "std", positive=True),
        class_names=class_names,
        class_counts={key: {c: int(n) for c, n in zip(class_names, totals)} for key, totals in class_totals.items()},
        preprocessing={
            "image_size": list(image_shape[:2]),
            "image_size_chosen": f"given: image_size={list(image_size)}" if image_size else "the dataset's own size",
            "resize": "stretch" if image_size else "none",
            "channels": image_shape[-1],
            "channels_chosen": ("the dataset's own" if channels in (None, own_channels)
                                else f"given: channels={channels} (the dataset's own: {own_channels})"),
            "scale": _image_folder.SCALE,
        },
    )
    return Splits(
        meta=meta,
        batch_size=min(batch_size, meta.num_train),
        eval_batch_size=eval_batch_size,
        seed=seed,
        _datasets=datasets,
    )
