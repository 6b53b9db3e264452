"""The one epoch loop: epochs of train steps, validation, early stopping, history, test evaluation.

``run_epochs`` is shared by ``fit`` (one run) and ``jaxvision.ensemble.fit_population`` (N runs at
once): both hand it an ``EpochRunner`` that trains one epoch and validates, and the loop keeps the
history, the best state of every member and the per-member early stopping. A run is a population of
one, so the two give the same results for the same data order and keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxvision import jsonio
from jaxvision.batch import Batch, BatchAugment, Metrics
from jaxvision.interrupts import deferred_interrupts
from jaxvision.label_checks import check_labels, check_outputs, model_outputs
from jaxvision.losses import Loss
from jaxvision.train import EvalStep, Score, TrainState, eval_step, make_eval_step, make_train_step, with_ema

# Live loss/accuracy on the progress bar costs a host sync; do it every this many steps.
PROGRESS_EVERY = 10
HISTORY_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


class BatchSource(Protocol):
    """What ``fit`` needs of a dataset (``jaxvision.data.Splits`` is one).

    ``train_batches(epoch, start=s)`` starts the epoch's fixed order at its step ``s`` (for resuming
    mid-epoch); a source whose ``train_batches`` takes only ``epoch`` has its first ``s`` batches
    skipped instead.
    """

    steps_per_epoch: int

    def train_batches(self, epoch: int) -> Iterable[Batch]: ...

    def eval_batches(self, split: str) -> Iterable[Batch]: ...


class EpochRunner(Protocol):
    """One or N runs, as ``run_epochs`` drives them. Every array is per member: ``[size]``."""

    size: int
    steps_per_epoch: int

    def steps(self, epoch: int, start: int) -> Iterator[tuple[Metrics, int]]:
        """Runs steps ``start, start + 1, ...`` of ``epoch``; yields each one's (metrics, images)."""

    def validate(self) -> dict[str, Any]:
        """Validation "loss" and "accuracy" of every member (and anything else to report)."""

    def state(self) -> Any:
        """The current state of every member."""

    def select(self, improved: np.ndarray, current: Any, best: Any) -> Any:
        """``current`` for the members where ``improved``, else ``best``."""

    def restore_members(self, members: np.ndarray, state: Any) -> None:
        """Puts ``state``'s values back into the ``members`` (a [size] mask) of the current state."""

    def freeze(self, active: np.ndarray) -> None:
        """From now on only the ``active`` members train."""

    def epoch_line(self, epoch: int, epochs: int, train: dict[str, np.ndarray], validation: dict[str, Any],
                   active: np.ndarray, seconds: float) -> str:
        """The one line printed after each epoch."""


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped training after a step, and the run was saved.

    Attributes:
      epoch: 0-based epoch in progress.
      step: steps trained.
      signal: the signal's number.
      checkpoint: the folder of the checkpoint just saved.
    """

    def __init__(self, epoch: int, step: int, signal: int, checkpoint: str):
        super().__init__(f"interrupted at epoch {epoch + 1}, step {step}; saved {checkpoint}")
        self.epoch, self.step, self.signal, self.checkpoint = epoch, step, signal, checkpoint


class TrainingDiverged(FloatingPointError):
    """A non-finite loss or gradient stopped a run; nothing non-finite was saved.

    Attributes:
      epoch: 0-based epoch of the first non-finite step.
      step: that step's number (1-based: steps trained including it).
      checkpoint: the latest checkpoint folder (all saved before the divergence), or None.
      state: the last state whose steps were all finite.
    """

    def __init__(self, epoch: int, step: int, checkpoint: str | None, state: Any):
        saved = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was saved"
        super().__init__(
            f"training diverged at epoch {epoch + 1}, step {step}: the loss or a gradient is NaN or infinite; {saved}; "
            "lower the learning rate (e.g. by 10x) and start again"
        )
        self.epoch, self.step, self.checkpoint, self.state = epoch, step, checkpoint, state


@dataclasses.dataclass
class LoopState:
    """Where the epoch loop stands, besides the train state: what a checkpoint needs to resume it.

    Every per-member list has ``size`` entries; ``to_json``/``from_json`` make it strict JSON.

    Attributes:
      epoch: the 0-based epoch in progress (``epochs`` once training is over).
      step_in_epoch: steps of ``epoch`` done.
      history: per finished epoch, HISTORY_KEYS -> list of per-member lists (seconds: floats).
      epoch_metrics: the current epoch's step metrics so far: "loss"/"accuracy" -> per step, per member.
      best_loss, best_epoch, stopped_epoch, active: early stopping, per member.
      diverged_step: the step at which each member's loss or gradient went non-finite, or -1.
      train_seconds: wall time of the training steps so far (compilation included).
      images: training images seen so far.
      first_data_epoch: the data order's epoch of the loop's epoch 0 (a state that had trained k whole
        epochs goes on with epoch k's order).
    """

    size: int
    epoch: int = 0
    step_in_epoch: int = 0
    history: dict[str, list] = dataclasses.field(default_factory=lambda: {key: [] for key in HISTORY_KEYS})
    epoch_metrics: dict[str, list] = dataclasses.field(default_factory=lambda: {"loss": [], "accuracy": []})
    best_loss: list[float] = None  # type: ignore[assignment]
    best_epoch: list[int] = None  # type: ignore[assignment]
    stopped_epoch: list[int] = None  # type: ignore[assignment]
    active: list[bool] = None  # type: ignore[assignment]
    diverged_step: list[int] = None  # type: ignore[assignment]
    train_seconds: float = 0.0
    images: int = 0
    first_data_epoch: int = 0

    def __post_init__(self) -> None:
        self.best_loss = self.best_loss or [math.inf] * self.size
        self.best_epoch = self.best_epoch or [-1] * self.size
        self.stopped_epoch = self.stopped_epoch or [-1] * self.size
        self.active = self.active or [True] * self.size
        self.diverged_step = self.diverged_step or [-1] * self.size

    def to_json(self) -> dict[str, Any]:
        return jsonio.strict(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> LoopState:
        loop = cls(**{field.name: record[field.name] for field in dataclasses.fields(cls)})
        # Strict JSON stored the infinities and NaNs as null.
        loop.best_loss = [math.inf if v is None else v for v in loop.best_loss]
        loop.history = {key: [_nulls_as_nan(v) for v in values] for key, values in loop.history.items()}
        loop.epoch_metrics = {key: [_nulls_as_nan(v) for v in values] for key, values in loop.epoch_metrics.items()}
        return loop


def _nulls_as_nan(values: Any) -> Any:
    if isinstance(values, list):
        return [math.nan if v is None else v for v in values]
    return math.nan if values is None else values


@dataclasses.dataclass
class EpochsResult:
    """What ``run_epochs`` returns; every per-member array is ``[size]``.

    Attributes:
      state: each member's state at its best validation loss (its last if early stopping is off).
      history: per-epoch ``[epochs_run, size]`` arrays of HISTORY_KEYS (seconds: ``[epochs_run]``).
      best_epoch: 0-based epoch whose state each member holds.
      stopped_epoch: epoch after which each member stopped early, -1 if it trained to the end.
      diverged_step: the step at which each member diverged (and was frozen), -1 if it did not.
      train_seconds: wall time of the training epochs (compilation included), validation excluded.
      images: training images seen.
    """

    state: Any
    history: dict[str, np.ndarray]
    best_epoch: np.ndarray
    stopped_epoch: np.ndarray
    diverged_step: np.ndarray
    train_seconds: float
    images: int


def check_epochs_and_patience(epochs: int, patience: int | None) -> None:
    """Raises ValueError, saying how to fix it, for epochs < 1 or patience < 1 (None is allowed)."""
    if epochs < 1:
        raise ValueError(f"Invalid epochs={epochs}: expected a positive integer, e.g. 10.")
    if patience is not None and patience < 1:
        raise ValueError(f"Invalid patience={patience}: expected a positive integer, or None to disable early stopping.")


@dataclasses.dataclass
class RunServices:
    """What a durable run adds to the loop; each part is optional.

    Attributes:
      checkpoints: periodic and per-epoch checkpoints (``jaxvision.run_checkpoints.RunCheckpoints``).
      log: ``jaxvision.training_log.TrainingLog`` for metrics.jsonl and TensorBoard.
      log_every: a step record every this many steps.
      learning_rate: the learning rate at a step, for the log.
      interrupt: a ``jaxvision.interrupts.InterruptRequest`` polled after every step.
      settings: what must match for a checkpoint to be resumed (compared on restore).
    """

    checkpoints: Any = None
    log: Any = None
    log_every: int | None = None
    learning_rate: Callable[[int], float] | None = None
    interrupt: Any = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


def _mean_over_steps(values: list) -> np.ndarray:
    # float32 like the steps' metrics; the same host arithmetic whether or not the epoch was resumed.
    return np.mean(np.asarray(values, np.float32), axis=0).astype(np.float64)


class _EpochLoop:
    """``run_epochs``'s state and steps; see there."""

    def __init__(self, runner: EpochRunner, *, epochs: int, patience: int | None, min_delta: float, progress: bool,
                 services: RunServices, resume: tuple[LoopState, Any] | None, first_data_epoch: int = 0):
        self.runner, self.epochs, self.patience, self.min_delta = runner, epochs, patience, min_delta
        self.progress, self.services = progress, services
        self.size, self.steps_per_epoch = runner.size, runner.steps_per_epoch
        if resume is None:
            self.loop, self.best_state = LoopState(size=self.size, first_data_epoch=first_data_epoch), runner.state()
        else:
            self.loop, best_state = resume
            self.best_state = runner.state() if best_state is None else best_state
        self.last_good = runner.state()
        self.last_checkpoint: str | None = None
        self._log_start = (time.perf_counter(), self.loop.images)
        self._log_metrics: list[dict[str, np.ndarray]] = []

    @property
    def global_step(self) -> int:
        return self.loop.epoch * self.steps_per_epoch + self.loop.step_in_epoch

    def _save(self, *, val_loss: float | None = None) -> str | None:
        checkpoints = self.services.checkpoints
        if checkpoints is None:
            return None
        record = {"loop": self.loop.to_json(), "settings": jsonio.strict(self.services.settings)}
        best = self.best_state if self.patience is not None else None
        self.last_checkpoint = checkpoints.save(self.global_step, self.runner.state(), record, best=best,
                                                val_loss=val_loss)
        return self.last_checkpoint

    def _sync(self, pending: list[Metrics], bar) -> None:
        """Brings the pending steps' metrics to the host; records them; acts on a divergence."""
        if not pending:
            return
        values = jax.device_get(pending)
        first_step = self.global_step - len(values) + 1
        bad_steps = None
        for offset, metrics in enumerate(values):
            loss = np.reshape(np.asarray(metrics["loss"], np.float32), -1)
            accuracy = np.reshape(np.asarray(metrics["accuracy"], np.float32), -1)
            self.loop.epoch_metrics["loss"].append(loss.tolist())
            self.loop.epoch_metrics["accuracy"].append(accuracy.tolist())
            self._log_metrics.append({"loss": loss, "accuracy": accuracy})
            finite = np.reshape(np.asarray(metrics.get("finite", 1.0)), -1) > 0
            new = ~finite & np.asarray(self.loop.active) & (np.asarray(self.loop.diverged_step) < 0)
            if new.any():
                bad_steps = new if bad_steps is None else bad_steps | new
                for member in np.flatnonzero(new):
                    self.loop.diverged_step[member] = first_step + offset
        pending.clear()
        if bar is not None and self.progress:
            recent = self.loop.epoch_metrics["loss"][-PROGRESS_EVERY:]
            recent_accuracy = self.loop.epoch_metrics["accuracy"][-PROGRESS_EVERY:]
            bar.set_postfix(loss=f"{np.nanmean(recent):.4f}", acc=f"{np.nanmean(recent_accuracy):.4f}")
        if bad_steps is not None:
            self._diverged(bad_steps)
        else:
            self.last_good = self.runner.state()

    def _diverged(self, members: np.ndarray) -> None:
        if self.size == 1:
            step = self.loop.diverged_step[0]
            epoch = (step - 1) // self.steps_per_epoch
            raise TrainingDiverged(epoch, step, self.last_checkpoint, self.last_good)
        # A population goes on without them: back to their last finite state, frozen from now on.
        self.runner.restore_members(members, self.last_good)
        active = np.asarray(self.loop.active) & ~members
        self.loop.active = active.tolist()
        self.runner.freeze(active)
        self.last_good = self.runner.state()
        for member in np.flatnonzero(members):
            tqdm.write(f"member {member} diverged at step {self.loop.diverged_step[member]} (non-finite loss or "
                       "gradient): frozen at its last finite state, left out of the best member and the ensemble")

    def _write_step_log(self) -> None:
        log = self.services.log
        if log is None or not self._log_metrics:
            return
        now = time.perf_counter()
        seconds, images = now - self._log_start[0], self.loop.images - self._log_start[1]
        step = self.global_step
        record = {
            "step": step,
            "epoch": self.loop.epoch + 1,
            "loss": float(np.nanmean([m["loss"] for m in self._log_metrics])),
            "accuracy": float(np.nanmean([m["accuracy"] for m in self._log_metrics])),
            "images_per_second": images / max(seconds, 1e-9),
        }
        if self.services.learning_rate is not None:
            record["learning_rate"] = float(self.services.learning_rate(step))
        log.write(record, kind="step")
        self._log_start, self._log_metrics = (now, self.loop.images), []

    def _interrupted(self) -> None:
        interrupt = self.services.interrupt
        if interrupt is None or not interrupt.requested:
            return
        checkpoint = self._save() if self.services.checkpoints is not None else None
        raise TrainingInterrupted(self.loop.epoch, self.global_step, interrupt.signal, checkpoint or "")

    def train_epoch(self, epoch: int) -> dict[str, np.ndarray]:
        loop, services = self.loop, self.services
        bar = tqdm(total=self.steps_per_epoch, initial=loop.step_in_epoch, desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=not self.progress, leave=False, unit="step")
        pending: list[Metrics] = []
        start = time.perf_counter()
        try:
            for metrics, images in self.runner.steps(loop.first_data_epoch + epoch, loop.step_in_epoch):
                loop.step_in_epoch += 1
                loop.images += images
                pending.append(metrics)
                bar.update(1)
                step = self.global_step
                checkpoint_due = services.checkpoints is not None and services.checkpoints.due(step)
                log_due = services.log is not None and services.log_every and step % services.log_every == 0
                interrupt = services.interrupt is not None and services.interrupt.requested
                if len(pending) >= PROGRESS_EVERY or checkpoint_due or log_due or interrupt:
                    self._sync(pending, bar)
                if log_due:
                    self._write_step_log()
                if checkpoint_due and loop.step_in_epoch < self.steps_per_epoch:
                    # The epoch's last step is saved after validation, with its result.
                    loop.train_seconds += time.perf_counter() - start
                    self._save()
                    start = time.perf_counter()
                self._interrupted_now(start)
            self._sync(pending, bar)
        finally:
            bar.close()
        loop.train_seconds += time.perf_counter() - start
        if not loop.epoch_metrics["loss"]:
            raise ValueError("The training split yielded no batches: use a batch size no larger than the training set.")
        return {name: _mean_over_steps(values) for name, values in loop.epoch_metrics.items()}

    def _interrupted_now(self, start: float) -> None:
        if self.services.interrupt is not None and self.services.interrupt.requested:
            self.loop.train_seconds += time.perf_counter() - start
            self._interrupted()

    def run(self) -> EpochsResult:
        loop = self.loop
        for epoch in range(loop.epoch, self.epochs):
            if not any(loop.active):
                break
            loop.epoch = epoch
            start = time.perf_counter()
            train = self.train_epoch(epoch)
            validation = self.runner.validate()
            seconds = time.perf_counter() - start
            val_loss = np.asarray(validation["loss"], np.float64)
            loop.history["train_loss"].append(train["loss"].tolist())
            loop.history["train_accuracy"].append(train["accuracy"].tolist())
            loop.history["val_loss"].append(val_loss.tolist())
            loop.history["val_accuracy"].append(np.asarray(validation["accuracy"], np.float64).tolist())
            loop.history["seconds"].append(seconds)
            active = np.asarray(loop.active)
            healthy = np.asarray(loop.diverged_step) < 0
            if self.patience is None:
                self.best_state = self.runner.state()
                loop.best_epoch = np.where(healthy, epoch, loop.best_epoch).tolist()
            else:
                best_loss, best_epoch = np.asarray(loop.best_loss), np.asarray(loop.best_epoch)
                improved = active & (val_loss < best_loss - self.min_delta)
                self.best_state = self.runner.select(improved, self.runner.state(), self.best_state)
                loop.best_loss = np.where(improved, val_loss, best_loss).tolist()
                best_epoch = np.where(improved, epoch, best_epoch)
                loop.best_epoch = best_epoch.tolist()
                stop = active & ~improved & (epoch - best_epoch >= self.patience)
                loop.stopped_epoch = np.where(stop, epoch, loop.stopped_epoch).tolist()
                active = active & ~stop
                loop.active = active.tolist()
                if stop.any():
                    self.runner.freeze(active)
            loop.epoch, loop.step_in_epoch = epoch + 1, 0
            loop.epoch_metrics = {"loss": [], "accuracy": []}
            healthy_loss = val_loss[healthy] if healthy.any() else val_loss
            self._save(val_loss=float(np.min(healthy_loss)))
            if self.services.log is not None:
                self.services.log.write({
                    "step": self.global_step, "epoch": epoch + 1,
                    **{name: float(np.nanmean(values[-1])) for name, values in loop.history.items()},
                }, kind="epoch")
            if self.progress:
                tqdm.write(self.runner.epoch_line(epoch, self.epochs, train, validation, active, seconds))
                if self.patience is not None and self.size == 1 and not active.any():
                    tqdm.write(f"early stopping: no validation improvement for {self.patience} epochs; restoring "
                               f"epoch {loop.best_epoch[0] + 1}")
            self._interrupted()
        history = {key: np.asarray(values, np.float64) for key, values in loop.history.items()}
        return EpochsResult(
            state=self.best_state,
            history=history,
            best_epoch=np.asarray(loop.best_epoch),
            stopped_epoch=np.asarray(loop.stopped_epoch),
            diverged_step=np.asarray(loop.diverged_step),
            train_seconds=loop.train_seconds,
            images=loop.images,
        )


def run_epochs(runner: EpochRunner, *, epochs: int, patience: int | None = None, min_delta: float = 0.0,
               progress: bool = True, services: RunServices | None = None,
               resume: tuple[LoopState, Any] | None = None, first_data_epoch: int = 0) -> EpochsResult:
    """Trains ``runner``'s members for up to ``epochs`` epochs, validating after each.

    With ``patience``, a member whose validation loss has not improved by more than ``min_delta`` for
    ``patience`` epochs stops (``runner.freeze``) and keeps its best epoch's state; the loop ends when
    every member has stopped. Without it, every member trains every epoch and keeps its last state.

    Every ``PROGRESS_EVERY`` steps (and before a checkpoint or a log record) the steps' metrics come
    to the host; a non-finite loss or gradient found there stops a single run with
    ``TrainingDiverged``, and freezes a population's member at its last finite state.

    Args:
      runner: the members and their data.
      epochs, patience, min_delta, progress: as ``fit``'s.
      services: checkpoints, logs and interrupt handling, or None for none of them.
      resume: (loop state, best state or None) from a checkpoint; the runner holds its train state.
      first_data_epoch: the epoch of the data order that epoch 0 trains on (ignored on resume: the
        loop state has it).
    """
    check_epochs_and_patience(epochs, patience)
    loop = _EpochLoop(runner, epochs=epochs, patience=patience, min_delta=min_delta, progress=progress,
                      services=services or RunServices(), resume=resume, first_data_epoch=first_data_epoch)
    return loop.run()


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
    outputs = None
    for batch in batches:
        if outputs is None:
            outputs = model_outputs(state, batch.images)
        if getattr(step, "score", None) is None:  # class labels; a task's score knows its own targets
            check_labels(batch.labels, outputs, where="an evaluation batch")
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
      checkpoint_seconds: the wall time of each checkpoint write of this call (on the writer thread).
      checkpoint_blocking_seconds: the time each save held up training (its copy to the host).
    """

    state: TrainState
    history: dict[str, list[float]]
    best_epoch: int
    stopped_early: bool
    test: dict[str, float] | None
    train_images_per_second: float
    checkpoint_seconds: list[float] = dataclasses.field(default_factory=list)
    checkpoint_blocking_seconds: list[float] = dataclasses.field(default_factory=list)


class _SingleRun:
    """One TrainState trained on ``data.train_batches``: an EpochRunner of size 1."""

    size = 1

    def __init__(self, state: TrainState, data: BatchSource, key: jax.Array, train_step, eval_step_fn: EvalStep):
        self._state, self._data, self._key = state, data, key
        self._train_step, self._eval_step = train_step, eval_step_fn
        self.steps_per_epoch = int(data.steps_per_epoch)
        self._outputs: int | None = None

    def steps(self, epoch: int, start: int) -> Iterator[tuple[Metrics, int]]:
        for batch in _train_batches(self._data, epoch, start):
            classes = self._train_step.score is None  # a task's targets are checked when it loads them
            if self._outputs is None and classes:
                self._outputs = model_outputs(self._state, batch.images)
                check_outputs(self._outputs, self._train_step.loss)
            if classes:
                check_labels(batch.labels, self._outputs, where=f"a training batch of epoch {epoch + 1}")
            self._state, metrics = self._train_step(self._state, batch, self._key)
            yield metrics, len(batch.mask)

    def validate(self) -> dict[str, Any]:
        result = evaluate(self._state, self._data.eval_batches("validation"), step=self._eval_step)
        return {"loss": np.asarray([result["loss"]]), "accuracy": np.asarray([result["accuracy"]])}

    def state(self) -> TrainState:
        return self._state

    def select(self, improved: np.ndarray, current: TrainState, best: TrainState) -> TrainState:
        return current if improved[0] else best

    def restore_members(self, members: np.ndarray, state: TrainState) -> None:
        if members[0]:
            self._state = state

    def freeze(self, active: np.ndarray) -> None:
        del active  # the loop ends: a single run has no one else to train

    def epoch_line(self, epoch, epochs, train, validation, active, seconds) -> str:
        return (f"epoch {epoch + 1}/{epochs}: train loss {train['loss'][0]:.4f} acc {train['accuracy'][0]:.4f}"
                f" | val loss {validation['loss'][0]:.4f} acc {validation['accuracy'][0]:.4f} | {seconds:.1f}s")


def _train_batches(data: BatchSource, epoch: int, start: int) -> Iterable[Batch]:
    if start == 0:
        return data.train_batches(epoch)
    if "start" in inspect.signature(data.train_batches).parameters:
        return data.train_batches(epoch, start=start)
    return itertools.islice(data.train_batches(epoch), start, None)


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
    checkpoint_dir: str | None = None,
    resume: bool = False,
    checkpoint_every: int | None = None,
    checkpoint_minutes: float | None = None,
    keep_checkpoints: int = 2,
    log_dir: str | None = None,
    log_every: int = 50,
    learning_rate: Callable[[int], float] | None = None,
    settings: dict[str, Any] | None = None,
    label_smoothing: float = 0.0,
    frozen: Sequence[str] = (),
    ema_decay: float | None = None,
    score: Score | None = None,
) -> FitResult:
    """Trains for ``epochs`` epochs, validating after each one.

    With ``checkpoint_dir`` the run survives faults: a checkpoint after every epoch (and every
    ``checkpoint_every`` steps or ``checkpoint_minutes`` minutes), Ctrl-C and SIGTERM finish the
    step, save and raise ``TrainingInterrupted``, and ``resume=True`` continues from the latest
    checkpoint mid-epoch, with the same data order, keys, schedule, early-stopping counters and
    history, so the final parameters are those of an uninterrupted run, bit for bit on CPU.

    Epoch e of a call trains on epoch ``state.step // steps_per_epoch + e`` of the data order: a state
    restored after k epochs continues where it stopped, rather than seeing epoch 0's batches again.

    Args:
      state: the initial TrainState (on resume, the structure to restore into).
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
      checkpoint_dir: where checkpoints go (``jaxvision.run_checkpoints``); None saves nothing.
      resume: continue from the latest checkpoint in ``checkpoint_dir``, if there is one.
      checkpoint_every: also save every this many steps.
      checkpoint_minutes: also save when this many minutes have passed since the last save.
      keep_checkpoints: how many of the latest checkpoints to keep, besides the best.
      log_dir: where ``metrics.jsonl`` and TensorBoard events go (``jaxvision.training_log``).
      log_every: a step record every this many steps (with ``log_dir``).
      learning_rate: the learning rate at a step, for the log (e.g. an optax schedule).
      settings: more of what must match for a checkpoint to be resumed (model, data, optimiser...).
      label_smoothing: smooth the training targets (see ``make_train_step``); validation and test
        report the plain loss.
      frozen: top-level modules whose parameters stay fixed (``jaxvision.transfer``); build the state's
        model with ``jaxvision.transfer.with_frozen_layers`` so their batch norm stays in inference mode.
      ema_decay: keep an EMA of the parameters; validation, early stopping, the test and the returned
        ``state.eval_variables`` use it.
      score: the per-example score reported as "accuracy" (``make_train_step``), for tasks other than
        classification (``jaxvision.tasks``); their labels are then not checked as class indices.

    Returns:
      A FitResult.

    Raises:
      TrainingDiverged: a step's loss or gradient was NaN or infinite (nothing non-finite was saved).
      TrainingInterrupted: SIGINT or SIGTERM, after saving (with ``checkpoint_dir``).
      jaxvision.run_checkpoints.CheckpointMismatchError: resuming a checkpoint of other settings.
      jaxvision.integrity.CorruptCheckpointError: resuming a checkpoint whose files fail their checksums.
    """
    check_epochs_and_patience(epochs, patience)
    train_step = make_train_step(loss=loss, augment=augment, compiler_options=compiler_options,
                                 label_smoothing=label_smoothing, frozen=frozen, ema_decay=ema_decay, score=score)
    if ema_decay is not None:
        state = with_ema(state)
    eval_step_fn = make_eval_step(loss=loss, compiler_options=compiler_options, score=score)
    durability = Durability(checkpoint_dir=checkpoint_dir, resume=resume, checkpoint_every=checkpoint_every,
                            checkpoint_minutes=checkpoint_minutes, keep_checkpoints=keep_checkpoints, log_dir=log_dir,
                            log_every=log_every, learning_rate=learning_rate)
    settings = {**(settings or {}), "epochs": epochs, "steps_per_epoch": int(data.steps_per_epoch),
                "patience": patience, "min_delta": min_delta}
    # A state that has trained whole epochs already goes on with the next epoch's data order, so that
    # fit(2 epochs) and fit(1) + fit(1) train on the same batches.
    first_data_epoch = int(state.step) // max(int(data.steps_per_epoch), 1)
    with durable_run(durability, state, settings, patience=patience) as (state, resumed, services):
        runner = _SingleRun(state, data, key, train_step, eval_step_fn)
        result = run_epochs(runner, epochs=epochs, patience=patience, min_delta=min_delta, progress=progress,
                            services=services, resume=resumed, first_data_epoch=first_data_epoch)
    checkpoints = services.checkpoints
    save_seconds = list(checkpoints.save_seconds) if checkpoints is not None else []
    blocking_seconds = list(checkpoints.blocking_seconds) if checkpoints is not None else []
    test = evaluate(result.state, data.eval_batches("test"), step=eval_step_fn) if evaluate_test else None
    history = {name: [float(np.ravel(value)[0]) for value in values] for name, values in result.history.items()}
    return FitResult(
        state=result.state,
        history=history,
        best_epoch=int(result.best_epoch[0]),
        stopped_early=bool(result.stopped_epoch[0] >= 0),
        test=test,
        train_images_per_second=result.images / max(result.train_seconds, 1e-9),
        checkpoint_seconds=save_seconds,
        checkpoint_blocking_seconds=blocking_seconds,
    )


@dataclasses.dataclass(frozen=True)
class Durability:
    """``fit``'s and ``fit_population``'s checkpoint and log options; see ``fit``."""

    checkpoint_dir: str | None = None
    resume: bool = False
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = None
    keep_checkpoints: int = 2
    log_dir: str | None = None
    log_every: int = 50
    learning_rate: Callable[[int], float] | None = None


@contextlib.contextmanager
def durable_run(durability: Durability, state: Any, settings: dict[str, Any], *, patience: int | None
                ) -> Iterator[tuple[Any, tuple[LoopState, Any] | None, RunServices]]:
    """Opens a run's checkpoints and logs, resumes if asked, and defers Ctrl-C and SIGTERM.

    Yields:
      (the state to train from, the resumed loop state and best state or None, the RunServices).
    """
    if durability.log_every < 1:
        raise ValueError(f"Invalid log_every={durability.log_every}: expected a positive number of steps, e.g. 50.")
    with contextlib.ExitStack() as stack:
        checkpoints = None
        resumed = None
        if durability.checkpoint_dir is not None:
            from jaxvision.run_checkpoints import RunCheckpoints

            checkpoints = stack.enter_context(RunCheckpoints(
                durability.checkpoint_dir, every_steps=durability.checkpoint_every,
                every_minutes=durability.checkpoint_minutes, keep=durability.keep_checkpoints))
            if durability.resume:
                state, resumed = resume_from(checkpoints, state, settings, patience=patience)
        log = None
        if durability.log_dir is not None:
            from jaxvision.training_log import TrainingLog, truncate_metrics

            if resumed is not None:
                # What the interrupted process logged after its last checkpoint is logged again.
                loop = resumed[0]
                truncate_metrics(durability.log_dir, loop.epoch * int(settings["steps_per_epoch"]) + loop.step_in_epoch)
            log = stack.enter_context(TrainingLog(durability.log_dir))
        interrupt = stack.enter_context(deferred_interrupts(checkpoints is not None))
        yield state, resumed, RunServices(checkpoints=checkpoints, log=log, log_every=durability.log_every,
                                          learning_rate=durability.learning_rate, interrupt=interrupt, settings=settings)


def resume_from(checkpoints: Any, state: Any, settings: dict[str, Any], *, patience: int | None
                ) -> tuple[Any, tuple[LoopState, Any] | None]:
    """The latest checkpoint's (state, (loop state, best state)), or (``state``, None) if there is none.

    Prints ``resuming from step S (epoch E)``.

    Raises:
      jaxvision.run_checkpoints.CheckpointMismatchError: its settings differ from ``settings``.
    """
    from jaxvision.run_checkpoints import CheckpointMismatchError, describe_setting_differences

    step = checkpoints.latest()
    if step is None:
        return state, None
    restored, best, record = checkpoints.restore(step, state, like_best=state if patience is not None else None)
    differences = describe_setting_differences(record.get("settings", {}), jsonio.strict(settings))
    if differences:
        raise CheckpointMismatchError(
            f"cannot resume {checkpoints.step_directory(step)}: its settings differ: {differences}; use the same "
            "settings, or start afresh (--overwrite)"
        )
    loop = LoopState.from_json(record["loop"])
    print(f"resuming from step {step} (epoch {min(loop.epoch, int(settings['epochs']) - 1) + 1})")
    return restored, (loop, best)
