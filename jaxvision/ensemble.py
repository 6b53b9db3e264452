"""Training a population: per-member epochs, metrics and early stopping, best-member selection and the
ensemble (mean of the members' softmax) evaluated next to each member.

``fit_population`` is ``jaxvision.fit.fit`` for N members at once. The training split lives on device
and each member gathers its own batches through its own permutation (``epoch_order``), so members
with different seeds see different data orders while every step stays one jitted call.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxvision.losses import hard_labels, predicted_classes
from jaxvision.population import (
    STRATEGIES,
    MemberConfig,
    Population,
    _population_train_step,
    epoch_order,
    gather_member_batches,
    map_members,
    member_keys,
)
from jaxvision.train import Batch, TrainState

# How many steps "auto" times each strategy for, after one warm-up step.
_AUTO_TIMING_STEPS = 3


class PopulationData(Protocol):
    """What ``fit_population`` needs of a dataset (``jaxvision.data.Splits`` is one)."""

    batch_size: int

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]: ...

    def eval_batches(self, split: str) -> Iterable[Batch]: ...


@dataclasses.dataclass
class PopulationResult:
    """What ``fit_population`` returns.

    Attributes:
      population: each member's state with its best validation loss (its last if early stopping is off).
      history: per-epoch arrays [epochs_run, N]: train_loss, train_accuracy, val_loss, val_accuracy;
        and seconds [epochs_run].
      best_epoch: [N] 0-based epoch whose parameters each member holds.
      stopped_epoch: [N] epoch after which each member stopped, or -1 if it trained to the end.
      validation, test: {"loss": [N], "accuracy": [N], "ensemble_loss", "ensemble_accuracy", "count"}
        of the returned members and their ensemble; test is None if not evaluated.
      best_member: index of the member with the lowest validation loss.
      strategy: "vmap" or "loop", the one that ran.
      train_seconds: wall time of the training epochs, compilation included.
    """

    population: Population
    history: dict[str, np.ndarray]
    best_epoch: np.ndarray
    stopped_epoch: np.ndarray
    validation: dict[str, Any]
    test: dict[str, Any] | None
    best_member: int
    strategy: str
    train_seconds: float

    def table(self) -> list[dict[str, Any]]:
        """One row per member: its config, epochs, validation and test results."""
        rows = []
        for i, member in enumerate(self.population.members):
            row: dict[str, Any] = {"member": i, **member.describe()}
            row["best_epoch"] = int(self.best_epoch[i]) + 1
            row["stopped_early"] = bool(self.stopped_epoch[i] >= 0)
            row["val_loss"] = float(self.validation["loss"][i])
            row["val_accuracy"] = float(self.validation["accuracy"][i])
            if self.test is not None:
                row["test_loss"] = float(self.test["loss"][i])
                row["test_accuracy"] = float(self.test["accuracy"][i])
            rows.append(row)
        return rows


def _member_eval_sums(state: TrainState, batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    logits = state.apply_fn(state.variables, batch.images, train=False)
    losses = state.loss_fn(logits, batch.labels)
    correct = predicted_classes(logits) == hard_labels(batch.labels)
    return jnp.sum(losses * batch.mask), jnp.sum(correct * batch.mask), jax.nn.softmax(logits)


@functools.partial(jax.jit, static_argnames="strategy")
def population_eval_step(population: Population, batch: Batch, strategy: str = "vmap") -> dict[str, jax.Array]:
    """Sums over the real examples of a batch, per member and for the ensemble.

    The ensemble predicts the mean of its members' softmax probabilities; its loss is the negative log
    of that mean at the true class (integer labels) or the cross-entropy to soft labels.

    Returns:
      {"loss_sum": [N], "correct": [N], "ensemble_loss_sum", "ensemble_correct", "count"}.
    """
    loss_sum, correct, probabilities = map_members(lambda s: _member_eval_sums(s, batch), population.state, strategy=strategy)
    mean_probabilities = jnp.mean(probabilities, axis=0)
    labels = batch.labels
    targets = labels if labels.ndim == 2 else jax.nn.one_hot(labels, mean_probabilities.shape[-1])
    ensemble_losses = -jnp.sum(targets * jnp.log(jnp.maximum(mean_probabilities, 1e-30)), axis=-1)
    ensemble_correct = predicted_classes(mean_probabilities) == hard_labels(labels)
    return {
        "loss_sum": loss_sum,
        "correct": correct,
        "ensemble_loss_sum": jnp.sum(ensemble_losses * batch.mask),
        "ensemble_correct": jnp.sum(ensemble_correct * batch.mask),
        "count": jnp.sum(batch.mask),
    }


def evaluate_population(population: Population, batches: Iterable[Batch], *, strategy: str = "vmap") -> dict[str, Any]:
    """Mean loss and accuracy of every member and of the ensemble over every real example of ``batches``.

    Returns:
      {"loss": [N], "accuracy": [N], "ensemble_loss", "ensemble_accuracy", "count"} (NumPy / floats).
    """
    sums = None
    for batch in batches:
        metrics = population_eval_step(population, batch, strategy=strategy)
        sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    if sums is None:
        raise ValueError("Cannot evaluate on an empty split: it yielded no batches.")
    sums = jax.device_get(sums)
    count = float(sums["count"])
    return {
        "loss": np.asarray(sums["loss_sum"], np.float64) / count,
        "accuracy": np.asarray(sums["correct"], np.float64) / count,
        "ensemble_loss": float(sums["ensemble_loss_sum"]) / count,
        "ensemble_accuracy": float(sums["ensemble_correct"]) / count,
        "count": count,
    }


def ensemble_predict(population: Population, images: jax.Array) -> jax.Array:
    """The ensemble's class probabilities ``[batch, num_classes]``: the mean of the members' softmax."""
    logits = jax.vmap(lambda s: s.apply_fn(s.variables, images, train=False))(population.state)
    return jnp.mean(jax.nn.softmax(logits), axis=0)


@functools.partial(jax.jit, static_argnames=("batch_size", "strategy"))
def _train_on_orders(population, images, labels, orders, step, keys, *, batch_size: int, strategy: str):
    batch = gather_member_batches(images, labels, orders, step, batch_size)
    return _population_train_step(population, batch, keys, strategy)


_epoch_orders = jax.jit(jax.vmap(epoch_order, in_axes=(0, None, None)), static_argnums=2)


@jax.jit
def _select_members(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per member: ``new`` where ``mask`` [N] is True, else ``old``."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def choose_strategy(population: Population, images: jax.Array, labels: jax.Array, *, batch_size: int) -> str:
    """"vmap" off CPU; on CPU, whichever of "vmap" and "loop" runs a few real steps faster.

    Accelerators run one wide batched program better than N narrow ones, so vmap is taken there.
    XLA:CPU is different: a vmapped convolution becomes a grouped convolution that can be slower than
    N plain ones (``benchmarks/population_vs_loop.py`` measures where), so on CPU both are compiled
    and timed on the actual model and batch size, and the results are thrown away (the steps are pure).
    """
    if jax.default_backend() != "cpu" or population.size == 1:
        return "vmap"
    keys = jnp.stack([member_keys(m.seed)[1] for m in population.members])
    # The real shapes, so that the winner's compiled program is reused by the training loop.
    orders = jnp.tile(jnp.arange(labels.shape[0]), (population.size, 1))
    seconds = {}
    for strategy in STRATEGIES:
        run = functools.partial(_train_on_orders, population, images, labels, orders, keys=keys, batch_size=batch_size, strategy=strategy)
        jax.block_until_ready(run(jnp.int32(0)))  # compile
        start = time.perf_counter()
        for step in range(1, _AUTO_TIMING_STEPS + 1):
            out = run(jnp.int32(step))
        jax.block_until_ready(out)
        seconds[strategy] = time.perf_counter() - start
    return min(seconds, key=seconds.get)


def fit_population(
    population: Population,
    data: PopulationData,
    *,
    epochs: int,
    patience: int | None = None,
    min_delta: float = 0.0,
    strategy: str = "auto",
    evaluate_test: bool = True,
    progress: bool = True,
) -> PopulationResult:
    """Trains every member for ``epochs`` epochs, validating each after every epoch.

    Member i trains with keys ``member_keys(seed_i)``: step s uses ``fold_in(train_key, s)`` for
    dropout and augmentation, and epoch e visits the training split in ``epoch_order(data_key, e)``,
    in batches of ``data.batch_size``. It therefore computes what a single run of ``train_step`` on
    those batches computes (to float tolerance under vmap; exactly under "loop" on CPU).

    Args:
      population: from ``create_population``.
      data: e.g. ``jaxvision.data.load_splits(...)``; its training split is copied to the device once.
      epochs: passes over the training split.
      patience: per-member early stopping: a member whose validation loss has not improved by more
        than ``min_delta`` for ``patience`` epochs stops (its updates are masked from then on) and is
        restored to its best epoch; the others go on. None trains all members all epochs.
      min_delta: smallest decrease of validation loss that counts as an improvement.
      strategy: "vmap", "loop" or "auto" (``choose_strategy``).
      evaluate_test: evaluate the returned members and their ensemble on the test split.
      progress: show a progress bar and one line per epoch.

    Returns:
      A PopulationResult.
    """
    if epochs < 1:
        raise ValueError(f"Invalid epochs={epochs}: expected a positive integer, e.g. 10.")
    if patience is not None and patience < 1:
        raise ValueError(f"Invalid patience={patience}: expected a positive integer, or None to disable early stopping.")
    if strategy not in (*STRATEGIES, "auto"):
        raise ValueError(f"Unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}, auto.")
    images, labels = (jnp.asarray(a) for a in data.arrays("train"))
    num_train, batch_size = int(labels.shape[0]), int(data.batch_size)
    steps_per_epoch = num_train // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={batch_size} exceeds the {num_train} training examples; use a smaller batch size.")
    if strategy == "auto":
        strategy = choose_strategy(population, images, labels, batch_size=batch_size)
    size = population.size
    keys = [member_keys(m.seed) for m in population.members]
    train_keys = jnp.stack([k[1] for k in keys])
    data_keys = jnp.stack([k[2] for k in keys])

    history: dict[str, list] = {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")}
    best_state = population.state
    best_loss = np.full(size, np.inf)
    best_epoch = np.full(size, -1)
    stopped_epoch = np.full(size, -1)
    active = np.ones(size, bool)
    train_seconds = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        orders = _epoch_orders(data_keys, epoch, num_train)
        step_metrics = []
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False, unit="step")
        for step in range(steps_per_epoch):
            population, metrics = _train_on_orders(
                population, images, labels, orders, jnp.int32(step), train_keys, batch_size=batch_size, strategy=strategy
            )
            step_metrics.append(metrics)
            bar.update(1)
        bar.close()
        epoch_metrics = jax.device_get(jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs), axis=0), *step_metrics))
        train_seconds += time.perf_counter() - start
        validation = evaluate_population(population, data.eval_batches("validation"), strategy=strategy)
        history["train_loss"].append(np.asarray(epoch_metrics["loss"]))
        history["train_accuracy"].append(np.asarray(epoch_metrics["accuracy"]))
        history["val_loss"].append(validation["loss"])
        history["val_accuracy"].append(validation["accuracy"])
        history["seconds"].append(time.perf_counter() - start)

        if patience is None:
            best_state = population.state
            best_epoch[:] = epoch
            best_loss = validation["loss"]
        else:
            improved = active & (validation["loss"] < best_loss - min_delta)
            best_state = _select_members(jnp.asarray(improved), population.state, best_state)
            best_loss = np.where(improved, validation["loss"], best_loss)
            best_epoch = np.where(improved, epoch, best_epoch)
            stop = active & ~improved & (epoch - best_epoch >= patience)
            stopped_epoch = np.where(stop, epoch, stopped_epoch)
            active = active & ~stop
            population = population.replace(active=jnp.asarray(active))
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}/{epochs}: val accuracy {_spread(validation['accuracy'])} | ensemble "
                f"{validation['ensemble_accuracy']:.4f} | {int(active.sum())}/{size} active | {history['seconds'][-1]:.1f}s"
            )
        if not active.any():
            break

    population = population.replace(state=best_state)
    validation = evaluate_population(population, data.eval_batches("validation"), strategy=strategy)
    test = evaluate_population(population, data.eval_batches("test"), strategy=strategy) if evaluate_test else None
    return PopulationResult(
        population=population,
        history={k: np.asarray(v) for k, v in history.items()},
        best_epoch=best_epoch,
        stopped_epoch=stopped_epoch,
        validation=validation,
        test=test,
        best_member=int(np.argmin(validation["loss"])),
        strategy=strategy,
        train_seconds=train_seconds,
    )


def _spread(values: np.ndarray) -> str:
    return f"{np.min(values):.4f}..{np.max(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


__all__ = [
    "MemberConfig",
    "Population",
    "PopulationData",
    "PopulationResult",
    "choose_strategy",
    "ensemble_predict",
    "evaluate_population",
    "fit_population",
    "population_eval_step",
]
