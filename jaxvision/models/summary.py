"""``summary(model, input_shape)``: a per-layer table of output shapes, parameters and FLOPs.

Shapes come from tracing the model's ``init`` under ``jax.eval_shape`` (no parameter is allocated,
so VGG-16 at 224x224 costs milliseconds) while ``nn.intercept_methods`` records the output of every
module call. FLOPs are counted by arithmetic for convolutions and dense layers only, 2 per
multiply-accumulate (the convention of the VGG/ResNet papers' "FLOPs" times two):

  conv:  2 * H_out * W_out * C_out * kh * kw * C_in / groups   per example
  dense: 2 * in_features * out_features                        per example (and per extra position)

Batch norm, activations, pooling and additions are left out; they are a few percent of the total
for these networks. ``xla_flops`` asks XLA for its own count, as a cross-check.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.input_size import check_input_size


@dataclasses.dataclass(frozen=True)
class LayerSummary:
    """One leaf module call.

    Attributes:
      name: the module's path, e.g. "stage1_block1/conv1".
      kind: the module's class name, e.g. "Conv".
      output_shape: the output's shape, batch first.
      parameters: number of trainable parameters the module owns.
      flops: FLOPs per example (convolutions and dense layers; 0 for other modules).
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    flops: int


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """Per-layer rows and totals; ``str()`` prints them as a table.

    Attributes:
      model_name: the model's class name.
      input_shape: the traced input's shape, batch first.
      output_shape: the logits' shape.
      layers: one row per leaf module call, in call order.
      total_parameters: all trainable parameters of the model.
      total_flops: sum of the rows' FLOPs, per example.
      non_trainable: other variables (batch-norm statistics), by collection.
    """

    model_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layers: tuple[LayerSummary, ...]
    total_parameters: int
    total_flops: int
    non_trainable: dict[str, int]

    def __str__(self) -> str:
        header = ("Layer", "Type", "Output shape", "Parameters", "FLOPs")
        rows = [
            (row.name, row.kind, str(row.output_shape), f"{row.parameters:,}", f"{row.flops:,}")
            for row in self.layers
        ]
        widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            left = [cell.ljust(width) for cell, width in zip(cells[:3], widths)]
            right = [cell.rjust(width) for cell, width in zip(cells[3:], widths[3:])]
            return "  ".join(left + right).rstrip()

        rule = "-" * len(line(["-" * w for w in widths]))
        lines = [f"{self.model_name}: input {self.input_shape} -> output {self.output_shape}", rule, line(header), rule]
        lines += [line(cells) for cells in rows]
        lines += [rule, f"Total parameters: {self.total_parameters:,}"]
        lines += [f"Non-trainable {name}: {count:,}" for name, count in self.non_trainable.items()]
        lines += [f"Total FLOPs per example: {self.total_flops:,} ({self.total_flops / 1e9:.2f} GFLOPs)"]
        return "\n".join(lines)


def _count(tree: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _layer_flops(module: nn.Module, inputs: Any, output: Any) -> int:
    """FLOPs per example of one call of a leaf module; 0 for modules that are not conv or dense."""
    if isinstance(module, nn.Conv) and hasattr(inputs, "shape"):
        kernel_size = module.kernel_size if isinstance(module.kernel_size, Sequence) else (module.kernel_size,)
        positions = math.prod(output.shape[1:-1])
        in_features = inputs.shape[-1] // module.feature_group_count
        return 2 * positions * module.features * math.prod(kernel_size) * in_features
    if isinstance(module, nn.Dense) and hasattr(inputs, "shape"):
        return 2 * math.prod(output.shape[1:-1]) * inputs.shape[-1] * module.features
    return 0


def _subtree(tree: dict[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return {}
        tree = tree[key]
    return tree


def summary(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    dtype: jnp.dtype = jnp.float32,
) -> ModelSummary:
    """Traces ``model`` on an abstract input and tabulates its leaf layers.

    Args:
      model: a Flax module with ``__call__(x, *, train)``.
      input_shape: one example's shape, e.g. ``(224, 224, 3)``.
      batch_size: the batch dimension of the traced input (shapes in the table include it).
      dtype: the input's dtype.

    Returns:
      A ModelSummary; ``print(summary(...))`` shows the table and "Total parameters: 138,357,544".

    Raises:
      ValueError: if ``input_shape`` has a non-positive entry, or is an image (height, width,
        channels) smaller than the model accepts (``jaxvision.input_size``), which would
        otherwise show a table of 0x0 maps or fail inside an initialiser.

    Example:
      >>> print(summary(get_model("vgg16", num_classes=1000), (224, 224, 3)))
    """
    input_shape = tuple(int(size) for size in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ValueError(f"Invalid input_shape={input_shape}: expected positive sizes, e.g. (224, 224, 3).")
    if len(input_shape) == 3:
        check_input_size(
            model, type(model).__name__, input_shape,
            fix="Pass an input_shape of at least ({height}, {width}, {channels}).",
        )
    calls: list[tuple[tuple[str, ...], nn.Module, Any, Any]] = []

    def record(next_fun, args, kwargs, context):
        output = next_fun(*args, **kwargs)
        if context.method_name == "__call__":
            calls.append((tuple(context.module.path), context.module, args[0] if args else None, output))
        return output

    def init(x: jax.Array) -> Any:
        with nn.intercept_methods(record):
            return model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=False)

    variables = jax.eval_shape(init, jax.ShapeDtypeStruct((batch_size, *input_shape), dtype))
    logits = next(output for path, _, _, output in calls if path == ())
    paths = {path for path, *_ in calls}
    parents = {path[:i] for path in paths for i in range(len(path))}
    params = variables.get("params", {})
    rows: list[LayerSummary] = []
    seen: set[tuple[str, ...]] = set()
    for path, module, inputs, output in calls:
        if path in parents:
            continue
        rows.append(
            LayerSummary(
                name="/".join(path),
                kind=type(module).__name__,
                output_shape=tuple(output.shape) if hasattr(output, "shape") else (),
                # A module called twice (weight sharing) owns its parameters once.
                parameters=0 if path in seen else _count(_subtree(params, path)),
                flops=_layer_flops(module, inputs, output),
            )
        )
        seen.add(path)
    return ModelSummary(
        model_name=type(model).__name__,
        input_shape=(batch_size, *input_shape),
        output_shape=tuple(logits.shape),
        layers=tuple(rows),
        total_parameters=_count(params),
        total_flops=sum(row.flops for row in rows),
        non_trainable={name: _count(tree) for name, tree in variables.items() if name != "params"},
    )


def xla_flops(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1) -> float:
    """XLA's own FLOP count for one eval-mode forward pass of ``batch_size`` examples.

    Compiles the forward pass for abstract parameters (nothing is allocated), so it is slower than
    ``summary`` and includes the element-wise work that ``summary`` leaves out.
    """
    x = jax.ShapeDtypeStruct((batch_size, *input_shape), jnp.float32)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    variables = jax.eval_shape(lambda x: model.init(keys, x, train=False), x)
    compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # Older JAX returns one dict per device.
        analysis = analysis[0]
    return float(analysis["flops"])
