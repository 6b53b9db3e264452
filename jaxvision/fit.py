"""The one epoch loop: epochs of train steps, validation, early stopping, history, test evaluation.

``run_epochs`` is shared by ``fit`` (one run) and ``jaxvision.ensemble.fit_population`` (N runs at
once): both hand it an ``EpochRunner`` that trains one epoch and validates, and the loop keeps the
history, the best state of every member and the per-member early stopping. A run is a population of
one, so the two give the same results for the same data order and keys.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxvision.batch import Batch, BatchAugment, Metrics
from jaxvision.losses import Loss
from jaxvision.train import EvalStep, TrainState, eval_step, make_eval_step, make_train_step

# Live loss/accuracy on the progress bar costs a host sync; do it every this many steps.
PROGRESS_EVERY = 10
HISTORY_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


class BatchSource(Protocol):
    """What ``fit`` needs of a dataset (``jaxvision.data.Splits`` is one)."""

    steps_per_epoch: int

    def train_batches(self, epoch: int) -> Iterable[Batch]: ...

    def eval_batches(self, split: str) -> Iterable[Batch]: ...


class EpochRunner(Protocol):
    """One or N runs, as ``run_epochs`` drives them. Every array is per member: ``[size]``."""

    size: int

    def train_epoch(self, epoch: int, epochs: int, progress: bool) -> dict[str, np.ndarray]:
        """Trains every active member one epoch; returns its mean train "loss" and "accuracy"."""

    def validate(self) -> dict[str, Any]:
        """Validation "loss" and "accuracy" of every member (and anything else to report)."""

    def state(self) -> Any:
        """The current state of every member."""

    def select(self, improved: np.ndarray, current: Any, best: Any) -> Any:
        """``current`` for the members where ``improved``, else ``best``."""

    def freeze(self, active: np.ndarray) -> None:
        """From now on only the ``active`` members train."""

    def epoch_line(self, epoch: int, epochs: int, train: dict[str, np.ndarray], validation: dict[str, Any],
                   active: np.ndarray, seconds: float) -> str:
        """The one line printed after each epoch."""


@dataclasses.dataclass
class EpochsResult:
    """What ``run_epochs`` returns; every per-member array is ``[size]``.

    Attributes:
      state: each member's state at its best validation loss (its last if early stopping is off).
      history: per-epoch ``[epochs_run, size]`` arrays of HISTORY_KEYS (seconds: ``[epochs_run]``).
      best_epoch: 0-based epoch whose state each member holds.
      stopped_epoch: epoch after which each member stopped early, -1 if it trained to the end.
      train_seconds: wall time of the training epochs (compilation included), validation excluded.
    """

    state: Any
    history: dict[str, np.ndarray]
    best_epoch: np.ndarray
    stopped_epoch: np.ndarray
    train_seconds: float


def check_epochs_and_patience(epochs: int, patience: int | None) -> None:
    """Raises ValueError, saying how to fix it, for epochs < 1 or patience < 1 (None is allowed)."""
    if epochs < 1:
        raise ValueError(f"Invalid epochs={epochs}: expected a positive integer, e.g. 10.")
    if patience is not None and patience < 1:
        raise ValueError(f"Invalid patience={patience}: expected a positive integer, or None to disable early stopping.")


def run_epochs(runner: EpochRunner, *, epochs: int, patience: int | None = None, min_delta: float = 0.0,
               progress: bool = True) -> EpochsResult:
    """Trains ``runner``'s members for up to ``epochs`` epochs, validating after each.

    With ``patience``, a member whose validation loss has not improved by more than ``min_delta`` for
    ``patience`` epochs stops (``runner.freeze``) and keeps its best epoch's state; the loop ends when
    every member has stopped. Without it, every member trains every epoch and keeps its last state.
    """
    check_epochs_and_patience(epochs, patience)
    size = runner.size
    history: dict[str, list] = {key: [] for key in HISTORY_KEYS}
    best_state = runner.state()
    best_loss = np.full(size, np.inf)
    best_epoch = np.full(size, -1)
    stopped_epoch = np.full(size, -1)
    active = np.ones(size, bool)
    train_seconds = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        train = runner.train_epoch(epoch, epochs, progress)
        train_seconds += time.perf_counter() - start
        validation = runner.validate()
        seconds = time.perf_counter() - start
        history["train_loss"].append(np.asarray(train["loss"], np.float64))
        history["train_accuracy"].append(np.asarray(train["accuracy"], np.float64))
        history["val_loss"].append(np.asarray(validation["loss"], np.float64))
        history["val_accuracy"].append(np.asarray(validation["accuracy"], np.float64))
        history["seconds"].append(seconds)
        if patience is None:
            best_state = runner.state()
            best_epoch[:] = epoch
        else:
            val_loss = np.asarray(validation["loss"], np.float64)
            improved = active & (val_loss < best_loss - min_delta)
            best_state = runner.select(improved, runner.state(), best_state)
            best_loss = np.where(improved, val_loss, best_loss)
            best_epoch = np.where(improved, epoch, best_epoch)
            stop = active & ~improved & (epoch - best_epoch >= patience)
            stopped_epoch = np.where(stop, epoch, stopped_epoch)
            active = active & ~stop
            if stop.any():
                runner.freeze(active)
        if progress:
            tqdm.write(runner.epoch_line(epoch, epochs, train, validation, active, seconds))
            if patience is not None and size == 1 and not active.any():
                tqdm.write(f"early stopping: no validation improvement for {patience} epochs; restoring epoch {best_epoch[0] + 1}")
        if not active.any():
            break
    return EpochsResult(
        state=best_state,
        history={key: np.asarray(values) for key, values in history.items()},
        best_epoch=best_epoch,
        stopped_epoch=stopped_epoch,
        train_seconds=train_seconds,
    )


def evaluate(
    state: TrainState, batches: Iterable[Batch], *, step: Callable[[TrainState, Batch], Metrics] = eval_step
) -> dict[str, float]:
    """Mean loss and accuracy over every real (mask = 1) example of ``batches``.

    Args:
      state: the state to evaluate (eval mode).
      batches: e.g. ``splits.eval_batches("test")``.
      step: an eval step, e.g. ``make_eval_step(loss="l2")``; the default is cross-entropy.

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


class _SingleRun:
    """One TrainState trained on ``data.train_batches``: an EpochRunner of size 1."""

    size = 1

    def __init__(self, state: TrainState, data: BatchSource, key: jax.Array, train_step, eval_step_fn: EvalStep):
        self._state, self._data, self._key = state, data, key
        self._train_step, self._eval_step = train_step, eval_step_fn
        self.images = 0

    def train_epoch(self, epoch: int, epochs: int, progress: bool) -> dict[str, np.ndarray]:
        step_metrics: list[Metrics] = []
        bar = tqdm(total=self._data.steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False, unit="step")
        for batch in self._data.train_batches(epoch):
            self._state, metrics = self._train_step(self._state, batch, self._key)
            step_metrics.append(metrics)
            self.images += len(batch.mask)
            bar.update(1)
            if progress and len(step_metrics) % PROGRESS_EVERY == 0:
                recent = jax.device_get(step_metrics[-PROGRESS_EVERY:])
                bar.set_postfix(loss=f"{np.mean([m['loss'] for m in recent]):.4f}",
                                acc=f"{np.mean([m['accuracy'] for m in recent]):.4f}")
        bar.close()
        if not step_metrics:
            raise ValueError("The training split yielded no batches: use a batch size no larger than the training set.")
        means = jax.device_get(jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *step_metrics))
        return {name: np.asarray([value]) for name, value in means.items()}

    def validate(self) -> dict[str, Any]:
        result = evaluate(self._state, self._data.eval_batches("validation"), step=self._eval_step)
        return {"loss": np.asarray([result["loss"]]), "accuracy": np.asarray([result["accuracy"]])}

    def state(self) -> TrainState:
        return self._state

    def select(self, improved: np.ndarray, current: TrainState, best: TrainState) -> TrainState:
        return current if improved[0] else best

    def freeze(self, active: np.ndarray) -> None:
        del active  # the loop ends: a single run has no one else to train

    def epoch_line(self, epoch, epochs, train, validation, active, seconds) -> str:
        return (f"epoch {epoch + 1}/{epochs}: train loss {train['loss'][0]:.4f} acc {train['accuracy'][0]:.4f}"
                f" | val loss {validation['loss'][0]:.4f} acc {validation['accuracy'][0]:.4f} | {seconds:.1f}s")


def fit(
    state: TrainState,
    data: BatchSource,
    *,
    epochs: int,
    key: jax.Array,
    loss: str | Loss = "cross_entropy",
    augment: BatchAugment | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    evaluate_test: bool = True,
    progress: bool = True,
    compiler_options: dict[str, Any] | None = None,
) -> FitResult:
    """Trains for ``epochs`` epochs, validating after each one.

    Args:
      state: the initial TrainState.
      data: train/validation/test batches, e.g. ``jaxvision.data.load_splits(...)``.
      epochs: number of passes over the training split.
      key: the run's base PRNG key; step s uses ``fold_in(key, s)``.
      loss: the training and evaluation loss, a name in ``jaxvision.losses.LOSSES`` or a function.
      augment: on-device augmentation ``(key, batch) -> batch`` inside the train step, or None.
      patience: stop after this many epochs without a validation-loss improvement of more than
        ``min_delta``, and return the best epoch's state. None trains all epochs and keeps the last.
      min_delta: smallest decrease of validation loss that counts as an improvement.
      evaluate_test: evaluate the returned state on the test split.
      progress: show a progress bar with live loss and accuracy.
      compiler_options: XLA options for the steps; None lets ``jaxvision.backends`` choose.

    Returns:
      A FitResult.
    """
    check_epochs_and_patience(epochs, patience)
    train_step = make_train_step(loss=loss, augment=augment, compiler_options=compiler_options)
    eval_step_fn = make_eval_step(loss=loss, compiler_options=compiler_options)
    runner = _SingleRun(state, data, key, train_step, eval_step_fn)
    result = run_epochs(runner, epochs=epochs, patience=patience, min_delta=min_delta, progress=progress)
    test = evaluate(result.state, data.eval_batches("test"), step=eval_step_fn) if evaluate_test else None
    history = {name: [float(np.ravel(value)[0]) for value in values] for name, values in result.history.items()}
    return FitResult(
        state=result.state,
        history=history,
        best_epoch=int(result.best_epoch[0]),
        stopped_early=bool(result.stopped_epoch[0] >= 0),
        test=test,
        train_images_per_second=runner.images / max(result.train_seconds, 1e-9),
    )
