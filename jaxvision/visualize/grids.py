"""Image grids and the figure plumbing every picture shares: pyplot on Agg, pixels in [0, 1], atomic PNGs."""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: pictures go to files and never need a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: str, *, dpi: int = 100) -> None:
    """Writes ``figure`` to ``path`` as a PNG and closes it.

    The PNG goes to a temporary name beside ``path`` and is renamed over it, so a failure or a kill
    leaves the old file or none, never half a picture. The folder is created if needed.
    """
    plt = pyplot()
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        os.makedirs(directory, exist_ok=True)
        # format= because the temporary name's extension is not the picture's.
        figure.savefig(temporary, dpi=dpi, format="png")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    finally:
        plt.close(figure)


def as_unit_images(images: Any) -> np.ndarray:
    """``images`` (uint8 0-255 or float in [0, 1], ``[N, H, W, C]``) as float32 in [0, 1].

    Raises:
      ValueError: another rank, dtype or value range.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"Invalid images of shape {images.shape}: expected [N, height, width, channels]; "
                         "add a leading axis for one image (images[None])")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"Invalid images of dtype {images.dtype}: expected uint8 (0-255) or float in [0, 1]")
    images = images.astype(np.float32)
    if images.size and not (np.nanmin(images) >= 0.0 and np.nanmax(images) <= 1.0):
        raise ValueError(f"Invalid float images with values in [{np.nanmin(images):.4g}, {np.nanmax(images):.4g}]: "
                         "expected [0, 1]; pass uint8 images (0-255) as they are, or divide by 255")
    return images


def min_max_scale(images: np.ndarray) -> np.ndarray:
    """Each of ``images`` (``[N, ...]``) scaled on its own to [0, 1]; a constant one becomes 0.5.

    Weights and activations have no natural range, so each is stretched over the full grey scale
    (as Krizhevsky et al. show AlexNet's filters); only patterns within one item compare.
    """
    images = np.asarray(images, np.float32)
    axes = tuple(range(1, images.ndim))
    low = images.min(axis=axes, keepdims=True)
    span = images.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (images - low) / np.where(span > 0, span, 1.0), 0.5).astype(np.float32)


def display_channels(images: np.ndarray) -> np.ndarray:
    """``[N, H, W, C]`` as something imshow shows: RGB for 3 channels, else ``[N, H, W]`` grey.

    Grey is the one channel, or the mean of the channels for any count but 1 and 3.
    """
    if images.shape[-1] == 3:
        return images
    return images[..., 0] if images.shape[-1] == 1 else images.mean(axis=-1)


def tile(images: np.ndarray, *, columns: int, padding: int = 1, fill: float = 1.0) -> np.ndarray:
    """Lays ``[N, h, w]`` or ``[N, h, w, C]`` out as one image, row by row, ``padding`` pixels of ``fill`` between.

    Returns:
      ``[rows * (h + padding) - padding, columns' * (w + padding) - padding(, C)]`` with
      ``rows = ceil(N / columns')`` and ``columns' = min(columns, N)``; cells past N are ``fill``.
    """
    images = np.asarray(images, np.float32)
    if len(images) == 0:
        raise ValueError("Invalid images: expected at least one image to tile, got none")
    count, height, width = images.shape[:3]
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    grid = np.full((rows * (height + padding) - padding, columns * (width + padding) - padding, *images.shape[3:]),
                   fill, np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = row * (height + padding), column * (width + padding)
        grid[top:top + height, left:left + width] = image
    return grid


def plot_grid(images: np.ndarray, path: str, *, titles: Sequence[str] | None = None, columns: int = 8,
              title: str | None = None, cmap: str = "gray", scale: float = 1.3) -> None:
    """Saves ``images`` as a grid of panels, each with its own small title, as a PNG.

    Args:
      images: ``[N, H, W, C]`` float in [0, 1]; 3 channels are RGB, others grey (see ``display_channels``).
      path: the PNG to write.
      titles: one per image, or None.
      columns: panels per row (fewer when there are fewer images).
      title: the figure's title.
      cmap: colour map for grey panels.
      scale: inches per panel.
    """
    images = display_channels(np.asarray(images, np.float32))
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"Invalid titles: {len(titles)} for {len(images)} images; expected one title per image")
    plt = pyplot()
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    title_room = 0.35 if titles is not None else 0.0
    figure, axes = plt.subplots(rows, columns, figsize=(scale * columns, (scale + title_room) * rows + 0.6),
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            # vmin/vmax fixed: imshow would otherwise stretch each grey panel again.
            axis.imshow(images[index], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            if titles is not None:
                axis.set_title(titles[index], fontsize=8)
    if count == 0:
        axes.flat[0].text(0.5, 0.5, "no images", ha="center", va="center")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)
