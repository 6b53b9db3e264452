"""Learning curves of a run folder, from its ``metrics.jsonl`` (or, without one, its ``history.json``)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from jaxvision import jsonio, training_log
from jaxvision.visualize.grids import pyplot, save_figure

HISTORY_FILE = "history.json"
_EPOCH_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def _floats(records: list[dict[str, Any]], key: str) -> np.ndarray:
    # Strict JSON logs hold a non-finite value as null: back to NaN, which matplotlib leaves a gap for.
    return np.asarray([np.nan if record.get(key) is None else record[key] for record in records], np.float64)


def learning_curves(run_dir: str) -> dict[str, np.ndarray]:
    """The curves of a run, as float64 arrays.

    Returns:
      ``epoch`` (1, 2, ...) with ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy`` at the
      end of each epoch, and, from ``metrics.jsonl``'s step records (every ``--log-every`` steps),
      ``step``, ``step_epoch`` (the step in epochs, e.g. 0.5 halfway through the first; the step
      itself where no epoch has ended yet), ``step_loss`` and ``step_accuracy`` (means over the
      steps since the record before).

    Raises:
      ValueError: the folder has neither ``metrics.jsonl`` nor ``history.json``.
    """
    if os.path.isfile(os.path.join(run_dir, training_log.METRICS_FILE)):
        records = training_log.read_metrics(run_dir)
        epochs = [record for record in records if record.get("kind") == "epoch"]
        steps = [record for record in records if record.get("kind") == "step"]
        curves = {"epoch": _floats(epochs, "epoch"), **{key: _floats(epochs, key) for key in _EPOCH_KEYS}}
        step = _floats(steps, "step")
        # Epoch e ends at step e * steps_per_epoch; the last epoch record gives the ratio.
        steps_per_epoch = epochs[-1]["step"] / epochs[-1]["epoch"] if epochs else None
        curves.update(step=step, step_epoch=step / steps_per_epoch if steps_per_epoch else step,
                      step_loss=_floats(steps, "loss"), step_accuracy=_floats(steps, "accuracy"))
        return curves
    history_path = os.path.join(run_dir, HISTORY_FILE)
    if not os.path.isfile(history_path):
        raise ValueError(f"{run_dir} has no {training_log.METRICS_FILE} nor {HISTORY_FILE}: expected the "
                         "--output-dir of a `jaxvision train` run")
    history = jsonio.read_json(history_path)
    count = len(history.get("train_loss", []))
    curves = {"epoch": np.arange(1, count + 1, dtype=np.float64)}
    for key in _EPOCH_KEYS:
        curves[key] = np.asarray([np.nan if value is None else value for value in history.get(key, [np.nan] * count)],
                                 np.float64)
    empty = np.zeros(0, np.float64)
    curves.update(step=empty, step_epoch=empty, step_loss=empty, step_accuracy=empty)
    return curves


def plot_learning_curves(run_dir: str, path: str, *, title: str | None = None) -> dict[str, np.ndarray]:
    """Saves loss and accuracy of a run (train per logged step and per epoch, validation per epoch) as a PNG.

    Args:
      run_dir: a run folder (``jaxvision train --output-dir``).
      path: the PNG to write.
      title: the figure's title; None for the run folder's name.

    Returns:
      The curves plotted (see ``learning_curves``).
    """
    from matplotlib.ticker import MaxNLocator

    curves = learning_curves(run_dir)
    if not len(curves["epoch"]) and not len(curves["step"]):
        raise ValueError(f"{run_dir} has no logged steps or epochs yet: expected a run that trained at least "
                         "--log-every steps")
    in_epochs = len(curves["epoch"]) > 0
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        if len(curves["step"]):
            axis.plot(curves["step_epoch"], curves[f"step_{metric}"], "-", color="tab:blue", alpha=0.45, linewidth=1,
                      label="train (logged steps)")
        if in_epochs:
            axis.plot(curves["epoch"], curves[f"train_{metric}"], "o-", color="tab:blue", label="train (epoch mean)")
            axis.plot(curves["epoch"], curves[f"val_{metric}"], "s-", color="tab:orange", label="validation")
        axis.set_xlabel("epoch" if in_epochs else "step")
        axis.set_ylabel(metric)
        if in_epochs:
            # From 0 to the last whole epoch: MaxNLocator falls back to fractional ticks when fewer than two
            # integers are in view, as in a one-epoch run whose first step record sits at 0.06.
            last = math.ceil(np.nanmax(np.concatenate([curves["epoch"], curves["step_epoch"]])))
            axis.set_xlim(-0.03 * last, 1.03 * last)  # a margin, so the last epoch's markers are not cut in half
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title if title is not None else os.path.basename(os.path.abspath(run_dir)))
    figure.tight_layout()
    save_figure(figure, path)
    return curves
