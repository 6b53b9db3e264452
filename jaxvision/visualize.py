"""Plots people would rather look at than read: learning curves and confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: dict[str, list[float]], path: str) -> None:
    """Saves loss and accuracy per epoch (train and validation) side by side as a PNG."""
    plt = _pyplot()
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(epochs, history[f"train_{metric}"], "o-", label="train")
        axis.plot(epochs, history[f"val_{metric}"], "s-", label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[num_classes, num_classes]``: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, path: str, *, class_names: Sequence[str] | None = None) -> None:
    """Saves a confusion matrix (from ``confusion_matrix``) as an annotated heat map PNG."""
    plt = _pyplot()
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
    figure.savefig(path, dpi=100)
    plt.close(figure)
