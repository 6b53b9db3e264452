"""A folder of images and class-index masks as NumPy arrays, for ``--task segment``.

Layout (masks matched to images by file stem)::

    root/classes.txt          one class name per line; line i names class i (0 is usually background)
    root/images/NAME.jpg      any PNG, JPEG, BMP or GIF
    root/masks/NAME.png       mode L or P; each pixel's value is its class index, 255 means "ignore"

or, split by folders, ``root/{train, validation or val, test}/{images, masks}/`` with one ``root/classes.txt``.

Images are decoded by ``jaxvision.image_decode`` (Pillow, EXIF orientation, bilinear stretch); masks are
resized with nearest-neighbour sampling, so a resized mask holds only values the file held. No TensorFlow.
The split-layout and classes-file helpers here are shared with ``detection_files``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

from jaxvision.image_decode import decode_image, image_header, is_image_file

IGNORE_INDEX = 255
# Split folder names under a root, and the split each one fills.
_SPLIT_FOLDERS = (("train", "train"), ("validation", "validation"), ("val", "validation"), ("test", "test"))
# Modes whose pixel values are class indices; "1" is a binary mask (0/1).
_INDEX_MODES = ("L", "P", "1")


@dataclasses.dataclass(frozen=True)
class SegmentationData:
    """Images and their masks, decoded.

    Attributes:
      images: [N, height, width, channels] uint8.
      masks: [N, height, width] int32 class indices; 255 marks pixels to ignore.
      class_names: class i's name at index i.
      names: each example's file stem, in order (sorted).
    """

    images: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...]
    names: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared with detection_files.


def check_read_options(image_size: tuple[int, int] | None, channels: int) -> tuple[int, int] | None:
    """``image_size`` as a (height, width) tuple of ints, after checking it and ``channels``."""
    if channels not in (1, 3):
        raise ValueError(f"Invalid channels={channels!r}: expected 1 (grey) or 3 (RGB).")
    if image_size is None:
        return None
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(f"Invalid image_size={image_size!r}: expected (height, width), two positive ints, e.g. (64, 64).")
    return int(size[0]), int(size[1])


def read_class_names(path: str) -> tuple[str, ...]:
    """Class names from a text file, one a line (line i names class i); trailing blank lines are ignored."""
    if not os.path.isfile(path):
        raise ValueError(f"Missing classes file {path}: write one class name per line (line i names class i).")
    with open(path, encoding="utf-8-sig") as f:  # utf-8-sig: Windows editors prepend a byte-order mark
        lines = [line.strip() for line in f.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"Classes file {path} is empty: write one class name per line (line i names class i).")
    for number, line in enumerate(lines, 1):
        if not line:
            raise ValueError(f"Line {number} of {path} is blank: line i names class i, so name every class.")
    return tuple(lines)


def split_folders(root: str) -> dict[str, str]:
    """split name -> folder for a split layout (``root/train/images`` exists); empty for a single folder."""
    if not os.path.isdir(os.path.join(root, "train", "images")):
        return {}
    folders = {}
    for folder, split in _SPLIT_FOLDERS:
        path = os.path.join(root, folder)
        if os.path.isdir(path):
            if split in folders:
                raise ValueError(f"{root} has both val/ and validation/: keep one (they are the same split).")
            folders[split] = path
    return folders


def list_images(folder: str) -> dict[str, str]:
    """stem -> path of the image files directly in ``folder``, sorted by stem; a repeated stem is an error."""
    images = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or not is_image_file(path):
            continue
        stem = os.path.splitext(name)[0]
        if stem in images:
            raise ValueError(f"Two images named {stem} in {folder}: {os.path.basename(images[stem])} and {name}. Rename one.")
        images[stem] = path
    if not images:
        raise ValueError(f"No images in {folder}: expected .png, .jpg, .jpeg, .bmp or .gif files. Add images.")
    return dict(sorted(images.items()))


def require_folder(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise ValueError(f"Missing folder {path}: expected {what} there.")


def decode_or_raise(path: str, image_size: tuple[int, int], channels: int) -> np.ndarray:
    """``decode_image`` with Pillow's errors turned into a ValueError naming the file."""
    try:
        return decode_image(path, image_size=image_size, channels=channels)
    except Exception as error:
        raise ValueError(f"Could not read image {path} ({type(error).__name__}: {error}). Fix or remove it.") from None


def header_or_raise(path: str) -> tuple[int, int]:
    """(height, width) of an image as decoded (EXIF orientation applied), from its header."""
    try:
        height, width, _ = image_header(path)
    except Exception as error:
        raise ValueError(f"Could not read image {path} ({type(error).__name__}: {error}). Fix or remove it.") from None
    return height, width


# ---------------------------------------------------------------------------------------------------------------
# Masks.


def _read_mask(path: str, image_shape: tuple[int, int], image_size: tuple[int, int], num_classes: int) -> np.ndarray:
    """One mask file, checked against its image's (height, width), resized to ``image_size``, int32."""
    with Image.open(path) as mask:
        if mask.format == "JPEG":
            raise ValueError(f"Mask {path} is a JPEG, whose lossy compression changes class indices: save masks as PNG.")
        if mask.mode not in _INDEX_MODES:
            raise ValueError(
                f"Mask {path} has mode {mask.mode}, not class indices: save masks as class-index PNGs (mode L or P), "
                "each pixel's value its class index."
            )
        mask.load()
        if (mask.height, mask.width) != image_shape:
            raise ValueError(
                f"Mask {path} is {mask.height}x{mask.width} (height x width) but its image is "
                f"{image_shape[0]}x{image_shape[1]}: masks must have their image's size."
            )
        values = np.asarray(mask, np.uint8)
        # Nearest, never bilinear: blending two class indices gives a third, unrelated class.
        if (mask.height, mask.width) != image_size:
            mask = mask.resize((image_size[1], image_size[0]), Image.Resampling.NEAREST)
        resized = np.asarray(mask, np.int32)
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise ValueError(
            f"Mask {path} has value {int(bad.max())} but classes.txt names {num_classes} classes (0 to "
            f"{num_classes - 1}; 255 = ignore): add the class to classes.txt or fix the mask."
        )
    return resized


def _read_split(
    folder: str, class_names: tuple[str, ...], image_size: tuple[int, int] | None, channels: int
) -> SegmentationData:
    images_dir, masks_dir = os.path.join(folder, "images"), os.path.join(folder, "masks")
    require_folder(images_dir, "the images (NAME.png or NAME.jpg)")
    require_folder(masks_dir, "one class-index PNG per image, named like it (NAME.png)")
    image_paths = list_images(images_dir)
    mask_paths = {}
    for name in os.listdir(masks_dir):
        path = os.path.join(masks_dir, name)
        if os.path.isfile(path) and is_image_file(path):
            mask_paths[os.path.splitext(name)[0]] = path
    for stem, path in image_paths.items():
        if stem not in mask_paths:
            raise ValueError(f"Image {path} has no mask: expected {os.path.join(masks_dir, stem + '.png')}.")
    for stem, path in sorted(mask_paths.items()):
        if stem not in image_paths:
            raise ValueError(f"Mask {path} has no image: expected {os.path.join(images_dir, stem)}.png (or .jpg).")
    images, masks = [], []
    for stem, path in image_paths.items():
        shape = header_or_raise(path)
        size = image_size or shape
        image_size = size  # None means the first image's size, for all that follow
        images.append(decode_or_raise(path, size, channels))
        masks.append(_read_mask(mask_paths[stem], shape, size, len(class_names)))
    return SegmentationData(np.stack(images), np.stack(masks), class_names, tuple(image_paths))


# ---------------------------------------------------------------------------------------------------------------
# Public API.


def is_segmentation_folder(path: str) -> bool:
    """True for a folder with ``images/`` and ``masks/``, directly or under ``train/``."""
    return any(
        os.path.isdir(os.path.join(base, "images")) and os.path.isdir(os.path.join(base, "masks"))
        for base in (path, os.path.join(path, "train"))
    )


def read_segmentation_folder(
    root: str, *, image_size: tuple[int, int] | None = None, channels: int = 3
) -> SegmentationData:
    """Reads ``root/images``, ``root/masks`` and ``root/classes.txt``.

    Args:
      root: the folder.
      image_size: (height, width) every image and mask is resized to; None: the first image's size.
      channels: 1 (grey) or 3 (RGB).

    Returns:
      The decoded images and masks, sorted by file stem.

    Raises:
      ValueError: a missing folder or classes file, an image without a mask or a mask without an image, a mask
        that is not a class-index PNG, has another size than its image, or holds a value >= the number of classes
        other than 255.
    """
    image_size = check_read_options(image_size, channels)
    if not os.path.isdir(os.path.join(root, "images")) and split_folders(root):
        raise ValueError(f"{root} is split into train/, val/, test/ folders: read it with read_segmentation_splits.")
    class_names = read_class_names(os.path.join(root, "classes.txt"))
    return _read_split(root, class_names, image_size, channels)


def read_segmentation_splits(
    root: str, *, image_size: tuple[int, int] | None = None, channels: int = 3
) -> dict[str, SegmentationData]:
    """Reads ``root/{train, validation or val, test}/{images, masks}`` with one ``root/classes.txt``.

    Args:
      root: the folder holding the split folders.
      image_size: (height, width) of every image and mask in every split; None: the first training image's size.
      channels: 1 (grey) or 3 (RGB).

    Returns:
      split name ("train", "validation", "test") -> its data, for the splits present.
    """
    image_size = check_read_options(image_size, channels)
    folders = split_folders(root)
    if not folders:
        raise ValueError(
            f"{root} has no train/images folder: expected root/train/{{images,masks}} (and val/, test/), "
            "or read a single folder with read_segmentation_folder."
        )
    class_names = read_class_names(os.path.join(root, "classes.txt"))
    splits = {}
    for split, folder in folders.items():
        splits[split] = _read_split(folder, class_names, image_size, channels)
        image_size = image_size or splits[split].images.shape[1:3]  # every split at the training images' size
    return splits
