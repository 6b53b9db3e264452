"""Plots and the confusion matrix."""

import numpy as np
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from jaxvision import visualize


def test_confusion_matrix_matches_scikit_learn():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    np.testing.assert_array_equal(
        visualize.confusion_matrix(labels, predictions, 5), sklearn_confusion_matrix(labels, predictions, labels=range(5))
    )


def test_plots_are_written_as_png(tmp_path):
    history = {"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "train_accuracy": [0.6, 0.8], "val_accuracy": [0.55, 0.75]}
    visualize.plot_history(history, str(tmp_path / "history.png"))
    visualize.plot_confusion_matrix(np.eye(3, dtype=int) * 4, str(tmp_path / "confusion.png"), class_names=["a", "b", "c"])
    for name in ("history.png", "confusion.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_plot_ticks_whole_epochs(monkeypatch, tmp_path):
    # Three epochs: matplotlib's default locator would tick 1.25, 1.5, ...
    from jaxvision.visualize import history as history_module

    figures = []
    monkeypatch.setattr(history_module, "save_figure", lambda figure, path: figures.append(figure))
    history = {"train_loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6], "train_accuracy": [0.6, 0.8, 0.85],
               "val_accuracy": [0.55, 0.75, 0.8]}
    visualize.plot_history(history, str(tmp_path / "history.png"))
    for axis in figures[0].axes:
        low, high = axis.get_xlim()
        ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
