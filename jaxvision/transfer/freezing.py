"""Which layers train when fine-tuning: a model's units, the frozen set, its optimiser and its forward pass.

A fine-tuning choice is a string (``--finetune``): ``"all"`` trains everything, ``"linear"`` only the
head (the final Dense), ``"last:K"`` the head and the last K *units*. A unit is what one would call a
layer or a stage: ResNets have ``stem`` and ``stage1``, ``stage2``, ...; every other model has one
unit per parameterised top-level layer, a batch norm joining the convolution before it (VGG's
``conv3`` unit is ``conv3`` and ``bn3``) and a parameter-free module (``Dropout_0``) the unit before it.

Frozen layers are frozen the Keras way: their parameters get zero updates
(``finetune_optimizer``), and ``with_frozen_layers`` runs them in inference mode, so a frozen batch
norm normalises with its running statistics and leaves them untouched, and a frozen dropout is the
identity, even in a training step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

FINETUNE_CHOICES = ("all", "linear", "last:K")
HEAD = "head"

_FINETUNE_EXPECTED = 'expected "all", "linear" or "last:K" with an integer K >= 1, e.g. --finetune last:2'
_STAGE_BLOCK = re.compile(r"(stage\d+)_block\d+")
_STEM_PREFIX = "stem_"
_AUTO_DENSE = re.compile(r"Dense_\d+")


def parse_finetune(spec: str) -> tuple[str, int | None]:
    """Reads a ``--finetune`` choice.

    Args:
      spec: "all", "linear" or "last:K" with K >= 1.

    Returns:
      ``("all", None)``, ``("linear", None)`` or ``("last", K)``.

    Raises:
      ValueError: for anything else, in one line.
    """
    if isinstance(spec, str):
        if spec in ("all", "linear"):
            return spec, None
        mode, separator, count = spec.partition(":")
        if mode == "last" and separator and count.isdigit() and int(count) >= 1:
            return "last", int(count)
    raise ValueError(f"Invalid --finetune {spec!r}: {_FINETUNE_EXPECTED}.")


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One direct child of the root module, as a forward pass first calls it."""

    name: str
    has_params: bool
    is_norm: bool  # holds running statistics itself (a batch norm), not inside submodules (a block)


def _checked_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
    if not shape or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ValueError(
            f"Invalid input_shape={input_shape!r}: expected one example's shape as positive integers, "
            f"e.g. input_shape=(28, 28, 1)."
        )
    return tuple(int(d) for d in shape)


def _records(order: Sequence[str], variables: Mapping[str, Any]) -> list[_Layer]:
    params, batch_stats = variables.get("params", {}), variables.get("batch_stats", {})

    def is_norm(name: str) -> bool:
        return any(not isinstance(value, Mapping) for value in batch_stats.get(name, {}).values())

    return [_Layer(name, name in params, is_norm(name)) for name in order]


def _top_level_recorder(order: list[str]):
    """An ``nn.intercept_methods`` interceptor that appends each direct child of the root to ``order``
    the first time it is called (its name, ``scope.path[0]``)."""

    def record(next_fun, args, kwargs, context):
        scope = context.module.scope
        if scope is not None and len(scope.path) == 1 and scope.path[0] not in order:
            order.append(scope.path[0])
        return next_fun(*args, **kwargs)

    return record


def _trace(model: nn.Module, input_shape: Sequence[int]) -> list[_Layer]:
    """The model's top-level layers in call order, from an abstract ``init`` (no FLOPs, no memory)."""
    shape = _checked_input_shape(input_shape)
    order: list[str] = []
    with nn.intercept_methods(_top_level_recorder(order)):
        variables = jax.eval_shape(
            functools.partial(model.init, train=False), jax.random.key(0), jax.ShapeDtypeStruct((1, *shape), jnp.float32)
        )
    return _records(order, variables)


def layer_order(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Names of the model's top-level submodules in the order its forward pass first calls them.

    Parameter-free modules (``Dropout_0``, ``lrn``) are included; functions (pooling, activations)
    are not modules and do not appear.

    Args:
      model: a zoo model (any flax module with ``__call__(x, *, train)``).
      input_shape: one example's shape, e.g. ``(28, 28, 1)``.
    """
    return [layer.name for layer in _trace(model, input_shape)]


def _head_of(layers: Sequence[_Layer], what: str) -> str:
    """``"head"`` where there is one, else the last parameterised layer (the small models' final
    Dense keeps flax's automatic name, e.g. ``Dense_2``, so that old checkpoints still load)."""
    names = [layer.name for layer in layers]
    if HEAD in names:
        return HEAD
    parameterised = [layer.name for layer in layers if layer.has_params]
    if not parameterised:
        raise ValueError(f"{what} has no layer with parameters, so no head to train: pass a model with a final Dense.")
    return parameterised[-1]


def head_name(model: nn.Module, input_shape: Sequence[int]) -> str:
    """The top-level name of the model's final Dense: ``"head"``, or flax's automatic name
    (``Dense_2`` in ``mlp`` and ``lenet5``, ``Dense_1`` in ``mnist_cnn``) in the small models."""
    return _head_of(_trace(model, input_shape), type(model).__name__)


def _head_group(layers: Sequence[_Layer], head: str) -> list[str]:
    """The head and whatever runs after it: never frozen."""
    names = [layer.name for layer in layers]
    return names[names.index(head):]


def _units(layers: Sequence[_Layer], head: str) -> list[tuple[str, tuple[str, ...]]]:
    """Groups the layers below ``head`` into units (module docstring)."""
    groups: list[tuple[str, list[str]]] = []
    leading: list[str] = []  # parameter-free modules before the first parameterised one
    for layer in layers:
        if layer.name == head:
            break
        joins_previous = not layer.has_params or layer.is_norm  # a batch norm joins its convolution
        if joins_previous and groups:
            groups[-1][1].append(layer.name)
        elif joins_previous and not layer.has_params:
            leading.append(layer.name)
        else:
            groups.append((layer.name, [*leading, layer.name]))
            leading = []
    # ResNets: one unit per stage (stageS_block1, stageS_block2, ...) and one for the stem.
    merged: list[tuple[str, list[str]]] = []
    for first, members in groups:
        match = _STAGE_BLOCK.fullmatch(first)
        unit = match.group(1) if match else ("stem" if first.startswith(_STEM_PREFIX) else first)
        if merged and merged[-1][0] == unit:
            merged[-1][1].extend(members)
        else:
            merged.append((unit, list(members)))
    return [(unit, tuple(members)) for unit, members in merged]


def units(model: nn.Module, input_shape: Sequence[int]) -> list[tuple[str, tuple[str, ...]]]:
    """The trainable units from input to output, the head excluded.

    ResNets: ``("stem", ("stem_conv", "stem_bn"))``, ``("stage1", ("stage1_block1", ...))``, ...
    Other models: one unit per parameterised top-level layer, named after it, holding it, the batch
    norm right after it and the parameter-free modules up to the next one, e.g. VGG-11-BN's
    ``("conv3", ("conv3", "bn3"))`` and ``("fc1", ("fc1", "Dropout_0"))``.

    Args:
      model: a zoo model.
      input_shape: one example's shape, e.g. ``(32, 32, 3)``.

    Returns:
      ``[(unit_name, top_level_module_names), ...]``, input side first.
    """
    layers = _trace(model, input_shape)
    return _units(layers, _head_of(layers, type(model).__name__))


def frozen_modules(model: nn.Module, input_shape: Sequence[int], finetune: str) -> tuple[str, ...]:
    """The top-level modules (with parameters or not) that a ``--finetune`` choice keeps fixed.

    Args:
      model: a zoo model.
      input_shape: one example's shape.
      finetune: "all" (nothing frozen), "linear" (all but the head) or "last:K" (all but the last
        K units of ``units(model, input_shape)`` and the head).

    Returns:
      The frozen names, sorted.

    Raises:
      ValueError: for a bad ``finetune``, or K larger than the number of units.
    """
    mode, count = parse_finetune(finetune)
    if mode == "all":
        return ()
    what = type(model).__name__
    layers = _trace(model, input_shape)
    head = _head_of(layers, what)
    trainable = _head_group(layers, head)
    if mode == "last":
        unit_list = _units(layers, head)
        if count > len(unit_list):
            if not unit_list:
                raise ValueError(
                    f"Invalid --finetune last:{count}: {what} has no units below its head; use --finetune all."
                )
            raise ValueError(
                f"Invalid --finetune last:{count}: {what} has {len(unit_list)} units below its head "
                f"({', '.join(unit for unit, _ in unit_list)}); use last:K with K <= {len(unit_list)}, or all."
            )
        trainable += [name for _, members in unit_list[-count:] for name in members]
    return tuple(sorted({layer.name for layer in layers} - set(trainable)))


def default_head(params: Any) -> tuple[str]:
    """The head among a model's top-level parameters: ``"head"``, else the final Dense of the small
    models, which keep flax's automatic names: the ``Dense_k`` with the largest k (flax numbers them
    in call order, so ``Dense_2`` in ``mlp`` and ``lenet5``, ``Dense_1`` in ``mnist_cnn``).

    Raises:
      ValueError: when there is neither.
    """
    top = list(params)
    if HEAD in top:
        return (HEAD,)
    numbered = [(int(name[len("Dense_"):]), name) for name in top if _AUTO_DENSE.fullmatch(name)]
    if not numbered:
        raise ValueError(
            f"No head among the top-level parameters ({', '.join(top) or 'none'}): pass head=(name,) with the "
            f"final Dense's name (jaxvision.transfer.head_name(model, input_shape) gives it)."
        )
    return (max(numbered)[1],)


def parameter_labels(params: Any, frozen: Sequence[str], *, head: Sequence[str] | None = None) -> Any:
    """Labels every parameter ``"frozen"``, ``"backbone"`` or ``"head"`` by its top-level name.

    Args:
      params: the model's parameters (a dict or FrozenDict of top-level modules).
      frozen: top-level names whose parameters stay fixed (``frozen_modules``; names without
        parameters, such as ``Dropout_0``, are allowed and ignored).
      head: top-level names of the head; None: ``default_head(params)``.

    Returns:
      A pytree of the same structure as ``params`` with a label string per leaf.

    Raises:
      ValueError: if no ``head`` name is a top-level parameter, or a name is both frozen and head.
    """
    top = list(params)
    head = default_head(params) if head is None else tuple(head)
    frozen = frozenset(frozen)
    if not any(name in top for name in head):
        raise ValueError(
            f"No head {', '.join(head)} among the top-level parameters ({', '.join(top) or 'none'}): pass "
            f"head=(name,) with the final Dense's name (jaxvision.transfer.head_name(model, input_shape) gives it)."
        )
    both = sorted(frozen.intersection(head))
    if both:
        raise ValueError(f"{', '.join(both)} is both frozen and the head: the head always trains; drop it from frozen.")

    def label(path: tuple[Any, ...], _: Any) -> str:
        name = path[0].key
        return "frozen" if name in frozen else "head" if name in head else "backbone"

    # tree_map_with_path keeps params' own containers (dict or FrozenDict), which optax.masked needs.
    return jax.tree_util.tree_map_with_path(label, params)


def finetune_optimizer(
    optimizer: optax.GradientTransformation,
    frozen: Sequence[str],
    *,
    backbone_lr_scale: float = 1.0,
    head: Sequence[str] | None = None,
) -> optax.GradientTransformation:
    """``optimizer`` for the trainable parameters, zero updates for the frozen ones.

    Built with ``optax.multi_transform`` on ``parameter_labels``: frozen parameters get
    ``optax.set_to_zero()`` (and no optimiser state), the backbone ``optimizer`` followed by
    ``optax.scale(backbone_lr_scale)`` (discriminative learning rates; scaling the update scales the
    learning rate, weight decay included, as a PyTorch parameter group's ``lr`` does), the head
    ``optimizer``. The backbone and the head get separate optimiser states: each is its own
    ``optimizer.init`` on its own parameters, so a transform inside ``optimizer`` that looks at all
    of its parameters at once (``optax.clip_by_global_norm``) sees each group alone; chain such a
    transform before this one to apply it to the whole model.

    Args:
      optimizer: an optax transformation, e.g. ``make_optimizer("sgd", 0.1)``.
      frozen: top-level names that stay fixed (``frozen_modules``).
      backbone_lr_scale: multiplies the backbone's updates; 1.0 adds no transform.
      head: top-level names of the head; None: ``default_head(params)``.

    Returns:
      An optax transformation over the whole parameter tree.

    Raises:
      ValueError: for a backbone_lr_scale that is not a finite number > 0.
    """
    if (isinstance(backbone_lr_scale, bool) or not isinstance(backbone_lr_scale, numbers.Real)
            or not math.isfinite(backbone_lr_scale) or backbone_lr_scale <= 0):
        raise ValueError(
            f"Invalid --backbone-lr-scale {backbone_lr_scale!r}: expected a finite number > 0, e.g. "
            f"--backbone-lr-scale 0.1 (use --finetune linear to freeze the backbone instead)."
        )
    frozen, head = tuple(frozen), None if head is None else tuple(head)
    backbone = optimizer if backbone_lr_scale == 1.0 else optax.chain(optimizer, optax.scale(float(backbone_lr_scale)))
    return optax.multi_transform(
        {"frozen": optax.set_to_zero(), "backbone": backbone, "head": optimizer},
        functools.partial(parameter_labels, frozen=frozen, head=head),
    )


def _is_frozen(module: nn.Module) -> bool:
    return module.scope.path[0] in type(module).frozen_modules


def _frozen_stats_dtype(module: nn.Module) -> Any:
    # flax keeps the running statistics in float32 unless told not to; the CPU batch norm always does.
    return jnp.float32 if getattr(module, "force_float32_reductions", True) else module.param_dtype


@functools.lru_cache(maxsize=None)
def _frozen_norm(base: type, frozen: tuple[str, ...]) -> type:
    """``base`` (flax's or the CPU kernels' BatchNorm) running in inference mode inside ``frozen``.

    Cached, so that equal arguments give the same class and two frozen models compare equal.
    """

    class FrozenAwareBatchNorm(base):
        frozen_modules = frozen
        unfrozen_class = base

        @nn.compact
        def __call__(self, x: jax.Array, use_running_average: bool | None = None, **kwargs: Any) -> jax.Array:
            if not _is_frozen(self):
                return super().__call__(x, use_running_average, **kwargs)
            if getattr(self, "axis", -1) not in (-1, x.ndim - 1):
                raise ValueError(
                    f"Frozen batch norm {'/'.join(self.scope.path)} normalises axis={self.axis}: only the "
                    f"channel axis (-1) is supported; build the model with the default axis."
                )
            # The inference formula written out: nn.BatchNorm refuses use_running_average at the call
            # when its constructor already set it, and the models set it from ``train``.
            channels = (x.shape[-1],)
            stats_dtype = _frozen_stats_dtype(self)
            mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, stats_dtype), channels).value
            var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, stats_dtype), channels).value
            y = x - mean
            multiplier = lax.rsqrt(var + self.epsilon)
            args = [x]
            if self.use_scale:
                scale = self.param("scale", self.scale_init, channels, self.param_dtype)
                multiplier = multiplier * scale
                args.append(scale)
            y = y * multiplier
            if self.use_bias:
                bias = self.param("bias", self.bias_init, channels, self.param_dtype)
                y = y + bias
                args.append(bias)
            return jnp.asarray(y, self.dtype or jnp.result_type(*args))

    # flax names unnamed submodules after their class (BatchNorm_0): keep the base's name.
    FrozenAwareBatchNorm.__name__ = base.__name__
    return FrozenAwareBatchNorm


@functools.lru_cache(maxsize=None)
def _frozen_dropout(base: type, frozen: tuple[str, ...]) -> type:
    """``base`` (jaxvision's Dropout) as the identity inside ``frozen``; cached like ``_frozen_norm``."""

    class FrozenAwareDropout(base):
        frozen_modules = frozen
        unfrozen_class = base

        @nn.compact
        def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
            if _is_frozen(self):
                return x
            return super().__call__(x, train=train)

    # The models' dropouts are unnamed: Dropout_0, Dropout_1 must stay Dropout_0, Dropout_1.
    FrozenAwareDropout.__name__ = base.__name__
    return FrozenAwareDropout


_FROZEN_AWARE = {"norm": _frozen_norm, "dropout_layer": _frozen_dropout}


def with_frozen_layers(model: nn.Module, frozen: Sequence[str]) -> nn.Module:
    """The same model, with its frozen layers in inference mode even when ``train=True`` (Keras's semantics).

    The model's ``norm`` and ``dropout_layer`` fields are replaced by subclasses of the classes it
    has (flax's ``nn.BatchNorm`` or ``jaxvision.backends.cpu.BatchNorm``; jaxvision's ``Dropout``)
    that check their top-level name (``scope.path[0]``): inside ``frozen`` a batch norm normalises
    with its running statistics and leaves them untouched, and a dropout is the identity; elsewhere
    they behave as before. Variable names and the variable tree are unchanged, so the variables of
    ``model`` apply to the result and back.

    Args:
      model: a zoo model.
      frozen: top-level names from ``frozen_modules``.

    Returns:
      ``model`` itself when ``frozen`` is empty or the model has neither field (``perceptron``);
      else a clone, hashable and equal to any other clone with the same ``frozen`` (it may be a
      static ``jit`` argument).

    Raises:
      ValueError: if a field holds something other than a flax module class.
    """
    frozen = tuple(sorted(set(frozen)))
    if not frozen:
        return model
    fields = {field.name for field in dataclasses.fields(model)}
    changes = {}
    for field, make in _FROZEN_AWARE.items():
        if field not in fields:
            continue
        layer = getattr(model, field)
        layer = getattr(layer, "unfrozen_class", layer)  # freezing a frozen model again starts from its layers
        if not (isinstance(layer, type) and issubclass(layer, nn.Module)):
            raise ValueError(
                f"Cannot freeze {type(model).__name__}.{field}={layer!r}: expected a flax module class such as "
                f"nn.BatchNorm; build the model with get_model(...)."
            )
        changes[field] = make(layer, frozen)
    return model.clone(**changes) if changes else model
