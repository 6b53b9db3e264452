"""The training loop: epochs of ``train_step``, validation, early stopping, history, test evaluation.

The steps are ``jaxvision.train_step`` and ``eval_step`` compiled with the network's XLA options
(``step_compilation.steps_for``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxvision.step_compilation import steps_for
from jaxvision.train import Batch, Metrics, TrainState, eval_step

# Live loss/accuracy on the progress bar costs a host sync; do it every this many steps.
_PROGRESS_EVERY = 10


class BatchSource(Protocol):
    """What ``fit`` needs of a dataset (``jaxvision.data.Splits`` is one)."""

    steps_per_epoch: int

    def train_batches(self, epoch: int) -> Iterable[Batch]: ...

    def eval_batches(self, split: str) -> Iterable[Batch]: ...


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
      state: the state with the best validation loss (the last one if early stopping is off).
      history: per-epoch lists: train_loss, train_accuracy, val_loss, val_accuracy, seconds.
      best_epoch: 0-based epoch whose parameters ``state`` holds.
      stopped_early: whether patience ran out before ``epochs``.
      test: test loss/accuracy/count of ``state``, or None if not evaluated.
      train_images_per_second: training images over time spent in training epochs (compile included).
    """

    state: TrainState
    history: dict[str, list[float]]
    best_epoch: int
    stopped_early: bool
    test: dict[str, float] | None
    train_images_per_second: float


def check_epochs_and_patience(epochs: int, patience: int | None) -> None:
    """Raises ValueError, saying how to fix it, for epochs < 1 or patience < 1 (None is allowed)."""
    if epochs < 1:
        raise ValueError(f"Invalid epochs={epochs}: expected a positive integer, e.g. 10.")
    if patience is not None and patience < 1:
        raise ValueError(f"Invalid patience={patience}: expected a positive integer, or None to disable early stopping.")


def evaluate(
    state: TrainState, batches: Iterable[Batch], *, step: Callable[[TrainState, Batch], Metrics] = eval_step
) -> dict[str, float]:
    """Mean loss and accuracy over every real (mask = 1) example of ``batches``.

    Returns:
      {"loss", "accuracy", "count"} as Python floats.
    """
    sums = None
    for batch in batches:
        metrics = step(state, batch)
        sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    if sums is None:
        raise ValueError("Cannot evaluate on an empty split: it yielded no batches.")
    sums = jax.device_get(sums)
    count = float(sums["count"])
    return {"loss": float(sums["loss_sum"]) / count, "accuracy": float(sums["correct"]) / count, "count": count}


def fit(
    state: TrainState,
    data: BatchSource,
    *,
    epochs: int,
    key: jax.Array,
    patience: int | None = None,
    min_delta: float = 0.0,
    evaluate_test: bool = True,
    progress: bool = True,
) -> FitResult:
    """Trains for ``epochs`` epochs, validating after each one.

    Args:
      state: the initial TrainState.
      data: train/validation/test batches, e.g. ``jaxvision.data.load_splits(...)``.
      epochs: number of passes over the training split.
      key: the run's base PRNG key; step s uses ``fold_in(key, s)``.
      patience: stop after this many epochs without a validation-loss improvement of more than
        ``min_delta``, and return the best epoch's state. None trains all epochs and keeps the last.
      min_delta: smallest decrease of validation loss that counts as an improvement.
      evaluate_test: evaluate the returned state on the test split.
      progress: show a progress bar with live loss and accuracy.

    Returns:
      A FitResult.
    """
    check_epochs_and_patience(epochs, patience)
    train_step, eval_step_fn = steps_for(state)
    history: dict[str, list[float]] = {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")}
    best_state, best_epoch, best_loss = state, -1, np.inf
    stopped_early = False
    train_seconds = train_images = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        step_metrics: list[Metrics] = []
        bar = tqdm(total=data.steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False, unit="step")
        for batch in data.train_batches(epoch):
            state, metrics = train_step(state, batch, key)
            step_metrics.append(metrics)
            train_images += len(batch.mask)
            bar.update(1)
            if len(step_metrics) % _PROGRESS_EVERY == 0:
                recent = jax.device_get(step_metrics[-_PROGRESS_EVERY:])
                bar.set_postfix(loss=f"{np.mean([m['loss'] for m in recent]):.4f}", acc=f"{np.mean([m['accuracy'] for m in recent]):.4f}")
        bar.close()
        epoch_metrics = jax.device_get(jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *step_metrics))
        train_seconds += time.perf_counter() - start
        validation = evaluate(state, data.eval_batches("validation"), step=eval_step_fn)
        history["train_loss"].append(float(epoch_metrics["loss"]))
        history["train_accuracy"].append(float(epoch_metrics["accuracy"]))
        history["val_loss"].append(validation["loss"])
        history["val_accuracy"].append(validation["accuracy"])
        history["seconds"].append(time.perf_counter() - start)
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}/{epochs}: train loss {history['train_loss'][-1]:.4f} acc {history['train_accuracy'][-1]:.4f}"
                f" | val loss {validation['loss']:.4f} acc {validation['accuracy']:.4f} | {history['seconds'][-1]:.1f}s"
            )
        if patience is None:
            best_state, best_epoch = state, epoch
            continue
        if validation["loss"] < best_loss - min_delta:
            best_state, best_epoch, best_loss = state, epoch, validation["loss"]
        elif epoch - best_epoch >= patience:
            stopped_early = True
            if progress:
                tqdm.write(f"early stopping: no validation improvement for {patience} epochs; restoring epoch {best_epoch + 1}")
            break
    test = evaluate(best_state, data.eval_batches("test"), step=eval_step_fn) if evaluate_test else None
    return FitResult(
        state=best_state,
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        test=test,
        train_images_per_second=train_images / max(train_seconds, 1e-9),
    )
