"""Populations: N TrainStates stacked along a leading axis, trained together by one jitted step.

A population is one pytree whose every leaf has a leading member axis, so ``jax.vmap`` of a train
step's body (``TrainStep.unjitted``) trains all members at the cost of one larger program. Members differ by

- seed: the initial parameters, the dropout/augmentation keys and the order of the training data
  (``member_keys``), and/or
- hyperparameters that are *data*, not static configuration: the learning rate and weight decay live
  in the optimiser state (``optax.inject_hyperparams``, see ``make_optimizer``), and the dropout rate
  is a per-member array fed to ``model.clone(dropout_rate=...)`` inside the vmapped step
  (``jaxvision.models.layers.Dropout`` takes a traced rate).

A member whose ``active`` flag is False (early-stopped) still runs through the step, because vmap
runs every member, but its update is masked: its state comes out unchanged.

The same per-member function (``member_train_step``) runs either vectorised (``jax.vmap``) or jitted
on its own and called once per member; which is faster depends on the backend and the model (see
``benchmarks/experiments/population_vs_loop.py`` and ``jaxvision.ensemble.fit_population``'s ``strategy``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxvision.backends.compile import compile_step, initialization_compiler_options
from jaxvision.batch import Batch, Metrics
from jaxvision.train import TrainState, TrainStep, create_train_state, train_step

# "vmap": all members as one batched program; "loop": one jitted single-member step per member,
# called one after another from Python (N sequential runs in lockstep).
STRATEGIES = ("vmap", "loop")
# Hyperparameters a member may override; they must be injected into the optimiser state.
_OPTIMIZER_HYPERPARAMS = ("learning_rate", "weight_decay")


@dataclasses.dataclass(frozen=True)
class MemberConfig:
    """What makes one member of a population different from the others.

    Attributes:
      seed: seeds the member's initial parameters, dropout/augmentation keys and data order.
      learning_rate: peak learning rate; None keeps the optimiser's own.
      weight_decay: weight decay; None keeps the optimiser's own.
      dropout_rate: the model's ``dropout_rate``; None keeps the model's own.
    """

    seed: int
    learning_rate: float | None = None
    weight_decay: float | None = None
    dropout_rate: float | None = None

    def describe(self) -> dict[str, Any]:
        """The fields that are set, e.g. ``{"seed": 0, "learning_rate": 0.001}``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def member_grid(
    seeds: Sequence[int],
    *,
    learning_rates: Sequence[float] | None = None,
    weight_decays: Sequence[float] | None = None,
    dropout_rates: Sequence[float] | None = None,
) -> tuple[MemberConfig, ...]:
    """Every combination of the given seeds and hyperparameters, seeds varying fastest.

    ``member_grid([0, 1], learning_rates=[1e-3, 1e-2])`` is 4 members: (lr 1e-3, seed 0), (1e-3, 1),
    (1e-2, 0), (1e-2, 1). A hyperparameter left as None is not varied.
    """
    if not seeds:
        raise ValueError("A population needs at least one seed, e.g. seeds=[0].")
    grid = itertools.product(learning_rates or [None], weight_decays or [None], dropout_rates or [None], seeds)
    return tuple(
        MemberConfig(seed=int(s), learning_rate=lr, weight_decay=wd, dropout_rate=dr) for lr, wd, dr, s in grid
    )


def member_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A member's (init, train, data) keys: parameters, per-step dropout/augmentation, data order."""
    init_key, train_key, data_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, train_key, data_key


def epoch_order(data_key: jax.Array, epoch: int | jax.Array, num_examples: int) -> jax.Array:
    """The order in which a member sees the ``num_examples`` training examples in ``epoch``.

    A permutation drawn from ``fold_in(data_key, epoch)``: every member has its own order, and epoch k
    of a resumed run sees the same order as epoch k of the original. Step s of the epoch trains on
    ``order[s * batch_size:(s + 1) * batch_size]``; the remainder is dropped.
    """
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


@struct.dataclass
class Population:
    """N training runs as one pytree; every array leaf has a leading member axis of size N.

    Attributes:
      state: the members' TrainStates, stacked (``state.params`` leaves are ``[N, ...]``).
      dropout_rate: [N] float32 per-member dropout rates, or None to use the model's own.
      active: [N] bool; a member with False is frozen (its updates are masked).
      model: the Flax module every member instantiates (static).
      members: the MemberConfig of each member (static).
    """

    state: TrainState
    dropout_rate: jax.Array | None
    active: jax.Array
    model: nn.Module = struct.field(pytree_node=False)
    members: tuple[MemberConfig, ...] = struct.field(pytree_node=False)

    @property
    def size(self) -> int:
        return len(self.members)

    def member(self, index: int) -> TrainState:
        """Member ``index``'s TrainState, unstacked; its eval-mode ``apply_fn`` is the shared model's."""
        return jax.tree.map(lambda leaf: leaf[index], self.state)

    def unstack(self) -> list[tuple[TrainState, jax.Array | None, jax.Array]]:
        """Every member's (state, dropout rate, active flag), unstacked, for a per-member loop."""
        states = unstack_states(self.state, self.size)
        rates = [None] * self.size if self.dropout_rate is None else list(self.dropout_rate)
        return list(zip(states, rates, list(self.active)))


def _set_hyperparam(opt_state: Any, name: str, values: list[float | None]) -> Any:
    hyperparams = getattr(opt_state, "hyperparams", None)
    if not isinstance(hyperparams, dict) or name not in hyperparams:
        raise ValueError(
            f"Members set {name} but the optimiser does not expose it as an injected hyperparameter. "
            f"Build it with jaxvision.make_optimizer(...) or wrap it in optax.inject_hyperparams."
        )
    current = hyperparams[name]
    merged = jnp.asarray([current[i] if v is None else v for i, v in enumerate(values)], dtype=current.dtype)
    return opt_state._replace(hyperparams={**hyperparams, name: merged})


def create_population(
    model: nn.Module,
    input_shape: Sequence[int],
    optimizer: optax.GradientTransformation,
    members: Sequence[MemberConfig],
) -> Population:
    """Initialises one TrainState per member and stacks them.

    Args:
      model: a Flax module with ``__call__(x, *, train)``; it needs a ``dropout_rate`` field if any
        member sets one.
      input_shape: one example's shape, e.g. ``(28, 28, 1)``.
      optimizer: shared by all members; members' learning rates and weight decays overwrite its
        injected hyperparameters (``make_optimizer`` injects both).
      members: e.g. ``member_grid(range(8))``; member i is initialised from ``member_keys(seed)[0]``.

    Returns:
      A Population whose member i equals ``create_train_state(model, input_shape, optimizer,
      member_keys(members[i].seed)[0])`` with member i's hyperparameters.
    """
    members = tuple(members)
    if not members:
        raise ValueError("A population needs at least one member, e.g. members=member_grid([0, 1, 2]).")
    # One compiled initialisation called per member: vmapping it over keys compiles far slower on
    # XLA:CPU (batched threefry), and compiled as create_train_state compiles it, member i is bit for
    # bit a single run's initial state.
    initialize = jax.jit(lambda key: create_train_state(model, input_shape, optimizer, key))
    keys = [member_keys(m.seed)[0] for m in members]
    initialize = initialize.lower(keys[0]).compile(compiler_options=initialization_compiler_options(model))
    state = stack_states([initialize(key) for key in keys])
    opt_state = state.opt_state
    for name in _OPTIMIZER_HYPERPARAMS:
        values = [getattr(m, name) for m in members]
        if any(v is not None for v in values):
            opt_state = _set_hyperparam(opt_state, name, values)
    state = state.replace(opt_state=opt_state)
    dropout_rate = None
    if any(m.dropout_rate is not None for m in members):
        default = getattr(model, "dropout_rate", None)
        if default is None:
            raise ValueError(
                f"Members set dropout_rate but {type(model).__name__} has no dropout_rate field; "
                "vary learning_rate or weight_decay instead, or use a model with dropout (mlp, lenet5, simple_cnn)."
            )
        dropout_rate = jnp.asarray([default if m.dropout_rate is None else m.dropout_rate for m in members], jnp.float32)
    return Population(
        state=state, dropout_rate=dropout_rate, active=jnp.ones(len(members), bool), model=model, members=members
    )


def member_train_step(
    model: nn.Module, step: TrainStep, state: TrainState, dropout_rate: jax.Array | None, active: jax.Array,
    batch: Batch, key: jax.Array,
) -> tuple[TrainState, Metrics]:
    """``step``'s body for one (unstacked) member, with its dropout rate and its stop mask.

    The dropout rate is data: the step runs ``model.clone(dropout_rate=rate)``, whose Dropout layers
    accept a traced rate, so one compiled program serves every rate. An inactive member's new state is
    its old state.
    """
    member_state = state
    if dropout_rate is not None:
        member_state = state.replace(apply_fn=model.clone(dropout_rate=dropout_rate).apply)
    new_state, metrics = step.unjitted(member_state, batch, key)
    # Put the shared apply_fn back: the clone holds a tracer and must not leave the step.
    new_state = new_state.replace(apply_fn=state.apply_fn)
    new_state = jax.tree.map(lambda new, old: jnp.where(active, new, old), new_state, state)
    return new_state, metrics


def _population_train_step(population: Population, batch: Batch, keys: jax.Array, *, step: TrainStep
                           ) -> tuple[Population, Metrics]:
    member_step = functools.partial(member_train_step, population.model, step)
    state, metrics = jax.vmap(member_step)(population.state, population.dropout_rate, population.active, batch, keys)
    return population.replace(state=state), metrics


def population_train_step(population: Population, batch: Batch, keys: jax.Array, *, step: TrainStep = train_step
                          ) -> tuple[Population, Metrics]:
    """One optimiser update of every member on its own batch: ``jit(vmap(step))``.

    Compiled as every step of the network is (``jaxvision.backends.compile.compile_step``).

    Args:
      population: the Population.
      batch: a Batch whose leaves have a leading member axis: images [N, batch, h, w, c], etc.
      keys: [N] the members' base PRNG keys (``member_keys(seed)[1]``), each folded with its step.
      step: the train step (loss, augmentation) every member runs; default cross-entropy.

    Returns:
      (new population, {"loss": [N], "accuracy": [N]}) on each member's batch before its update.
    """
    compiled = compile_step(_population_train_step, population.state, static_argnames="step",
                            compiler_options=step_options(step))
    return compiled(population, batch, keys, step=step)


def step_options(step: TrainStep) -> dict | None:
    """A TrainStep's own compile options as a dict, or None to let the backend choose."""
    return None if step.compiler_options is None else dict(step.compiler_options)


def gather_member_batches(images: jax.Array, labels: jax.Array, orders: jax.Array, step: jax.Array, batch_size: int) -> Batch:
    """Step ``step``'s batch of every member from on-device arrays and per-member orders.

    Args:
      images: [num_examples, h, w, c] the whole training split, on device.
      labels: [num_examples].
      orders: [N, num_examples] each member's ``epoch_order``.
      step: the step within the epoch (may be traced).
      batch_size: examples per member per step (static).

    Returns:
      A Batch with leaves [N, batch_size, ...].
    """
    indices = jax.lax.dynamic_slice_in_dim(orders, step * batch_size, batch_size, axis=1)
    return Batch(images=images[indices], labels=labels[indices], mask=jnp.ones(indices.shape, jnp.float32))


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """Stacks equally structured TrainStates (same model and optimiser objects) along a new axis 0."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def unstack_states(state: TrainState, size: int) -> list[TrainState]:
    """The inverse of ``stack_states``."""
    leaves, treedef = jax.tree.flatten(state)
    per_leaf = [list(leaf) for leaf in leaves]  # one slicing pass per leaf, not per member and leaf
    return [jax.tree.unflatten(treedef, [parts[i] for parts in per_leaf]) for i in range(size)]
