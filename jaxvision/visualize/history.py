"""The per-epoch history plot ``jaxvision train`` writes as ``history.png``."""

from __future__ import annotations

import numpy as np

from jaxvision.visualize.grids import pyplot, save_figure


def plot_history(history: dict[str, list[float]], path: str) -> None:
    """Saves loss and accuracy per epoch (train and validation) side by side as a PNG."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(history["train_loss"]) + 1)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(epochs, history[f"train_{metric}"], "o-", label="train")
        axis.plot(epochs, history[f"val_{metric}"], "s-", label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.25 ticks
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    save_figure(figure, path)
