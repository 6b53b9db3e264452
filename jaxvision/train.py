"""The training state and the pure steps, built once from their parts with ``make_train_step``.

``TrainState`` holds what changes from step to step (parameters, optimiser state, step, batch
statistics; plus flax's static ``apply_fn`` and ``tx``). What the step does with it (the loss, the
on-device augmentation) is fixed when the step is built:

    step = make_train_step(loss="cross_entropy", augment=parse_augment_spec("flip,crop:4"))
    state, metrics = step(state, batch, key)

Nothing in a step reads a global or branches on a value that changes between steps, so the bodies
(``TrainStep.unjitted``) also vmap (populations) and shard (data parallelism). Every step compiles
through ``jaxvision.backends.compile.compile_step``, the one jit of a network's programs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from jaxvision.backends import training_forward
from jaxvision.backends.compile import compile_step, initialization_compiler_options
from jaxvision.batch import Batch, BatchAugment, Metrics
from jaxvision.losses import Loss, get_loss, hard_labels, predicted_classes, smoothed
from jaxvision.input_size import check_input_size

# (outputs, labels) -> [batch] per-example score in [0, 1] (e.g. a task's accuracy), logged as "accuracy".
Score = Callable[[jax.Array, Any], jax.Array]


class TrainState(train_state.TrainState):
    """Everything a training run carries between steps; a pytree, checkpointable as is.

    Attributes (besides flax's ``step``, ``params``, ``opt_state`` and the static ``apply_fn``, ``tx``):
      batch_stats: batch-norm running statistics; empty for models without batch norm.
      ema_params: the exponential moving average of ``params`` when the step keeps one
        (``make_train_step(ema_decay=...)``, started by ``with_ema``); empty otherwise.
    """

    batch_stats: Any = struct.field(default_factory=dict)
    ema_params: Any = struct.field(default_factory=dict)

    @property
    def variables(self) -> dict[str, Any]:
        """The model's variables as trained, as ``apply_fn`` takes them."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}

    @property
    def eval_variables(self) -> dict[str, Any]:
        """The variables evaluation uses and runs save: the EMA parameters when kept, else ``variables``."""
        if not self.ema_params:
            return self.variables
        return {**self.variables, "params": self.ema_params}


def with_ema(state: TrainState) -> TrainState:
    """``state`` with its parameter EMA started at the current parameters (a no-op if it has one)."""
    if state.ema_params:
        return state
    return state.replace(ema_params=jax.tree.map(jnp.copy, state.params))


def state_from_variables(
    model: nn.Module, variables: dict[str, Any], optimizer: optax.GradientTransformation
) -> TrainState:
    """A TrainState at step 0 that starts from given ``variables`` (e.g. pretrained weights).

    Args:
      model: the Flax module the variables belong to.
      variables: ``{"params": ...}``, plus ``"batch_stats"`` for models with batch norm.
      optimizer: the optax transformation; its state is initialised for these parameters.
    """
    params = jax.tree.map(jnp.asarray, variables["params"])
    batch_stats = jax.tree.map(jnp.asarray, variables.get("batch_stats", {}))
    return TrainState.create(apply_fn=model.apply, params=params, tx=optimizer, batch_stats=batch_stats)


def _initializer(model: nn.Module, input_shape: Sequence[int], optimizer: optax.GradientTransformation):
    # One program for the parameters and the optimiser state (run eagerly, optax's init is one small
    # dispatch per leaf and moment), compiled with initialization_compiler_options: it runs once.
    @jax.jit
    def initialize(key: jax.Array) -> TrainState:
        params_key, dropout_key = jax.random.split(key)
        dummy = jnp.zeros((1, *input_shape), jnp.float32)
        variables = model.init({"params": params_key, "dropout": dropout_key}, dummy, train=False)
        return TrainState.create(
            apply_fn=model.apply, params=variables["params"], tx=optimizer, batch_stats=variables.get("batch_stats", {})
        )

    return initialize


def create_train_state(
    model: nn.Module, input_shape: Sequence[int], optimizer: optax.GradientTransformation, key: jax.Array
) -> TrainState:
    """Initialises a model's parameters and the optimiser state.

    Args:
      model: a Flax module with ``__call__(x, *, train)``.
      input_shape: one example's shape, e.g. ``(28, 28, 1)``.
      optimizer: an optax transformation, e.g. from ``make_optimizer``.
      key: PRNG key for the initial parameters.

    Returns:
      A TrainState at step 0.
    """
    if isinstance(key, jax.core.Tracer):  # inside someone's jit or vmap: part of their program
        return _initializer(model, input_shape, optimizer)(key)
    if len(input_shape) == 3:
        # A map that collapses to 0x0 inside the network fails in init (or trains NaN): say so first.
        check_input_size(model, type(model).__name__, tuple(input_shape),
                         fix="Resize the images, e.g. jaxvision.data.load_splits(..., image_size=({height}, {width})).")
    return compile_initialization(lower_train_state(model, input_shape, optimizer, key), model)(key)


def lower_train_state(
    model: nn.Module, input_shape: Sequence[int], optimizer: optax.GradientTransformation, key: jax.Array
) -> jax.stages.Lowered:
    """``create_train_state``'s program, traced but not compiled, for overlapping compiles.

    ``lowered.out_info`` is the abstract TrainState (shapes and dtypes), enough to lower the steps
    while this compiles on another thread; ``compile_initialization(lowered, model)(key)`` then gives what
    ``create_train_state`` would.
    """
    return _initializer(model, input_shape, optimizer).lower(key)


def compile_initialization(lowered: jax.stages.Lowered, model: nn.Module | None = None) -> jax.stages.Compiled:
    """Compiles ``lower_train_state``'s program as ``create_train_state`` does for ``model``."""
    return lowered.compile(compiler_options=initialization_compiler_options(model))


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def loss_and_updates(
    state: TrainState, params: Any, batch: Batch, dropout_key: jax.Array, *, loss: Loss
) -> tuple[jax.Array, tuple[jax.Array, Any]]:
    """The training loss of ``params`` on a batch, with the logits and the new batch statistics.

    Split out of the train step so that per-example gradients and populations differentiate the very
    same function.
    """
    variables = {"params": params}
    apply_fn = training_forward(state.apply_fn)
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
        logits, updates = apply_fn(
            variables, batch.images, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"]
        )
        batch_stats = updates["batch_stats"]
    else:
        logits = apply_fn(variables, batch.images, train=True, rngs={"dropout": dropout_key})
        batch_stats = state.batch_stats
    # Models may compute in bf16; the loss and its gradient's start are always float32.
    logits = logits.astype(jnp.float32)
    return _masked_mean(loss(logits, batch.labels), batch.mask), (logits, batch_stats)


def is_finite(loss: jax.Array, grads: Any) -> jax.Array:
    """Whether ``loss`` and every leaf of ``grads`` are finite: a scalar bool."""
    checks = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(grads)]
    return jnp.logical_and(jnp.isfinite(loss), jnp.all(jnp.stack(checks)) if checks else True)


def split_step_key(key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The (augmentation, dropout) keys of one step: ``fold_in(key, step)``, split in two.

    A run resumed from a checkpoint at step s draws exactly the keys the original run drew, and the
    augmentation never shares a key with dropout.
    """
    augment_key, dropout_key = jax.random.split(jax.random.fold_in(key, step))
    return augment_key, dropout_key


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """One optimiser update on one batch, ``step(state, batch, key) -> (state, metrics)``; pure.

    Built by ``make_train_step``. Equal steps (same loss, augmentation and options) share their
    compiled programs. ``unjitted`` is the body, for ``vmap`` (populations) and sharded jits.

    Attributes:
      loss: the per-example loss ``(logits, labels) -> [batch]``.
      augment: on-device batch augmentation ``(key, batch) -> batch``, or None.
      compiler_options: XLA options as sorted (name, value) pairs; None lets the backend choose
        (``jaxvision.backends.compile``), ``()`` is XLA's defaults.
      frozen: top-level module names whose parameters stay fixed: no gradient is computed for them
        and they are carried over bit for bit (``jaxvision.transfer.frozen_modules``).
      ema_decay: keep ``state.ema_params``, an exponential moving average of the parameters with this
        decay (warmed up as TensorFlow's ExponentialMovingAverage: ``min(decay, (1 + t) / (10 + t))``);
        None keeps none.
      score: the per-example score reported as "accuracy", ``(outputs, labels) -> [batch]`` in [0, 1]; None is
        classification's (argmax == label). Tasks other than classification pass theirs (``jaxvision.tasks``).
    """

    loss: Loss
    augment: BatchAugment | None = None
    compiler_options: tuple[tuple[str, Any], ...] | None = None
    frozen: tuple[str, ...] = ()
    ema_decay: float | None = None
    score: Score | None = None

    def unjitted(self, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        """The step's body: fold ``state.step`` into ``key``, augment, differentiate, update."""
        augment_key, dropout_key = split_step_key(key, state.step)
        if self.augment is not None:
            batch = self.augment(augment_key, batch)
        trainable, fixed = split_frozen(state.params, self.frozen)

        def loss_of(trained: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
            return loss_and_updates(state, {**trained, **fixed}, batch, dropout_key, loss=self.loss)

        # Differentiating with respect to the trainable modules only: JAX then never builds the frozen
        # ones' backward pass (their tangents are symbolic zeros), which is the speed-up of a linear probe.
        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
        correct = _score(self.score, logits, batch.labels)
        full_grads = {**grads, **jax.tree.map(jnp.zeros_like, fixed)}
        new_state = state.apply_gradients(grads=full_grads, batch_stats=batch_stats)
        if fixed:
            # Whatever the optimiser does with a zero gradient (weight decay, momentum), frozen stays frozen.
            new_state = new_state.replace(params={**new_state.params, **fixed})
        if self.ema_decay is not None:
            new_state = new_state.replace(ema_params=_ema_update(state, new_state.params, self.ema_decay))
        # The divergence guard's flag: read by the loop at its next host sync, never here.
        finite = is_finite(loss, grads).astype(jnp.float32)
        return new_state, {"loss": loss, "accuracy": _masked_mean(correct, batch.mask), "finite": finite}

    def __call__(self, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        """Runs the step compiled for ``state``'s network.

        Args:
          state: the TrainState; its ``step`` is folded into ``key``.
          batch: a Batch; ``mask`` weights the loss.
          key: the run's base PRNG key (the same every step).

        Returns:
          (new state, {"loss", "accuracy", "finite"}) scalars on the batch before the update; "finite"
          is 1.0 when the loss and every gradient were finite, else 0.0.
        """
        compiled = compile_step(_run_train_step, state, static_argnames="step", compiler_options=_options(self.compiler_options))
        return compiled(state, batch, key, step=self)


@dataclasses.dataclass(frozen=True)
class EvalStep:
    """Sums over the real (mask = 1) examples of a batch, ``step(state, batch) -> metrics``; pure.

    Attributes:
      loss: the per-example loss ``(logits, labels) -> [batch]``.
      compiler_options: as ``TrainStep``'s.
      score: as ``TrainStep``'s; "correct" sums it.
    """

    loss: Loss
    compiler_options: tuple[tuple[str, Any], ...] | None = None
    score: Score | None = None

    def unjitted(self, state: TrainState, batch: Batch) -> Metrics:
        """{"loss_sum", "correct", "count"} of the batch's real examples, in eval mode (EMA weights if kept)."""
        logits = state.apply_fn(state.eval_variables, batch.images, train=False).astype(jnp.float32)
        correct = _score(self.score, logits, batch.labels)
        return {
            "loss_sum": jnp.sum(self.loss(logits, batch.labels) * batch.mask),
            "correct": jnp.sum(correct * batch.mask),
            "count": jnp.sum(batch.mask),
        }

    def __call__(self, state: TrainState, batch: Batch) -> Metrics:
        compiled = compile_step(_run_eval_step, state, static_argnames="step", compiler_options=_options(self.compiler_options))
        return compiled(state, batch, step=self)


def _score(score: Score | None, outputs: jax.Array, labels: Any) -> jax.Array:
    if score is None:
        return predicted_classes(outputs) == hard_labels(labels)
    return score(outputs, labels)


def split_frozen(params: Any, frozen: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` split by top-level module name into (trainable, frozen) dicts."""
    trainable = {name: value for name, value in params.items() if name not in frozen}
    fixed = {name: value for name, value in params.items() if name in frozen}
    return trainable, fixed


def _ema_update(state: TrainState, params: Any, decay: float) -> Any:
    if not state.ema_params:
        raise ValueError("make_train_step(ema_decay=...) needs a state with an EMA: start one with "
                         "jaxvision.train.with_ema(state) (fit does)")
    step = state.step.astype(jnp.float32)
    rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda average, value: rate * average + (1.0 - rate) * value, state.ema_params, params)


# Module-level, with the step as a static argument: equal steps (equal loss, augmentation and options)
# then share one compiled program, which bound methods (compared by identity) would not.
def _run_train_step(state: TrainState, batch: Batch, key: jax.Array, *, step: TrainStep) -> tuple[TrainState, Metrics]:
    return step.unjitted(state, batch, key)


def _run_eval_step(state: TrainState, batch: Batch, *, step: EvalStep) -> Metrics:
    return step.unjitted(state, batch)


def _options(options: tuple[tuple[str, Any], ...] | None) -> dict[str, Any] | None:
    return None if options is None else dict(options)


def _options_key(compiler_options: dict[str, Any] | None) -> tuple[tuple[str, Any], ...] | None:
    return None if compiler_options is None else tuple(sorted(compiler_options.items()))


def make_train_step(
    *, loss: str | Loss = "cross_entropy", augment: BatchAugment | None = None,
    compiler_options: dict[str, Any] | None = None, label_smoothing: float = 0.0,
    frozen: Sequence[str] = (), ema_decay: float | None = None, score: Score | None = None,
) -> TrainStep:
    """Builds the train step from its parts.

    Args:
      loss: a name in ``jaxvision.losses.LOSSES`` or a ``(logits, labels) -> [batch]`` function.
      augment: optional ``(key, batch) -> batch`` run inside the step on device (e.g.
        ``jaxvision.augment.parse_augment_spec(...)``), with its own key, never dropout's.
      compiler_options: XLA compile options; None (default) lets ``jaxvision.backends`` choose for
        the network, ``{}`` is XLA's defaults.
      label_smoothing: in [0, 1): train on ``(1 - s) * one_hot + s / classes`` targets (softmax
        cross-entropy only); evaluation keeps the plain loss.
      frozen: top-level module names to keep fixed (see ``TrainStep.frozen``); run the model through
        ``jaxvision.transfer.with_frozen_layers`` too, so their batch norm and dropout are in inference mode.
      ema_decay: in (0, 1), keep an EMA of the parameters (see ``TrainStep.ema_decay``).
      score: the per-example score logged as "accuracy" (see ``TrainStep.score``); None is classification's.

    Returns:
      A TrainStep: ``step(state, batch, key) -> (state, metrics)``.

    Raises:
      ValueError: for an unknown loss, label smoothing outside [0, 1) or on another loss, or an EMA decay
        outside (0, 1).
    """
    loss_fn = get_loss(loss)
    if label_smoothing:
        loss_fn = smoothed(loss_fn, label_smoothing)
    if ema_decay is not None and not (0.0 < ema_decay < 1.0):
        raise ValueError(f"Invalid ema_decay={ema_decay}: expected a number in (0, 1), e.g. 0.999 (--ema-decay 0.999)")
    return TrainStep(loss=loss_fn, augment=augment, compiler_options=_options_key(compiler_options),
                     frozen=tuple(sorted(frozen)), ema_decay=None if ema_decay is None else float(ema_decay),
                     score=score)


def make_eval_step(*, loss: str | Loss = "cross_entropy", compiler_options: dict[str, Any] | None = None,
                   score: Score | None = None) -> EvalStep:
    """Builds the eval step: ``step(state, batch) -> {"loss_sum", "correct", "count"}``.

    Args:
      loss: as ``make_train_step``'s.
      compiler_options: as ``make_train_step``'s.
      score: as ``make_train_step``'s.
    """
    return EvalStep(loss=get_loss(loss), compiler_options=_options_key(compiler_options), score=score)


# The default steps: softmax cross-entropy, no augmentation.
train_step = make_train_step()
eval_step = make_eval_step()


def predict(state: TrainState, images: jax.Array) -> jax.Array:
    """Eval-mode logits ``[batch, num_classes]`` for ``images`` ``[batch, h, w, c]`` (EMA weights if kept)."""
    return state.apply_fn(state.eval_variables, images, train=False)


__all__ = [
    "Batch",
    "BatchAugment",
    "EvalStep",
    "Metrics",
    "Score",
    "TrainState",
    "TrainStep",
    "compile_initialization",
    "create_train_state",
    "eval_step",
    "is_finite",
    "loss_and_updates",
    "lower_train_state",
    "make_eval_step",
    "make_train_step",
    "predict",
    "split_frozen",
    "split_step_key",
    "state_from_variables",
    "train_step",
    "with_ema",
]
