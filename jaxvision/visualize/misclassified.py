"""A grid of misclassified images, each titled "true -> predicted (probability)"."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxvision.visualize.grids import as_unit_images, plot_grid


def misclassified_titles(true_names: Sequence[str], predicted_names: Sequence[str],
                         probabilities: Sequence[float]) -> list[str]:
    """``"true -> predicted (p)"`` for each image, p with two decimals."""
    return [f"{true} -> {predicted} ({float(p):.2f})"
            for true, predicted, p in zip(true_names, predicted_names, probabilities)]


def plot_misclassified(images: np.ndarray, true_names: Sequence[str], predicted_names: Sequence[str],
                       probabilities: Sequence[float], path: str, *, columns: int = 8,
                       title: str | None = "misclassified: true -> predicted (probability)") -> list[str]:
    """Saves misclassified images as a titled grid PNG, in the order given (sort them first, e.g. most confident).

    Args:
      images: ``[N, H, W, C]`` uint8 0-255 or float in [0, 1], as read from files (not normalised).
      true_names: the true class of each image.
      predicted_names: the predicted class of each image.
      probabilities: the probability the model gave its prediction, per image.
      path: the PNG to write. With N = 0 it says that there are none.
      columns: panels per row.
      title: the figure's title.

    Returns:
      The panel titles, ``"true -> predicted (p)"``.

    Raises:
      ValueError: images of another shape or range, or name and probability lists of another length.
    """
    pixels = as_unit_images(images)
    lengths = {"true_names": len(true_names), "predicted_names": len(predicted_names),
               "probabilities": len(probabilities)}
    wrong = {name: length for name, length in lengths.items() if length != len(pixels)}
    if wrong:
        raise ValueError(f"Invalid {', '.join(f'{name} of length {length}' for name, length in wrong.items())}: "
                         f"expected one per image ({len(pixels)})")
    titles = misclassified_titles(true_names, predicted_names, probabilities)
    plot_grid(pixels, path, titles=titles, columns=columns, title=title, scale=1.6)
    return titles
