"""The one seam for backend-specific speed: which layers a model is built with, and how it compiles.

Models in ``jaxvision.models`` are textbook Flax: their convolution, normalisation, pooling (and
ResNet's activation) are module fields defaulting to flax's own layers (``conv=nn.Conv``,
``norm=nn.BatchNorm``, ``max_pool=nn.max_pool``, ``avg_pool=nn.avg_pool``, ``act=nn.relu``), in
the style of the flax ImageNet example. ``kernels`` picks what fills those fields:

- ``"reference"``: flax's layers and XLA's default compile options: what GPUs and TPUs run;
- ``"cpu"``: ``jaxvision.backends.cpu``'s XLA:CPU layers (same parameters, same results up to float
  rounding, every JAX transform) and its compile options;
- ``"auto"`` (the default of ``get_model``): ``"cpu"`` on the CPU backend, else ``"reference"``.

A train step calls ``training_forward(state.apply_fn)``: with the CPU layers, the model's ``apply``
rewritten to pool before the bias and ReLU (same values; ``jaxvision.backends.cpu.pool_first_rewrite``).
Process settings (an XLA flag, huge pages for XLA:CPU's buffers) live in ``jaxvision.backends.process``
and apply only to the training commands on a CPU-only platform.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from jaxvision._suggest import unknown_name_error
from jaxvision.backends import cpu

KERNELS = ("auto", "reference", "cpu")

REFERENCE_LAYERS: dict[str, Any] = {
    "conv": nn.Conv, "norm": nn.BatchNorm, "max_pool": nn.max_pool, "avg_pool": nn.avg_pool, "act": nn.relu,
}
_LAYERS = {"reference": REFERENCE_LAYERS, "cpu": cpu.LAYERS}


def resolve_kernels(kernels: str) -> str:
    """``"reference"`` or ``"cpu"`` for a ``kernels`` choice; ``"auto"`` looks at JAX's default backend.

    Raises:
      ValueError: for a value that is not one of ``KERNELS``.
    """
    if kernels not in KERNELS:
        raise unknown_name_error("kernels", kernels, KERNELS)
    if kernels == "auto":
        return "cpu" if jax.default_backend() == "cpu" else "reference"
    return kernels


def layers(kernels: str) -> dict[str, Any]:
    """The layers of a ``kernels`` choice, by the model field they fill (conv, norm, max_pool, avg_pool, act)."""
    return dict(_LAYERS[resolve_kernels(kernels)])


def kernels_of(model: nn.Module) -> str | None:
    """Which layers ``model`` was built with: ``"cpu"``, ``"reference"``, or None if it has none to inject."""
    values = [getattr(model, name) for name in REFERENCE_LAYERS if hasattr(model, name)]
    if not values:
        return None
    return "cpu" if any(value is layer for value in values for layer in cpu.LAYERS.values()) else "reference"


def training_forward(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
    """What a train step calls in place of ``apply_fn`` (a model's ``apply``): the same function, rewritten
    to pool before the bias and ReLU (``jaxvision.backends.cpu.pool_first_rewrite``) for a model built with the
    CPU layers; ``apply_fn`` itself for the reference layers or any other function."""
    model = getattr(apply_fn, "__self__", None)
    if isinstance(model, nn.Module) and kernels_of(model) == "cpu":
        return cpu.pool_first(apply_fn)
    return apply_fn


__all__ = ["KERNELS", "REFERENCE_LAYERS", "kernels_of", "layers", "resolve_kernels", "training_forward"]
