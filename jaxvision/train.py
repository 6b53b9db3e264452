"""The training state and the two pure steps: ``train_step(state, batch, key)`` and ``eval_step``.

Both are jitted once per model/optimiser configuration; nothing in them reads a global or branches on
a value that changes between steps, so they also vmap (populations) and shard (data parallelism).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from jaxvision.losses import Loss, get_loss, hard_labels, predicted_classes

Metrics = dict[str, jax.Array]


@struct.dataclass
class Batch:
    """One batch of examples.

    Attributes:
      images: [batch, height, width, channels] float32, normalised.
      labels: [batch] int32 classes, or [batch, num_classes] float32 soft labels.
      mask: [batch] float32; 1 for a real example, 0 for padding (only the last eval batch has any).
    """

    images: jax.Array
    labels: jax.Array
    mask: jax.Array

    @classmethod
    def of(cls, images: Any, labels: Any) -> "Batch":
        """A batch with every example real (mask of ones)."""
        images = jnp.asarray(images, jnp.float32)
        return cls(images=images, labels=jnp.asarray(labels), mask=jnp.ones(images.shape[0], jnp.float32))


# (key, batch) -> batch, run on device inside the train step. It may change the labels too
# (mixup and cutmix return soft labels [batch, num_classes]).
BatchAugment = Callable[[jax.Array, Batch], Batch]


class TrainState(train_state.TrainState):
    """Everything a training run carries between steps; a pytree, checkpointable as is.

    Attributes (besides flax's ``step``, ``params``, ``opt_state``, ``apply_fn``, ``tx``):
      batch_stats: batch-norm running statistics; empty for models without batch norm.
      loss_fn: the per-example loss (static).
      augment_fn: on-device batch augmentation ``(key, batch) -> batch``, or None (static).
    """

    batch_stats: Any = struct.field(default_factory=dict)
    loss_fn: Loss = struct.field(pytree_node=False, default=get_loss("cross_entropy"))
    augment_fn: BatchAugment | None = struct.field(pytree_node=False, default=None)

    @property
    def variables(self) -> dict[str, Any]:
        """The model's variables, as ``apply_fn`` takes them."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}


# How initialisations compile (create_train_state, create_population): see _initializer.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
# XLA:CPU's legacy loop emitters (jaxvision/step_compilation.py says where they are faster). They halve
# the initialisation's compile for the same run time: MnistCNN 0.51-0.54 -> 0.25-0.29 s, ResNet-20
# 1.18-1.20 -> 0.99-1.07 s (2-core CPU).
LEGACY_CPU_EMITTERS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False}


def legacy_emitters_on_cpu() -> dict[str, Any]:
    """``LEGACY_CPU_EMITTERS`` on the CPU backend, else no options (the flag is XLA:CPU's)."""
    return dict(LEGACY_CPU_EMITTERS) if jax.default_backend() == "cpu" else {}


def initialization_compiler_options() -> dict[str, Any]:
    """The XLA compile options of initialisation programs on the current backend."""
    return {**INIT_COMPILER_OPTIONS, **legacy_emitters_on_cpu()}


def _initializer(
    model: nn.Module,
    input_shape: Sequence[int],
    optimizer: optax.GradientTransformation,
    loss: str | Loss,
    augment: BatchAugment | None,
) -> Callable[[jax.Array], TrainState]:
    loss_fn = get_loss(loss)

    # One program for the initialisation and the optimiser state (run eagerly, optax's init is one
    # small dispatch per leaf and moment), compiled without XLA's backend optimisations: it runs once,
    # and optimising the threefry RNG of every initialiser dominates its compile time (MnistCNN on a
    # 2-core CPU: 1.9 s optimised against 0.6 s, for a 40 ms instead of 8 ms run).
    @jax.jit
    def initialize(key: jax.Array) -> TrainState:
        params_key, dropout_key = jax.random.split(key)
        dummy = jnp.zeros((1, *input_shape), jnp.float32)
        variables = model.init({"params": params_key, "dropout": dropout_key}, dummy, train=False)
        return TrainState.create(
            apply_fn=model.apply,
            params=variables["params"],
            tx=optimizer,
            batch_stats=variables.get("batch_stats", {}),
            loss_fn=loss_fn,
            augment_fn=augment,
        )

    return initialize


def create_train_state(
    model: nn.Module,
    input_shape: Sequence[int],
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    *,
    loss: str | Loss = "cross_entropy",
    augment: BatchAugment | None = None,
) -> TrainState:
    """Initialises a model's parameters and the optimiser state.

    Args:
      model: a Flax module with ``__call__(x, *, train)``.
      input_shape: one example's shape, e.g. ``(28, 28, 1)``.
      optimizer: an optax transformation, e.g. from ``make_optimizer``.
      key: PRNG key for the initial parameters.
      loss: a name in ``jaxvision.losses.LOSSES`` or a ``(logits, labels) -> [batch]`` function.
      augment: optional ``(key, batch) -> batch`` run inside the train step.

    Returns:
      A TrainState at step 0.
    """
    if isinstance(key, jax.core.Tracer):  # inside someone's jit or vmap: part of their program
        return _initializer(model, input_shape, optimizer, loss, augment)(key)
    lowered = lower_train_state(model, input_shape, optimizer, key, loss=loss, augment=augment)
    return compile_initialization(lowered)(key)


def lower_train_state(
    model: nn.Module,
    input_shape: Sequence[int],
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    *,
    loss: str | Loss = "cross_entropy",
    augment: BatchAugment | None = None,
) -> jax.stages.Lowered:
    """``create_train_state``'s program, traced but not compiled, for overlapping compiles.

    ``lowered.out_info`` is the abstract TrainState (shapes and dtypes), enough to lower the train and
    eval steps while this compiles on another thread; ``compile_initialization(lowered)(key)`` then
    gives what ``create_train_state`` would. Arguments as ``create_train_state``'s.
    """
    return _initializer(model, input_shape, optimizer, loss, augment).lower(key)


def compile_initialization(lowered: jax.stages.Lowered) -> jax.stages.Compiled:
    """Compiles ``lower_train_state``'s program the way ``create_train_state`` does
    (``initialization_compiler_options``: no backend optimisations; on CPU, legacy loop emitters)."""
    return lowered.compile(compiler_options=initialization_compiler_options())


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def loss_and_updates(
    state: TrainState, params: Any, batch: Batch, dropout_key: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, Any]]:
    """The training loss of ``params`` on a batch, with the logits and new batch statistics.

    Split out of ``train_step`` so that per-example gradients and populations can differentiate
    the very same function.
    """
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
        logits, updates = state.apply_fn(
            variables, batch.images, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"]
        )
        batch_stats = updates["batch_stats"]
    else:
        logits = state.apply_fn(variables, batch.images, train=True, rngs={"dropout": dropout_key})
        batch_stats = state.batch_stats
    # Models may compute in bf16; the loss and its gradient's start are always float32.
    logits = logits.astype(jnp.float32)
    loss = _masked_mean(state.loss_fn(logits, batch.labels), batch.mask)
    return loss, (logits, batch_stats)


def split_step_key(key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The (augmentation, dropout) keys of one step: ``fold_in(key, step)``, split in two.

    A run resumed from a checkpoint at step s draws exactly the keys the original run drew.
    """
    return tuple(jax.random.split(jax.random.fold_in(key, step)))


def train_step_unjitted(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One optimiser update on one batch (the un-jitted body of ``train_step``, for vmap/shard_map)."""
    augment_key, dropout_key = split_step_key(key, state.step)
    if state.augment_fn is not None:
        batch = state.augment_fn(augment_key, batch)
    grad_fn = jax.value_and_grad(lambda p: loss_and_updates(state, p, batch, dropout_key), has_aux=True)
    (loss, (logits, batch_stats)), grads = grad_fn(state.params)
    correct = predicted_classes(logits) == hard_labels(batch.labels)
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return new_state, {"loss": loss, "accuracy": _masked_mean(correct, batch.mask)}


train_step = jax.jit(train_step_unjitted)
train_step.__doc__ = """One optimiser update on one batch; pure and jitted (with XLA's default compile options;
``jaxvision.steps_for(state)`` gives it compiled with the network's own, as ``jaxvision.fit`` runs it).

Args:
  state: the TrainState; its ``step`` is folded into ``key``.
  batch: a Batch; ``mask`` weights the loss.
  key: the run's base PRNG key (the same every step).

Returns:
  (new state, {"loss": scalar, "accuracy": scalar}) on the batch before the update.
"""


def eval_step_unjitted(state: TrainState, batch: Batch) -> Metrics:
    """Sums over the real (mask = 1) examples of a batch: loss, correct predictions and count."""
    logits = state.apply_fn(state.variables, batch.images, train=False).astype(jnp.float32)
    losses = state.loss_fn(logits, batch.labels)
    correct = predicted_classes(logits) == hard_labels(batch.labels)
    return {
        "loss_sum": jnp.sum(losses * batch.mask),
        "correct": jnp.sum(correct * batch.mask),
        "count": jnp.sum(batch.mask),
    }


eval_step = jax.jit(eval_step_unjitted)
eval_step.__doc__ = eval_step_unjitted.__doc__


def predict(state: TrainState, images: jax.Array) -> jax.Array:
    """Eval-mode logits ``[batch, num_classes]`` for ``images`` ``[batch, h, w, c]``."""
    return state.apply_fn(state.variables, images, train=False)
