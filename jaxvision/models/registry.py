"""The model registry: every model by name, built with ``get_model(name, num_classes=...)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxvision._suggest import unknown_name_error
from jaxvision.models.lenet import LeNet5
from jaxvision.models.mlp import MLP
from jaxvision.models.perceptron import Perceptron
from jaxvision.models.simple_cnn import SimpleCNN

ModelConstructor = Callable[..., nn.Module]

_MODELS: dict[str, ModelConstructor] = {
    "perceptron": Perceptron,
    "mlp": MLP,
    "lenet5": LeNet5,
    "simple_cnn": SimpleCNN,
}


def register_model(name: str, constructor: ModelConstructor) -> None:
    """Adds a model under ``name``; the constructor must accept ``num_classes=``."""
    if name in _MODELS:
        raise ValueError(f"A model named {name!r} is already registered; pick another name.")
    _MODELS[name] = constructor


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def get_model(name: str, num_classes: int = 10, **overrides: Any) -> nn.Module:
    """Builds the registered model ``name``.

    Args:
      name: a name from ``list_models()``, e.g. "lenet5".
      num_classes: number of output logits.
      **overrides: any other field of the model, e.g. ``dropout_rate=0.5`` or ``activation="tanh"``.

    Raises:
      ValueError: for an unknown name or an override the model does not have.
    """
    if name not in _MODELS:
        raise unknown_name_error("model", name, _MODELS)
    constructor = _MODELS[name]
    model_class = getattr(constructor, "func", constructor)  # functools.partial variants
    fields = {f.name for f in dataclasses.fields(model_class)} - {"parent", "name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"Model {name!r} has no field(s) {', '.join(unknown)}. "
            f"Its fields: {', '.join(sorted(fields))}."
        )
    return constructor(num_classes=num_classes, **overrides)
