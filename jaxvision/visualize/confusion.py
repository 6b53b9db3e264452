"""The confusion matrix: counts of (true class, predicted class), and its heat map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxvision.visualize.grids import pyplot, save_figure


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[num_classes, num_classes]``: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, path: str, *, class_names: Sequence[str] | None = None) -> None:
    """Saves a confusion matrix (from ``confusion_matrix``) as an annotated heat map PNG."""
    plt = pyplot()
    num_classes = matrix.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    figure, axis = plt.subplots(figsize=(1 + 0.6 * num_classes, 1 + 0.6 * num_classes))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(num_classes), names, rotation=90)
    axis.set_yticks(range(num_classes), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=8, color="white" if count > threshold else "black")
    figure.tight_layout()
    save_figure(figure, path)
