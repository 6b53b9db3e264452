"""Object-detection data on disk (COCO JSON, YOLO text files) as padded NumPy arrays, for ``--task detect``.

Boxes come out as ``(x1, y1, x2, y2)`` in pixels of the resized image, which spans ``[0, width] x [0, height]``
(``jaxvision.boxes``' convention), clipped to it; boxes left with zero area are dropped. Each image's boxes are
padded to the most any image has (at least 1), with ``valid`` False on the padding.

COCO: one JSON per split (``images``, ``annotations`` with ``bbox: [x, y, width, height]`` in pixels,
``categories``); crowd annotations (``iscrowd: 1``) are skipped. Category ids map to 0-based indices in sorted id
order.

YOLO::

    root/classes.txt (or root/data.yaml with a ``names:`` list)
    root/images/NAME.jpg
    root/labels/NAME.txt      one ``class cx cy w h`` line per box, normalised to [0, 1]; no file = no boxes

or ``root/{train, validation or val, test}/{images, labels}/`` with the class names at the root.

Images are decoded by ``jaxvision.image_decode`` (Pillow, EXIF orientation, bilinear stretch). No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from jaxvision.data.segmentation_folder import (
    check_read_options,
    decode_or_raise,
    header_or_raise,
    list_images,
    read_class_names,
    require_folder,
    split_folders,
)

# YOLO coordinates are written with a few decimals; a hair outside [0, 1] is rounding, not an error.
_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class DetectionData:
    """Images and their boxes, decoded and padded.

    Attributes:
      images: [N, height, width, channels] uint8.
      boxes: [N, M, 4] float32 (x1, y1, x2, y2) in pixels of the resized image; zeros where not valid.
      classes: [N, M] int32 0-based class indices; 0 where not valid.
      valid: [N, M] bool, True for real boxes.
      class_names: class i's name at index i.
      names: each image's file name without its extension, in order.
    """

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    valid: np.ndarray
    class_names: tuple[str, ...]
    names: tuple[str, ...]


def _clip_and_pack(boxes: list[tuple[float, float, float, float]], classes: list[int], size: tuple[int, int]):
    """Boxes clipped to a (height, width) image, zero-area ones dropped: ([K, 4] float32, [K] int32)."""
    height, width = size
    array = np.asarray(boxes, np.float64).reshape(-1, 4)
    array = np.clip(array, 0, [width, height, width, height])
    keep = (array[:, 2] > array[:, 0]) & (array[:, 3] > array[:, 1])
    return array[keep].astype(np.float32), np.asarray(classes, np.int32).reshape(-1)[keep]


def _pad(images, per_image, class_names, names) -> DetectionData:
    """Stacks images and pads each image's (boxes, classes) to the largest count."""
    count = max([1] + [len(c) for _, c in per_image])
    boxes = np.zeros((len(images), count, 4), np.float32)
    classes = np.zeros((len(images), count), np.int32)
    valid = np.zeros((len(images), count), bool)
    for i, (b, c) in enumerate(per_image):
        boxes[i, : len(c)], classes[i, : len(c)], valid[i, : len(c)] = b, c, True
    return DetectionData(np.stack(images), boxes, classes, valid, tuple(class_names), tuple(names))


# ---------------------------------------------------------------------------------------------------------------
# COCO.


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise ValueError(f"Missing COCO annotations file {path}: pass the path of an instances JSON.")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): expected a COCO annotations file.") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise ValueError(f"{path} is not a COCO annotations file: expected lists 'images', 'annotations', 'categories'.")
    return data


def is_coco_file(path: str) -> bool:
    """True for a .json file holding a dict with 'images', 'annotations' and 'categories'."""
    if not (os.path.isfile(path) and path.lower().endswith(".json")):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(k in data for k in ("images", "annotations", "categories"))


def read_coco(
    annotations: str, images_dir: str | None = None, *, image_size: tuple[int, int] | None = None, channels: int = 3
) -> DetectionData:
    """Reads a COCO annotations JSON and its images.

    Args:
      annotations: path of the JSON.
      images_dir: folder that ``file_name`` is relative to; None: the JSON's folder.
      image_size: (height, width) every image is stretched to (boxes scaled with it); None: the first image's size.
      channels: 1 (grey) or 3 (RGB).

    Returns:
      Images in the JSON's order; each image's boxes in its annotations' order. Images without annotations are
      kept, with no valid box.

    Raises:
      ValueError: a missing file, an annotation for an unknown image_id or category_id, a bbox that is not
        four numbers or has a negative width or height, or an image whose size differs from its JSON entry.
    """
    image_size = check_read_options(image_size, channels)
    data = _load_json(annotations)
    images_dir = os.path.dirname(os.path.abspath(annotations)) if images_dir is None else images_dir
    category_ids = sorted(c["id"] for c in data["categories"])
    if len(set(category_ids)) != len(category_ids):
        raise ValueError(f"{annotations} lists a category id twice: give each category its own id.")
    names_by_id = {c["id"]: str(c["name"]) for c in data["categories"]}
    class_index = {cid: i for i, cid in enumerate(category_ids)}
    entries = data["images"]
    if not entries:
        raise ValueError(f"{annotations} lists no images: add entries to 'images'.")
    position = {entry["id"]: i for i, entry in enumerate(entries)}
    raw = [([], []) for _ in entries]  # per image: boxes in the file's pixels, class indices
    for number, annotation in enumerate(data.get("annotations", [])):
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        if image_id not in position:
            raise ValueError(f"Annotation {number} in {annotations} has image_id={image_id!r}, which no image has: fix the id or add the image.")
        if category_id not in class_index:
            raise ValueError(
                f"Annotation {number} in {annotations} has category_id={category_id!r}, not one of the categories "
                f"{category_ids}: fix the id or add the category."
            )
        bbox = annotation.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise ValueError(f"Annotation {number} in {annotations} has bbox={bbox!r}: expected [x, y, width, height] in pixels.")
        x, y, w, h = bbox
        if w < 0 or h < 0:
            raise ValueError(
                f"Annotation {number} in {annotations} has bbox={bbox!r} with a negative size: expected "
                "[x, y, width, height] with width, height >= 0 (COCO's format, not [x1, y1, x2, y2])."
            )
        if annotation.get("iscrowd", 0):
            continue  # crowd regions are "ignore" areas in COCO's evaluation, not objects to learn
        raw[position[image_id]][0].append((x, y, x + w, y + h))
        raw[position[image_id]][1].append(class_index[category_id])
    images, per_image, names = [], [], []
    for entry, (boxes, classes) in zip(entries, raw):
        path = os.path.join(images_dir, entry["file_name"])
        if not os.path.isfile(path):
            raise ValueError(f"Missing image {path} (file_name of image id {entry['id']}): pass the folder it is in as images_dir.")
        height, width = header_or_raise(path)
        stated = (entry.get("height", height), entry.get("width", width))
        if stated != (height, width):
            raise ValueError(
                f"Image {path} is {height}x{width} (height x width) but {annotations} says {stated[0]}x{stated[1]}: "
                "its boxes would land in the wrong place. Use the annotated image or fix its width and height."
            )
        image_size = image_size or (height, width)  # None means the first image's size, for all that follow
        scale = np.array([image_size[1] / width, image_size[0] / height] * 2)
        images.append(decode_or_raise(path, image_size, channels))
        per_image.append(_clip_and_pack(np.asarray(boxes, np.float64).reshape(-1, 4) * scale, classes, image_size))
        names.append(os.path.splitext(entry["file_name"])[0])
    return _pad(images, per_image, [names_by_id[cid] for cid in category_ids], names)


# ---------------------------------------------------------------------------------------------------------------
# YOLO.


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _strip_comment(line: str) -> str:
    # A '#' starts a comment unless it is inside a quoted name; names with '#' are rare enough to require quotes.
    quote = None
    for i, char in enumerate(line):
        if char in "'\"":
            quote = None if quote == char else (quote or char)
        elif char == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _yaml_names(path: str) -> tuple[str, ...]:
    """The ``names:`` of an Ultralytics data.yaml: ``[a, b]``, a ``- a`` block or a ``0: a`` block.

    A small reader rather than PyYAML, which jaxvision does not depend on.
    """
    with open(path, encoding="utf-8-sig") as f:
        lines = [_strip_comment(line) for line in f.read().splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith("names:")]
    if not starts:
        raise ValueError(f"{path} has no top-level 'names:' entry: add e.g. names: [cat, dog], or write classes.txt.")
    start = starts[0]
    rest = lines[start][len("names:"):].strip()
    if rest.startswith("["):
        while "]" not in rest and start + 1 < len(lines):  # a list wrapped over several lines
            start += 1
            rest += " " + lines[start].strip()
        names = [_unquote(n) for n in rest.strip()[1:].split("]")[0].split(",")]
        names = [n for n in names if n]
    elif rest:
        raise ValueError(f"{path}: 'names: {rest}' is not a list: write names: [cat, dog] or one '- name' a line.")
    else:
        entries = []
        for line in lines[start + 1:]:
            if not line.strip():
                continue
            if not line[0].isspace() and not line.startswith("-"):
                break  # the next top-level key
            entries.append(line.strip())
        if all(e.startswith("-") for e in entries):
            names = [_unquote(e[1:]) for e in entries]
        else:
            keyed = {}
            for entry in entries:
                key, _, value = entry.partition(":")
                if not key.strip().isdigit():
                    raise ValueError(f"{path}: names entry {entry!r} is not '- name' or 'index: name'.")
                keyed[int(key)] = _unquote(value)
            if sorted(keyed) != list(range(len(keyed))):
                raise ValueError(f"{path}: names indices {sorted(keyed)} are not 0, 1, 2, ...: number the classes from 0.")
            names = [keyed[i] for i in range(len(keyed))]
    if not names:
        raise ValueError(f"{path} names no classes: list them under 'names:'.")
    return tuple(names)


def _yolo_class_names(root: str) -> tuple[str, ...]:
    """Class names from ``root/classes.txt``, else from ``root/data.yaml`` (or ``data.yml``)."""
    classes_path = os.path.join(root, "classes.txt")
    if not os.path.isfile(classes_path):
        for name in ("data.yaml", "data.yml"):
            if os.path.isfile(os.path.join(root, name)):
                return _yaml_names(os.path.join(root, name))
        raise ValueError(f"Missing {classes_path}: write one class name per line, or a data.yaml with names: [...].")
    return read_class_names(classes_path)


def _parse_label_file(path: str, num_classes: int) -> tuple[list[tuple[float, ...]], list[int]]:
    """One YOLO label file: normalised (cx, cy, w, h) per box, and the class indices."""
    boxes, classes = [], []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 5:
                    raise ValueError
                values = [float(v) for v in fields]
                if not values[0].is_integer():
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"Line {number} of {path} is malformed ({line.strip()!r}): expected `class cx cy w h`, "
                    "an integer class and four numbers in [0, 1]."
                ) from None
            label = int(values[0])
            if not 0 <= label < num_classes:
                raise ValueError(
                    f"Line {number} of {path} has class {label}, but there are {num_classes} classes "
                    f"(0 to {num_classes - 1}): fix the label or add the class to the class names."
                )
            coordinates = values[1:]
            if any(v < -_TOLERANCE or v > 1 + _TOLERANCE for v in coordinates):
                raise ValueError(
                    f"Line {number} of {path} has coordinates {fields[1:]} outside [0, 1]: YOLO labels are "
                    "`class cx cy w h` divided by the image width and height; normalise them."
                )
            boxes.append(tuple(coordinates))
            classes.append(label)
    return boxes, classes


def _read_yolo_split(folder, class_names, image_size, channels) -> DetectionData:
    images_dir, labels_dir = os.path.join(folder, "images"), os.path.join(folder, "labels")
    require_folder(images_dir, "the images (NAME.jpg or NAME.png)")
    require_folder(labels_dir, "one NAME.txt of `class cx cy w h` lines per image (none for an image without objects)")
    image_paths = list_images(images_dir)
    for name in sorted(os.listdir(labels_dir)):
        # labelImg writes classes.txt beside the labels; it is not an image's labels.
        if name.endswith(".txt") and name != "classes.txt" and name[:-4] not in image_paths:
            raise ValueError(f"Label file {os.path.join(labels_dir, name)} has no image: expected {os.path.join(images_dir, name[:-4])}.jpg (or .png).")
    images, per_image = [], []
    for stem, path in image_paths.items():
        image_size = image_size or header_or_raise(path)  # None means the first image's size, for all that follow
        images.append(decode_or_raise(path, image_size, channels))
        label_path = os.path.join(labels_dir, stem + ".txt")
        boxes, classes = _parse_label_file(label_path, len(class_names)) if os.path.isfile(label_path) else ([], [])
        cx, cy, w, h = np.asarray(boxes, np.float64).reshape(-1, 4).T
        height, width = image_size
        corners = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)
        per_image.append(_clip_and_pack(corners, classes, image_size))
    return _pad(images, per_image, class_names, image_paths)


def is_yolo_folder(path: str) -> bool:
    """True for a folder with ``images/`` and ``labels/``, directly or under ``train/``."""
    return any(
        os.path.isdir(os.path.join(base, "images")) and os.path.isdir(os.path.join(base, "labels"))
        for base in (path, os.path.join(path, "train"))
    )


def read_yolo(root: str, *, image_size: tuple[int, int] | None = None, channels: int = 3) -> DetectionData:
    """Reads ``root/images``, ``root/labels`` and the class names (``classes.txt`` or ``data.yaml``).

    Args:
      root: the folder.
      image_size: (height, width) every image is stretched to; None: the first image's size.
      channels: 1 (grey) or 3 (RGB).

    Returns:
      Images sorted by file stem, each with the boxes of its label file in line order.

    Raises:
      ValueError: a missing folder or class names, a label file without an image, a malformed line, a class
        index out of range, or coordinates outside [0, 1].
    """
    image_size = check_read_options(image_size, channels)
    if not os.path.isdir(os.path.join(root, "images")) and split_folders(root):
        raise ValueError(f"{root} is split into train/, val/, test/ folders: read it with read_yolo_splits.")
    return _read_yolo_split(root, _yolo_class_names(root), image_size, channels)


def read_yolo_splits(
    root: str, *, image_size: tuple[int, int] | None = None, channels: int = 3
) -> dict[str, DetectionData]:
    """Reads ``root/{train, validation or val, test}/{images, labels}`` with the class names at ``root``.

    Returns:
      split name ("train", "validation", "test") -> its data, for the splits present, all at one image size
      (``image_size``, or the first training image's).
    """
    image_size = check_read_options(image_size, channels)
    folders = split_folders(root)
    if not folders:
        raise ValueError(
            f"{root} has no train/images folder: expected root/train/{{images,labels}} (and val/, test/), "
            "or read a single folder with read_yolo."
        )
    class_names = _yolo_class_names(root)
    splits = {}
    for split, folder in folders.items():
        splits[split] = _read_yolo_split(folder, class_names, image_size, channels)
        image_size = image_size or splits[split].images.shape[1:3]
    return splits
