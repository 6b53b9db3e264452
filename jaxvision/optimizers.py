"""Optimisers and learning-rate schedules by name, assembled from optax.

The peak learning rate and the weight decay are injected hyperparameters (``optax.inject_hyperparams``),
so they live in the optimiser state as arrays: a vmapped population can give each member its own, and
``state.opt_state.hyperparams["learning_rate"]`` shows the value in use. The schedule is a *shape*
(a multiplier with peak 1) applied on top of the injected peak rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxvision._suggest import unknown_name_error

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "warmup_cosine", "onecycle")


def make_schedule(name: str, total_steps: int) -> optax.Schedule:
    """A learning-rate multiplier over ``total_steps`` steps, peaking at 1.

    - constant: 1 throughout.
    - step: 1, then 0.1 after half the steps, 0.01 after three quarters.
    - exponential: decays smoothly from 1 to 0.01 at the last step.
    - warmup_cosine: linear warm-up from 0 over the first 10% of steps, then cosine decay to 0.
    - onecycle: the one-cycle policy (Smith, 2018) as implemented by optax.

    Raises:
      ValueError: for an unknown name.
    """
    total_steps = max(int(total_steps), 1)
    if name == "constant":
        return optax.constant_schedule(1.0)
    if name == "step":
        return optax.piecewise_constant_schedule(1.0, {total_steps // 2: 0.1, (3 * total_steps) // 4: 0.1})
    if name == "exponential":
        return optax.exponential_decay(1.0, transition_steps=total_steps, decay_rate=0.01)
    if name == "warmup_cosine":
        warmup = max(total_steps // 10, 1)
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(total_steps, warmup + 1))
    if name == "onecycle":
        return optax.cosine_onecycle_schedule(total_steps, 1.0)
    raise unknown_name_error("schedule", name, SCHEDULES)


def _base_optimizer(name: str, learning_rate: Callable, weight_decay: jnp.ndarray, momentum: float):
    if name == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        base = optax.sgd(learning_rate)
    elif name == "momentum":
        base = optax.sgd(learning_rate, momentum=momentum)
    elif name == "nesterov":
        base = optax.sgd(learning_rate, momentum=momentum, nesterov=True)
    elif name == "adam":
        base = optax.adam(learning_rate)
    else:
        raise unknown_name_error("optimizer", name, OPTIMIZERS)
    # For the non-decoupled optimisers weight decay is classic L2 regularisation: wd * params is
    # added to the gradient before the update rule sees it.
    return optax.chain(optax.add_decayed_weights(weight_decay), base)


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    total_steps: int = 1,
    schedule: str = "constant",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    clip_grad_norm: float | None = None,
    accumulate_steps: int = 1,
) -> optax.GradientTransformation:
    """Builds an optax optimiser by name.

    Args:
      name: one of ``OPTIMIZERS``: sgd, momentum, nesterov, adam, adamw.
      learning_rate: peak learning rate, > 0.
      total_steps: steps the schedule spans (epochs * steps per epoch).
      schedule: one of ``SCHEDULES``.
      weight_decay: decoupled decay for adamw, L2 regularisation for the others.
      momentum: for momentum and nesterov.
      clip_grad_norm: clip each gradient to this global L2 norm first (``optax.clip_by_global_norm``).
      accumulate_steps: average the gradients of this many steps before each update
        (``optax.MultiSteps``): the effective batch is ``accumulate_steps`` times the batch, and the
        schedule spans ``total_steps / accumulate_steps`` updates.

    Returns:
      A GradientTransformation whose state carries ``hyperparams["learning_rate"]`` and
      ``hyperparams["weight_decay"]`` (inside ``inner_opt_state`` when accumulating; see ``hyperparams``).

    Raises:
      ValueError: for an unknown name or schedule, or a learning rate, weight decay, momentum or clipping
        norm that is negative (the rate and the norm: not positive) or not finite, or accumulate_steps < 1.
    """
    if name not in OPTIMIZERS:
        raise unknown_name_error("optimizer", name, OPTIMIZERS)
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(f"Invalid learning_rate={learning_rate}: expected a finite positive number, e.g. 1e-3.")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"Invalid weight_decay={weight_decay}: expected a finite number >= 0, e.g. 1e-4.")
    if not (momentum >= 0 and math.isfinite(momentum)):
        raise ValueError(f"Invalid momentum={momentum}: expected a finite number >= 0, e.g. 0.9.")
    if clip_grad_norm is not None and not (clip_grad_norm > 0 and math.isfinite(clip_grad_norm)):
        raise ValueError(f"Invalid clip_grad_norm={clip_grad_norm}: expected a finite positive number, e.g. 1.0 "
                         "(--clip-grad-norm 1.0).")
    if isinstance(accumulate_steps, bool) or not isinstance(accumulate_steps, int) or accumulate_steps < 1:
        raise ValueError(f"Invalid accumulate_steps={accumulate_steps!r}: expected an integer >= 1, e.g. 4 "
                         "(--accumulate-steps 4).")
    shape = make_schedule(schedule, -(-max(int(total_steps), 1) // accumulate_steps))

    @optax.inject_hyperparams
    def optimizer(learning_rate, weight_decay):
        base = _base_optimizer(name, lambda count: learning_rate * shape(count), weight_decay, momentum)
        if clip_grad_norm is None:
            return base
        return optax.chain(optax.clip_by_global_norm(clip_grad_norm), base)

    transformation = optimizer(learning_rate=learning_rate, weight_decay=weight_decay)
    if accumulate_steps > 1:
        return optax.MultiSteps(transformation, every_k_schedule=accumulate_steps)
    return transformation


def hyperparams(opt_state) -> dict:
    """The injected hyperparameters (``learning_rate``, ``weight_decay``) of a ``make_optimizer`` state,
    looked up through gradient accumulation and fine-tuning's per-part states; {} if there are none."""
    def injected(node) -> bool:
        # optax.inject_hyperparams' states (InjectHyperparamsState, or the stateful variant newer optax
        # returns) are the named tuples with a hyperparams dict.
        return isinstance(node, tuple) and isinstance(getattr(node, "hyperparams", None), dict)

    for node in jax.tree.leaves(opt_state, is_leaf=injected):
        if injected(node):
            return dict(node.hyperparams)
    return {}
