"""``jaxvision augment-preview``: a PNG grid of a few images and augmented views of each."""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from jaxvision.cli import arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from jaxvision.augment import describe_augmentations

    parser = subparsers.add_parser(
        "augment-preview",
        help="write a PNG grid of images and their augmented views",
        description="Draw a few images of a dataset and augmented views of each, as training would see them.",
        epilog="augmentations (name[:magnitude], comma-separated):\n" + describe_augmentations(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--augment", type=arguments.spec, required=True, help="pipeline spec, e.g. flip,crop:4,rotate:15,jitter:0.2")
    parser.add_argument("--dataset", default="digits", help="TFDS name, or digits (default, offline)")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--num-images", type=arguments.positive_int, default=8, help="rows: images from the start of the training split")
    parser.add_argument("--views", type=arguments.positive_int, default=6, help="augmented views per image (columns after the original)")
    parser.add_argument("--seed", type=arguments.seed, default=0, help="seeds the augmentation draws (0 to 2**32 - 1)")
    parser.add_argument("--output", default=None, help="PNG path (default: runs/augment_preview_<dataset>.png)")
    parser.set_defaults(func=run)


def _load_images(dataset: str, count: int, data_dir: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    """The first ``count`` training images in [0, 1], their labels, and the number of classes."""
    from jaxvision import data

    if os.path.isdir(dataset):
        # An image folder goes through the same scan and decoding as training (any layout, any format).
        splits = data.load_splits(dataset, batch_size=count, validation_fraction=0.1)
        batch = next(iter(splits.train_batches(0)))
        mean, std = np.asarray(splits.meta.mean, np.float32), np.asarray(splits.meta.std, np.float32)
        return np.clip(batch.images * std + mean, 0.0, 1.0), batch.labels.astype(np.int32), splits.meta.num_classes
    examples, info = data.load(dataset, "train", data_dir=data_dir)
    images, labels = next(iter(examples.batch(count).as_numpy_iterator()))
    num_classes = int(info.features[info.supervised_keys[1]].num_classes)
    return images.astype(np.float32) / 255.0, labels.astype(np.int32), num_classes


def render_grid(rows: np.ndarray, path: str, *, titles: list[str] | None = None) -> None:
    """Saves ``rows`` [rows, columns, h, w, c] of [0, 1] images as one PNG grid (column titles optional)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    num_rows, num_columns = rows.shape[:2]
    figure, axes = plt.subplots(num_rows, num_columns, figsize=(1.2 * num_columns, 1.2 * num_rows), squeeze=False)
    for (row, column), axis in np.ndenumerate(axes):
        picture = np.clip(rows[row, column], 0.0, 1.0)
        axis.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0.0, vmax=1.0)
        axis.set_xticks([])
        axis.set_yticks([])
        if row == 0 and titles:
            axis.set_title(titles[column], fontsize=8)
    figure.tight_layout()
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from jaxvision.augment import parse_augment_spec
    from jaxvision.batch import Batch

    images, labels, num_classes = _load_images(args.dataset, args.num_images, args.data_dir)
    # Normalise as training does, so fills (0 = the mean) and photometric ops look as they will in training.
    mean = images.reshape(-1, images.shape[-1]).mean(axis=0)
    std = np.maximum(images.reshape(-1, images.shape[-1]).std(axis=0), 1e-3)
    pipeline = parse_augment_spec(args.augment, num_classes=num_classes, mean=mean, std=std)
    batch = Batch.of((images - mean) / std, labels)
    augment = jax.jit(pipeline)
    keys = jax.random.split(jax.random.key(args.seed), args.views)
    views = [np.asarray(augment(key, batch).images) * std + mean for key in keys]
    grid = np.stack([images, *views], axis=1)
    output = args.output or os.path.join("runs", f"augment_preview_{args.dataset}.png")
    render_grid(grid, output, titles=["original"] + [f"view {i + 1}" for i in range(args.views)])
    print(f"{pipeline.spec}: {args.num_images} images x {args.views} views of {args.dataset} -> {output}")
    return 0
