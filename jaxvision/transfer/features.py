"""Features of any zoo model: the pooled pre-logit vector and named intermediate maps.

timm's ``forward_features`` (everything before the classifier) and ``features_only`` (maps at named
depths) without touching the model: ``nn.intercept_methods`` sees every call of a top-level module
during an ordinary ``apply``, so the extractor records the input of the head and the outputs of the
layers asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxvision.transfer.freezing import _head_of, _records, _trace, _units

POOLED = "pooled"


def _named_layers(layers, head: str) -> dict[str, str]:
    """Every layer name a caller may ask for -> the top-level module whose output it is, in call order.

    Top-level names map to themselves; a unit name that is not also a module name (ResNet's "stem",
    "stage1", ...) maps to its unit's last module, and comes right after it.
    """
    names = [layer.name for layer in layers]
    unit_after = {members[-1]: unit for unit, members in _units(layers, head) if unit not in names}
    named: dict[str, str] = {}
    for name in names:
        named[name] = name
        if name in unit_after:
            named[unit_after[name]] = name
    return named


def available_layers(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """The names ``feature_extractor`` accepts, input side first.

    Every top-level module (``conv1``, ``bn1``, ``Dropout_0``, ``stage2_block1``, ``head``, ...) and,
    for ResNets, the units ``stem`` (the output of ``stem_bn``, before the ReLU and the stem's max
    pool) and ``stage1``, ``stage2``, ... (the output of each stage's last block).

    Args:
      model: a zoo model.
      input_shape: one example's shape, e.g. ``(32, 32, 3)``.
    """
    layers = _trace(model, input_shape)
    return list(_named_layers(layers, _head_of(layers, type(model).__name__)))


def feature_extractor(
    model: nn.Module, variables: Any, layers: Sequence[str] = ()
) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """A jitted function from images to the model's features, in evaluation mode.

    Example::

      extract = feature_extractor(model, variables, layers=("stage2", "stage3"))
      features = extract(images)  # {"pooled": [N, 64], "stage2": [N, 16, 16, 32], "stage3": [N, 8, 8, 64]}

    Args:
      model: a zoo model.
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      layers: names from ``available_layers`` whose outputs to return as well.

    Returns:
      ``extract(images) -> {"pooled": [N, D], **{layer: output}}`` on images ``[N, H, W, C]``
      (normalised, as the model sees them). ``pooled`` is the input of the final Dense (the
      pre-logit features: ResNet's global average pool, VGG's and AlexNet's last hidden layer after
      its ReLU), so ``head(pooled)`` is the logits. Compiled once per image shape.

    Raises:
      ValueError: ``layers`` given as one string; at the first call, a name that is not one of
        ``available_layers`` (the message lists them).
    """
    if isinstance(layers, str):
        raise ValueError(f"Invalid layers={layers!r}: expected a sequence of names, e.g. layers=({layers!r},).")
    requested = tuple(layers)
    what = type(model).__name__
    order: list[str] = []  # the top-level modules in call order, filled by the first trace

    def forward(variables: Any, images: jax.Array) -> tuple[dict[str, jax.Array], dict[str, Any]]:
        inputs: dict[str, jax.Array] = {}
        outputs: dict[str, Any] = {}

        def capture(next_fun, args, kwargs, context):
            output = next_fun(*args, **kwargs)
            scope = context.module.scope
            if scope is not None and len(scope.path) == 1 and scope.path[0] not in outputs:
                inputs[scope.path[0]], outputs[scope.path[0]] = args[0], output
            return output

        with nn.intercept_methods(capture):
            model.apply(variables, images, train=False)
        order[:] = list(outputs)
        return inputs, outputs

    def names(images: jax.Array) -> tuple[str, dict[str, str]]:
        """The head and the layer names, checked outside any trace (so the error stays one line)."""
        if not order:
            jax.eval_shape(forward, variables, images)  # a trace, no compile
        records = _records(order, variables)
        head = _head_of(records, what)
        named = _named_layers(records, head)
        unknown = [name for name in requested if name not in named]
        if unknown:
            raise ValueError(
                f"Unknown layer(s) {', '.join(map(repr, unknown))} for {what}: expected any of {', '.join(named)}."
            )
        return head, named

    def extract(variables: Any, images: jax.Array, head: str, named: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        inputs, outputs = forward(variables, images)
        return {POOLED: inputs[head], **{name: outputs[module] for name, module in named}}

    # variables are an argument, not a closure: closed-over arrays would be baked into the program.
    compiled = jax.jit(extract, static_argnums=(2, 3))

    def run(images: jax.Array) -> dict[str, jax.Array]:
        head, named = names(images)
        features = compiled(variables, images, head, tuple((name, named[name]) for name in requested))
        # jit returns dicts with sorted keys: give them back in the order asked for.
        return {POOLED: features[POOLED], **{name: features[name] for name in requested}}

    return run
