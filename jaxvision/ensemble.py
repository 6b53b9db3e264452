"""Training a population: per-member epochs, metrics and early stopping, best-member selection and the
ensemble (mean of the members' softmax) evaluated next to each member.

``fit_population`` is ``jaxvision.fit.fit`` for N members at once, on the same epoch loop
(``jaxvision.fit.run_epochs``). The training split lives on device
and each member gathers its own batches through its own permutation (``epoch_order``), so members
with different seeds see different data orders while every step stays one jitted call.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.backends.compile import compile_step
from jaxvision.batch import Batch, BatchAugment, Metrics
from jaxvision.fit import Durability, TrainingDiverged, check_epochs_and_patience, durable_run, run_epochs
from jaxvision.label_checks import check_labels, check_outputs, model_outputs
from jaxvision.losses import Loss, get_loss, hard_labels, predicted_classes
from jaxvision.population import (
    STRATEGIES,
    MemberConfig,
    Population,
    _population_train_step,
    epoch_order,
    gather_member_batches,
    member_keys,
    member_train_step,
    stack_states,
    step_options,
    unstack_states,
)
from jaxvision.train import TrainState, TrainStep, make_train_step

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
      diverged_step: [N] the step at which each member's loss or gradient went non-finite (it was
        frozen there, and is in neither ``best_member`` nor the ensemble), or -1.
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
    diverged_step: np.ndarray | None = None

    def table(self) -> list[dict[str, Any]]:
        """One row per member: its config, epochs, validation and test results."""
        rows = []
        for i, member in enumerate(self.population.members):
            row: dict[str, Any] = {"member": i, **member.describe()}
            row["best_epoch"] = int(self.best_epoch[i]) + 1 if self.best_epoch[i] >= 0 else None
            row["stopped_early"] = bool(self.stopped_epoch[i] >= 0)
            diverged = self.diverged_step is not None and self.diverged_step[i] >= 0
            row["diverged_at_step"] = int(self.diverged_step[i]) if diverged else None
            row["val_loss"] = float(self.validation["loss"][i])
            row["val_accuracy"] = float(self.validation["accuracy"][i])
            if self.test is not None:
                row["test_loss"] = float(self.test["loss"][i])
                row["test_accuracy"] = float(self.test["accuracy"][i])
            rows.append(row)
        return rows


def _member_eval_sums(state: TrainState, batch: Batch, *, loss: Loss) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(loss sum, correct count, [batch, classes] probabilities) of one member over a batch's real examples."""
    logits = state.apply_fn(state.variables, batch.images, train=False).astype(jnp.float32)
    losses = loss(logits, batch.labels)
    correct = predicted_classes(logits) == hard_labels(batch.labels)
    return jnp.sum(losses * batch.mask), jnp.sum(correct * batch.mask), jax.nn.softmax(logits)


def _members_eval_sums(state: TrainState, batch: Batch, *, loss: Loss) -> tuple[jax.Array, jax.Array, jax.Array]:
    return jax.vmap(functools.partial(_member_eval_sums, loss=loss), in_axes=(0, None))(state, batch)


@jax.jit
def _combine_eval(loss_sum: jax.Array, correct: jax.Array, probabilities: jax.Array, batch: Batch,
                  include: jax.Array) -> dict[str, jax.Array]:
    weights = include.astype(probabilities.dtype).reshape((-1,) + (1,) * (probabilities.ndim - 1))
    mean_probabilities = jnp.sum(probabilities * weights, axis=0) / jnp.sum(include)
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


def population_eval_step(population: Population, batch: Batch, *, loss: str | Loss = "cross_entropy",
                         include: np.ndarray | None = None) -> dict[str, jax.Array]:
    """Sums over the real examples of a batch, per member and for the ensemble (all members vmapped).

    The ensemble predicts the mean of its members' softmax probabilities; its loss is the negative log
    of that mean at the true class (integer labels) or the cross-entropy to soft labels.

    ``include`` ([N] bools, default all) picks the ensemble's members.

    Returns:
      {"loss_sum": [N], "correct": [N], "ensemble_loss_sum", "ensemble_correct", "count"}.
    """
    members_eval = compile_step(_members_eval_sums, population.state, static_argnames="loss")
    return _combine_eval(*members_eval(population.state, batch, loss=get_loss(loss)), batch,
                         _include(include, population.size))


def _include(include: np.ndarray | None, size: int) -> jax.Array:
    if include is None:
        return jnp.ones(size, bool)
    include = np.asarray(include, bool)
    if include.shape != (size,) or not include.any():
        raise ValueError(f"Invalid include of shape {include.shape} with {int(include.sum())} members: expected {size} "
                         "booleans, at least one True.")
    return jnp.asarray(include)


def evaluate_population(population: Population, batches: Iterable[Batch], *, strategy: str = "vmap",
                        loss: str | Loss = "cross_entropy", include: np.ndarray | None = None) -> dict[str, Any]:
    """Mean loss and accuracy of every member and of the ensemble over every real example of ``batches``.

    Args:
      population: the members to evaluate.
      batches: e.g. ``data.eval_batches("test")``.
      strategy: "vmap" evaluates all members as one program, "loop" one member at a time.
      loss: the members' loss (a name in ``jaxvision.losses.LOSSES`` or a function).
      include: [N] bools, the ensemble's members (default: all).

    Returns:
      {"loss": [N], "accuracy": [N], "ensemble_loss", "ensemble_accuracy", "count"} (NumPy / floats).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}.")
    loss = get_loss(loss)
    states = unstack_states(population.state, population.size) if strategy == "loop" else None
    member_eval = compile_step(_member_eval_sums, population.state, static_argnames="loss")
    sums = None
    for batch in batches:
        if states is None:
            metrics = population_eval_step(population, batch, loss=loss, include=include)
        else:
            parts = [member_eval(state, batch, loss=loss) for state in states]
            metrics = _combine_eval(*(jnp.stack(p) for p in zip(*parts)), batch, _include(include, population.size))
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


def _vmap_step(population, images, labels, orders, index, keys, *, batch_size: int, step: TrainStep):
    """Every member's step ``index`` of the epoch, gathered from on-device data, as one vmapped program."""
    batch = gather_member_batches(images, labels, orders, index, batch_size)
    return _population_train_step(population, batch, keys, step=step)


def _loop_step(model, state, dropout_rate, active, images, labels, order, index, key, *, batch_size: int,
               step: TrainStep):
    """One member's step ``index`` of the epoch: the unbatched program the "loop" strategy calls N times."""
    batch = jax.tree.map(lambda x: x[0], gather_member_batches(images, labels, order[None], index, batch_size))
    return member_train_step(model, step, state, dropout_rate, active, batch, key)


class _Trainer:
    """Runs population steps with a strategy; "loop" keeps the members unstacked between steps.

    Both strategies' programs compile as ``jaxvision.fit``'s steps do (``compile_step``).
    """

    def __init__(self, population: Population, images, labels, keys: jax.Array, batch_size: int, strategy: str,
                 step: TrainStep):
        self.population, self.images, self.labels = population, images, labels
        self.keys, self.batch_size, self.strategy, self.train_step = keys, batch_size, strategy, step
        options = step_options(step)
        self._vmap_step = compile_step(_vmap_step, population.state, static_argnames=("batch_size", "step"),
                                       compiler_options=options)
        self._loop_step = compile_step(_loop_step, population.state, static_argnames=("model", "batch_size", "step"),
                                       compiler_options=options)
        self.member_keys = list(keys)
        self.members = population.unstack() if strategy == "loop" else None

    def start_epoch(self, orders: jax.Array) -> None:
        """Sets the [N, num_examples] data orders of the coming epoch."""
        self.orders = orders
        self.member_orders = list(orders) if self.members is not None else None

    def step(self, index: int) -> Metrics:
        """Step ``index`` of the epoch for every member; metrics are [N] (vmap) or N-long lists (loop)."""
        index = jnp.int32(index)
        if self.members is None:
            self.population, metrics = self._vmap_step(
                self.population, self.images, self.labels, self.orders, index, self.keys, batch_size=self.batch_size,
                step=self.train_step,
            )
            return metrics
        outputs = []
        for i, (state, rate, active) in enumerate(self.members):
            state, metrics = self._loop_step(
                self.population.model, state, rate, active, self.images, self.labels, self.member_orders[i], index,
                self.member_keys[i], batch_size=self.batch_size, step=self.train_step,
            )
            self.members[i] = (state, rate, active)
            outputs.append(metrics)
        return {name: [m[name] for m in outputs] for name in outputs[0]}

    def result(self) -> Population:
        """The population as it stands, stacked."""
        if self.members is not None:
            self.population = self.population.replace(state=stack_states([m[0] for m in self.members]))
        return self.population

    def set_state(self, state: TrainState) -> None:
        self.population = self.result().replace(state=state)
        if self.members is not None:
            self.members = self.population.unstack()

    def set_active(self, active: np.ndarray) -> None:
        self.population = self.result().replace(active=jnp.asarray(active))
        if self.members is not None:
            self.members = self.population.unstack()


@jax.jit
def _select_members(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per member: ``new`` where ``mask`` [N] is True, else ``old``."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


_epoch_orders = jax.jit(jax.vmap(epoch_order, in_axes=(0, None, None)), static_argnums=2)


def choose_strategy(population: Population, images: jax.Array, labels: jax.Array, *, batch_size: int,
                    step: TrainStep | None = None) -> str:
    """"vmap" off CPU; on CPU, whichever of "vmap" and "loop" runs a few real steps faster.

    Accelerators run one wide batched program better than N narrow ones, so vmap is taken there.
    XLA:CPU is different: a vmapped convolution becomes a batched (grouped) convolution that runs
    several times slower than N plain ones, while small dense models gain from vmap
    (``benchmarks/experiments/population_vs_loop.py`` measures both), so on CPU both are compiled and timed on the
    actual model and batch size; the results are thrown away (the steps are pure).
    """
    if jax.default_backend() != "cpu" or population.size == 1:
        return "vmap"
    step = step or make_train_step()
    keys = jnp.stack([member_keys(m.seed)[1] for m in population.members])
    # The real shapes, so that the winner's compiled program is reused by the training loop.
    orders = jnp.tile(jnp.arange(labels.shape[0]), (population.size, 1))
    seconds = {}
    for strategy in STRATEGIES:
        trainer = _Trainer(population, images, labels, keys, batch_size, strategy, step)
        trainer.start_epoch(orders)
        jax.block_until_ready(trainer.step(0))  # compile
        start = time.perf_counter()
        for index in range(1, _AUTO_TIMING_STEPS + 1):
            metrics = trainer.step(index)
        jax.block_until_ready((metrics, trainer.result()))
        seconds[strategy] = time.perf_counter() - start
    return min(seconds, key=seconds.get)


class _PopulationRun:
    """The members of a population on the on-device training split: an EpochRunner of size N."""

    def __init__(self, trainer: _Trainer, data: PopulationData, data_keys: jax.Array, steps_per_epoch: int,
                 strategy: str, loss: Loss):
        self.trainer, self.data, self.data_keys = trainer, data, data_keys
        self.steps_per_epoch, self.strategy, self.loss = steps_per_epoch, strategy, loss
        self.size = trainer.population.size
        self.num_train = int(trainer.labels.shape[0])
        self.healthy = np.ones(self.size, bool)

    def steps(self, epoch: int, start: int) -> Iterator[tuple[Metrics, int]]:
        self.trainer.start_epoch(_epoch_orders(self.data_keys, epoch, self.num_train))
        images = self.trainer.batch_size * self.size
        for index in range(start, self.steps_per_epoch):
            metrics = self.trainer.step(index)
            if isinstance(metrics["loss"], list):  # "loop": one scalar per member
                metrics = {name: jnp.stack(values) for name, values in metrics.items()}
            yield metrics, images
        self.trainer.result()

    def validate(self) -> dict[str, Any]:
        return evaluate_population(self.trainer.result(), self.data.eval_batches("validation"), strategy=self.strategy,
                                   loss=self.loss, include=self.healthy if self.healthy.any() else None)

    def state(self) -> TrainState:
        return self.trainer.result().state

    def select(self, improved: np.ndarray, current: TrainState, best: TrainState) -> TrainState:
        return _select_members(jnp.asarray(improved), current, best)

    def restore_members(self, members: np.ndarray, state: TrainState) -> None:
        population = self.trainer.result()
        self.trainer.set_state(_select_members(jnp.asarray(members), state, population.state))
        self.healthy = self.healthy & ~members  # out of the ensemble from now on

    def freeze(self, active: np.ndarray) -> None:
        self.trainer.set_active(active)

    def epoch_line(self, epoch, epochs, train, validation, active, seconds) -> str:
        return (f"epoch {epoch + 1}/{epochs}: val accuracy {_spread(validation['accuracy'])} | ensemble "
                f"{validation['ensemble_accuracy']:.4f} | {int(active.sum())}/{self.size} active | {seconds:.1f}s")


def fit_population(
    population: Population,
    data: PopulationData,
    *,
    epochs: int,
    loss: str | Loss = "cross_entropy",
    augment: BatchAugment | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    strategy: str = "auto",
    evaluate_test: bool = True,
    progress: bool = True,
    compiler_options: dict[str, Any] | None = None,
    durability: Durability | None = None,
    settings: dict[str, Any] | None = None,
) -> PopulationResult:
    """Trains every member for ``epochs`` epochs, validating each after every epoch.

    Member i trains with keys ``member_keys(seed_i)``: step s uses ``fold_in(train_key, s)`` for
    dropout and augmentation, and epoch e visits the training split in ``epoch_order(data_key, e)``,
    in batches of ``data.batch_size``. It therefore computes what ``jaxvision.fit`` computes on those
    batches (the same epoch loop, ``jaxvision.fit.run_epochs``), to float32 rounding.

    Args:
      population: from ``create_population``.
      data: e.g. ``jaxvision.data.load_splits(...)``; its training split is copied to the device once.
      epochs: passes over the training split.
      loss: every member's loss, a name in ``jaxvision.losses.LOSSES`` or a function.
      augment: on-device augmentation inside every member's train step, or None.
      patience: per-member early stopping: a member whose validation loss has not improved by more
        than ``min_delta`` for ``patience`` epochs stops (its updates are masked from then on) and is
        restored to its best epoch; the others go on. None trains all members all epochs.
      min_delta: smallest decrease of validation loss that counts as an improvement.
      strategy: "vmap", "loop" or "auto" (``choose_strategy``).
      evaluate_test: evaluate the returned members and their ensemble on the test split.
      progress: show a progress bar and one line per epoch.
      compiler_options: XLA options for the steps; None lets ``jaxvision.backends`` choose.
      durability: checkpoints, resume and logs, as ``jaxvision.fit.fit``'s options (``Durability``);
        None: none of them.
      settings: more of what must match for a checkpoint to be resumed.

    A member whose loss or gradient turns NaN or infinite is put back to its last finite state,
    frozen, reported (``diverged_step``) and left out of ``best_member`` and the ensemble.

    Returns:
      A PopulationResult.
    """
    check_epochs_and_patience(epochs, patience)
    if strategy not in (*STRATEGIES, "auto"):
        raise ValueError(f"Unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}, auto.")
    host_images, host_labels = data.arrays("train")
    outputs = model_outputs(population.member(0), host_images[:1])
    check_outputs(outputs, get_loss(loss))
    check_labels(host_labels, outputs, where="the training split")
    images, labels = jnp.asarray(host_images), jnp.asarray(host_labels)
    num_train, batch_size = int(labels.shape[0]), int(data.batch_size)
    steps_per_epoch = num_train // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={batch_size} exceeds the {num_train} training examples; use a smaller batch size.")
    step = make_train_step(loss=loss, augment=augment, compiler_options=compiler_options)
    if strategy == "auto" and durability is not None and durability.resume:
        strategy = _resumed_strategy(durability.checkpoint_dir) or strategy  # the same programs, bit for bit
    if strategy == "auto":
        strategy = choose_strategy(population, images, labels, batch_size=batch_size, step=step)
    keys = [member_keys(m.seed) for m in population.members]
    train_keys = jnp.stack([k[1] for k in keys])
    data_keys = jnp.stack([k[2] for k in keys])
    settings = {**(settings or {}), "epochs": epochs, "steps_per_epoch": steps_per_epoch, "patience": patience,
                "min_delta": min_delta, "members": [m.describe() for m in population.members], "strategy": strategy}
    with durable_run(durability or Durability(), population.state, settings, patience=patience) as (
            state, resumed, services):
        active = np.ones(population.size, bool) if resumed is None else np.asarray(resumed[0].active)
        trainer = _Trainer(population.replace(state=state, active=jnp.asarray(active)), images, labels, train_keys,
                           batch_size, strategy, step)
        runner = _PopulationRun(trainer, data, data_keys, steps_per_epoch, strategy, step.loss)
        if resumed is not None:
            runner.healthy = np.asarray(resumed[0].diverged_step) < 0
        result = run_epochs(runner, epochs=epochs, patience=patience, min_delta=min_delta, progress=progress,
                            services=services, resume=resumed)

    population = trainer.result().replace(state=result.state)
    healthy = result.diverged_step < 0
    if not healthy.any():
        first = int(np.min(result.diverged_step))
        raise TrainingDiverged((first - 1) // steps_per_epoch, first, None, population.state)
    validation = evaluate_population(population, data.eval_batches("validation"), strategy=strategy, loss=step.loss,
                                     include=healthy)
    test = (evaluate_population(population, data.eval_batches("test"), strategy=strategy, loss=step.loss,
                                include=healthy) if evaluate_test else None)
    return PopulationResult(
        population=population,
        history=result.history,
        best_epoch=result.best_epoch,
        stopped_epoch=result.stopped_epoch,
        validation=validation,
        test=test,
        best_member=int(np.argmin(np.where(healthy, validation["loss"], np.inf))),
        strategy=strategy,
        train_seconds=result.train_seconds,
        diverged_step=result.diverged_step,
    )


def _resumed_strategy(checkpoint_dir: str | None) -> str | None:
    """The strategy the latest checkpoint in ``checkpoint_dir`` was trained with, if any."""
    if checkpoint_dir is None:
        return None
    from jaxvision.run_checkpoints import RunCheckpoints

    with RunCheckpoints(checkpoint_dir) as checkpoints:
        step = checkpoints.latest()
        return None if step is None else checkpoints.saved_settings(step).get("strategy")


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
