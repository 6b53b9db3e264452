"""A new classifier on a trained backbone: the same architecture with another number of classes."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.backends.compile import initialization_compiler_options
from jaxvision.transfer.freezing import _checked_input_shape, head_name


def _checked_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(
            f"Invalid num_classes={num_classes!r}: expected a positive integer (the classes of the new "
            f"labels), e.g. num_classes=10."
        )
    return int(num_classes)


def _initializer(model: nn.Module, input_shape: tuple[int, ...]):
    # The keys and call of create_train_state, so the new head is the one a fresh run would start from.
    def initialize(key: jax.Array) -> Any:
        params_key, dropout_key = jax.random.split(key)
        dummy = jnp.zeros((1, *input_shape), jnp.float32)
        return model.init({"params": params_key, "dropout": dropout_key}, dummy, train=False)

    return initialize


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(jnp.shape(leaf)) for path, leaf in leaves}


def with_new_head(
    model: nn.Module, variables: Any, num_classes: int, key: jax.Array, input_shape: Sequence[int]
) -> tuple[nn.Module, dict[str, Any]]:
    """The same architecture with ``num_classes`` outputs, the backbone's variables and a fresh head.

    Args:
      model: a zoo model (with a ``num_classes`` field).
      variables: its trained variables (``{"params": ..., "batch_stats": ...}``).
      num_classes: outputs of the new head.
      key: PRNG key for the head; the head is the one ``create_train_state(new_model, input_shape,
        optimizer, key)`` would initialise (the model's own initialiser).
      input_shape: one example's shape, e.g. ``(28, 28, 1)``.

    Returns:
      ``(new_model, new_variables)``: every variable but the head's copied from ``variables``.

    Raises:
      ValueError: for a bad num_classes, a model without ``num_classes``, or variables that do not
        fit the architecture outside the head (every missing, unexpected or misshapen one listed).
    """
    num_classes = _checked_classes(num_classes)
    shape = _checked_input_shape(input_shape)
    if "num_classes" not in {field.name for field in dataclasses.fields(model)}:
        raise ValueError(f"{type(model).__name__} has no num_classes field: build it with jaxvision.get_model(...).")
    head = head_name(model, shape)
    new_model = model.clone(num_classes=num_classes)
    initialize = _initializer(new_model, shape)
    expected = _shapes(jax.eval_shape(initialize, key))
    given = _shapes(variables)
    in_head = f"params/{head}/"

    problems = []
    for path in sorted(set(expected) | set(given)):
        if path.startswith(in_head):
            continue
        if path not in given:
            problems.append(f"missing {path} {expected[path]}")
        elif path not in expected:
            problems.append(f"unexpected {path} {given[path]}")
        elif given[path] != expected[path]:
            problems.append(f"{path} is {given[path]}, expected {expected[path]}")
    if problems:
        raise ValueError(
            f"The variables do not fit {type(model).__name__} on input_shape={shape} outside its head: "
            f"{'; '.join(problems)}. Pass the variables this model was trained with, and its input_shape."
        )
    # Only the head leaves the program, so XLA drops the rest of the initialisation; create_train_state's
    # compile options, so that the head is bit for bit the one a fresh run starts from.
    fresh_head = jax.jit(lambda k: initialize(k)["params"][head],
                         compiler_options=initialization_compiler_options(new_model))(key)
    new_variables = {collection: dict(tree) for collection, tree in variables.items()}
    new_variables["params"][head] = fresh_head
    return new_model, new_variables

