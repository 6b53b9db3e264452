"""Image files for a trained run: find them under folders, decode them as the run's training data was.

``read_images(paths, run)`` gives the uint8 ``[N, H, W, C]`` array that ``run.predict`` takes; for many
files, ``iter_image_chunks`` decodes a chunk at a time, so 10,000 photos never sit in memory at once.
Decoding is ``jaxvision.image_decode.decode_image`` (Pillow) with the size, resize mode and channels
recorded in the run's ``run.json``, so an image file is seen exactly as an image-folder run saw it in
training; a colour photo given to a grey model is converted to grey (ITU-R 601-2 luma), as training does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from jaxvision.image_decode import IMAGE_EXTENSIONS, RESIZE_MODES, decode_image, is_image_file

DEFAULT_CHUNK_SIZE = 256
_KINDS = ", ".join(extension.lstrip(".").upper() for extension in IMAGE_EXTENSIONS)


def _visible(name: str) -> bool:
    # Hidden folders (.git, .ipynb_checkpoints) and zip tools' __MACOSX hold no one's photos.
    return not name.startswith(".") and name != "__MACOSX"


def _folder_images(folder: str) -> list[str]:
    found = []
    for directory, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if _visible(d))  # in place: os.walk descends in this order
        found.extend(os.path.join(directory, name) for name in sorted(names)
                     if is_image_file(os.path.join(directory, name)))
    return found


def list_images(paths: Sequence[str]) -> list[str]:
    """The image files named by ``paths``: files as given, folders walked (sorted, subfolders too).

    Args:
      paths: image files and folders of them, e.g. ``["photo.jpg", "holiday/"]``.

    Returns:
      The files in order: each path in turn, a folder's images sorted by path.

    Raises:
      ValueError: one line, for a path that does not exist, a file that is not an image (by its name and first
        bytes), or a folder without images.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("No images given: expected image files or folders of them, e.g. photo.png or photos/.")
    found: list[str] = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            images = _folder_images(path)
            if not images:
                raise ValueError(f"Folder {path} has no images: expected {_KINDS} files in it (or in its subfolders). "
                                 "Pass a folder of images, or the files themselves.")
            found.extend(images)
        elif os.path.isfile(path):
            if not is_image_file(path):
                raise ValueError(f"{path} is not an image: expected a {_KINDS} file (by its name or first bytes). "
                                 "Pass image files or folders of them.")
            found.append(path)
        else:
            raise ValueError(f"Image {path} does not exist: expected an image file or a folder of images. Check the path.")
    return found


def _metadata(run: Any) -> Mapping[str, Any]:
    return run.metadata if hasattr(run, "metadata") else run


def decode_options(run: Any) -> dict[str, Any]:
    """``decode_image``'s ``image_size``, ``resize`` and ``channels`` for a run, from its ``run.json``.

    Args:
      run: a ``Run`` (``jaxvision.load_run``) or its ``run.json`` as a dict: ``input_shape`` gives the size and channels,
        ``preprocessing["resize"]`` the resize mode of an image-folder run. TFDS runs record "none" (their
        images all had the model's size) and get "stretch", which is what ``load_splits(image_size=...)`` does.

    Returns:
      ``{"image_size": (height, width), "resize": mode, "channels": 1 or 3}``.
    """
    metadata = _metadata(run)
    height, width, channels = (int(size) for size in metadata["input_shape"])
    resize = (metadata.get("preprocessing") or {}).get("resize", "stretch")
    if resize not in RESIZE_MODES:
        resize = "stretch"
    if channels not in (1, 3):
        raise ValueError(f"Cannot decode image files for a run with {channels} input channels: image files decode "
                         "to 1 (grey) or 3 (RGB) channels. Pass arrays of the run's input shape to Run.predict.")
    return {"image_size": (height, width), "resize": resize, "channels": channels}


def _decode(path: str, options: Mapping[str, Any]) -> np.ndarray | None:
    try:
        return decode_image(path, **options)
    except Exception:  # noqa: BLE001 - any failure makes the file bad; the caller names it
        return None


def _decode_error(path: str, options: Mapping[str, Any]) -> ValueError:
    try:
        decode_image(path, **options)
        reason = "it could not be decoded"
    except Exception as error:  # noqa: BLE001 - the message is the point
        reason = f"{type(error).__name__}: {' '.join(str(error).split()) or 'unreadable'}"
    return ValueError(f"Cannot decode image {path} ({reason}): expected a {_KINDS} file. Replace or remove it.")


def iter_image_chunks(
    paths: Sequence[str],
    run: Any,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    skip_bad_images: bool = False,
    workers: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decodes ``paths`` a chunk at a time, in a thread pool (Pillow releases the GIL while it decodes).

    Args:
      paths: image files, e.g. from ``list_images``.
      run: the ``Run``, or its ``run.json`` as a dict (see ``decode_options``).
      chunk_size: files decoded per chunk.
      skip_bad_images: leave out files that cannot be decoded instead of raising.
      workers: decoding threads (default: two per core, at most 16).

    Yields:
      ``(indices, images)``: int64 ``[n]`` positions in ``paths`` of the images decoded, and their uint8
      ``[n, height, width, channels]``; ``n`` is ``chunk_size`` except for the last chunk or skipped files.

    Raises:
      ValueError: one line naming the first file of a chunk that cannot be decoded (without
        ``skip_bad_images``).
    """
    if chunk_size < 1:
        raise ValueError(f"Invalid chunk_size={chunk_size}: expected a positive integer, e.g. {DEFAULT_CHUNK_SIZE}.")
    options = decode_options(run)
    height, width = options["image_size"]
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), chunk_size):
            chunk = paths[start:start + chunk_size]
            decoded = list(pool.map(lambda path: _decode(path, options), chunk))
            ok = [image is not None for image in decoded]
            if not all(ok) and not skip_bad_images:
                raise _decode_error(chunk[ok.index(False)], options)
            images = [image for image in decoded if image is not None]
            indices = np.asarray([start + i for i, good in enumerate(ok) if good], np.int64)
            if images:
                yield indices, np.stack(images)
            else:
                yield indices, np.zeros((0, height, width, options["channels"]), np.uint8)


def read_images(paths: Sequence[str], run: Any) -> np.ndarray:
    """Every file of ``paths`` decoded as the run's training images were: uint8 ``[N, height, width, channels]``.

    Args:
      paths: image files, e.g. from ``list_images``.
      run: the ``Run`` (``jaxvision.load_run``), or its ``run.json`` as a dict.

    Raises:
      ValueError: one line naming a file that cannot be decoded.
    """
    parts = [images for _, images in iter_image_chunks(list(paths), run)]
    if not parts:
        options = decode_options(run)
        return np.zeros((0, *options["image_size"], options["channels"]), np.uint8)
    return np.concatenate(parts)


__all__ = ["DEFAULT_CHUNK_SIZE", "decode_options", "iter_image_chunks", "list_images", "read_images"]
