"""torchvision's ImageNet models' state_dicts <-> the flax variables of the same jaxvision models.

The key names follow torchvision's model definitions (torchvision/models/alexnet.py, vgg.py,
resnet.py): ``features.<i>`` and ``classifier.<i>`` index into AlexNet's and VGG's ``nn.Sequential``s
(VGG's ``make_layers`` appends conv[, bn], relu per width and one module per "M"), ResNet's blocks are
``layer<s>.<b>`` with ``conv1, bn1, conv2, bn2[, conv3, bn3]`` and ``downsample.0`` (conv) / ``.1`` (BN).

Layouts: PyTorch convolutions are OIHW, flax's HWIO; ``nn.Linear`` stores (out, in), ``nn.Dense``
(in, out); BatchNorm's ``weight, bias, running_mean, running_var`` are flax's ``scale, bias`` params
and ``mean, var`` batch statistics (``num_batches_tracked`` has no flax counterpart). AlexNet and VGG
flatten their pooled 6x6x256 / 7x7x512 maps before the first dense layer: torchvision in NCHW order
(channel slowest), jaxvision in NHWC order (channel fastest), so that layer's input rows are permuted.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.pretrained.state_dict import StateDict, StateDictSource, read_state_dict

SUPPORTED_MODELS: tuple[str, ...] = (
    "alexnet",
    "vgg11", "vgg13", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
)
# torchvision's default head: ImageNet-1k.
DEFAULT_NUM_CLASSES = 1000
# Shapes do not depend on the input size (adaptive pooling), so any size the layouts accept will do.
_SHAPE_INPUT = (1, 224, 224, 3)
_SHOWN = 10  # problems listed per kind in an error; the rest are counted


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """One state_dict entry and where it lives in the flax variables.

    ``layout``: "conv" (OIHW <-> HWIO), "dense" ((out, in) <-> (in, out)), "vector" (as is), or
    "dense_chw" (dense whose input is a flattened ``chw`` map: rows permuted from C,H,W to H,W,C order).
    """

    key: str
    collection: str
    path: tuple[str, ...]
    layout: str
    chw: tuple[int, int, int] | None = None


def _conv(prefix: str, path: tuple[str, ...], *, bias: bool) -> list[_Tensor]:
    entries = [_Tensor(f"{prefix}.weight", "params", (*path, "kernel"), "conv")]
    if bias:
        entries.append(_Tensor(f"{prefix}.bias", "params", (*path, "bias"), "vector"))
    return entries


def _dense(prefix: str, path: tuple[str, ...], chw: tuple[int, int, int] | None = None) -> list[_Tensor]:
    layout = "dense" if chw is None else "dense_chw"
    return [
        _Tensor(f"{prefix}.weight", "params", (*path, "kernel"), layout, chw),
        _Tensor(f"{prefix}.bias", "params", (*path, "bias"), "vector"),
    ]


def _batch_norm(prefix: str, path: tuple[str, ...]) -> list[_Tensor]:
    # The order of torch's state_dict: the module's parameters, then its buffers.
    return [
        _Tensor(f"{prefix}.weight", "params", (*path, "scale"), "vector"),
        _Tensor(f"{prefix}.bias", "params", (*path, "bias"), "vector"),
        _Tensor(f"{prefix}.running_mean", "batch_stats", (*path, "mean"), "vector"),
        _Tensor(f"{prefix}.running_var", "batch_stats", (*path, "var"), "vector"),
    ]


def _alexnet_layout() -> tuple[list[_Tensor], list[str]]:
    # features: conv(0) relu pool conv(3) relu pool conv(6) relu conv(8) relu conv(10) relu pool;
    # classifier: dropout linear(1) relu dropout linear(4) relu linear(6).
    tensors: list[_Tensor] = []
    for index, position in enumerate((0, 3, 6, 8, 10), start=1):
        tensors += _conv(f"features.{position}", (f"conv{index}",), bias=True)
    tensors += _dense("classifier.1", ("fc1",), chw=(256, 6, 6))
    tensors += _dense("classifier.4", ("fc2",))
    tensors += _dense("classifier.6", ("head",))
    return tensors, []


def _vgg_layout(config: tuple[Any, ...], batch_norm: bool) -> tuple[list[_Tensor], list[str]]:
    # make_layers: per width conv[, BatchNorm2d], ReLU; per "M" one MaxPool2d; one index per module.
    tensors: list[_Tensor] = []
    norms: list[str] = []
    position, conv_index = 0, 0
    for entry in config:
        if entry == "M":
            position += 1
            continue
        conv_index += 1
        tensors += _conv(f"features.{position}", (f"conv{conv_index}",), bias=True)
        if batch_norm:
            tensors += _batch_norm(f"features.{position + 1}", (f"bn{conv_index}",))
            norms.append(f"features.{position + 1}")
        position += 3 if batch_norm else 2
    # classifier: linear(0) relu dropout linear(3) relu dropout linear(6).
    tensors += _dense("classifier.0", ("fc1",), chw=(512, 7, 7))
    tensors += _dense("classifier.3", ("fc2",))
    tensors += _dense("classifier.6", ("head",))
    return tensors, norms


def _resnet_layout(stage_sizes: tuple[int, ...], block: str) -> tuple[list[_Tensor], list[str]]:
    tensors = _conv("conv1", ("stem_conv",), bias=False) + _batch_norm("bn1", ("stem_bn",))
    norms = ["bn1"]
    expansion = 4 if block == "bottleneck" else 1
    in_channels = 64
    for stage, num_blocks in enumerate(stage_sizes, start=1):
        width = 64 * 2 ** (stage - 1)
        for index in range(num_blocks):
            prefix, path = f"layer{stage}.{index}", f"stage{stage}_block{index + 1}"
            for layer in range(1, 4 if block == "bottleneck" else 3):
                tensors += _conv(f"{prefix}.conv{layer}", (path, f"conv{layer}"), bias=False)
                tensors += _batch_norm(f"{prefix}.bn{layer}", (path, f"bn{layer}"))
                norms.append(f"{prefix}.bn{layer}")
            stride = 2 if stage > 1 and index == 0 else 1
            # torchvision's _make_layer: a projection where the stride or the channel count changes.
            if stride != 1 or in_channels != width * expansion:
                tensors += _conv(f"{prefix}.downsample.0", (path, "downsample_conv"), bias=False)
                tensors += _batch_norm(f"{prefix}.downsample.1", (path, "downsample_bn"))
                norms.append(f"{prefix}.downsample.1")
            in_channels = width * expansion
    tensors += _dense("fc", ("head",))
    return tensors, norms


def _head_key(name: str) -> str:
    return "fc.weight" if name.startswith("resnet") else "classifier.6.weight"


def _check_name(name: str) -> None:
    if name not in SUPPORTED_MODELS:
        raise ValueError(
            f"No torchvision weights layout for model {name!r}: expected one of {', '.join(SUPPORTED_MODELS)}."
        )


@functools.lru_cache(maxsize=None)
def _layout(name: str, num_classes: int) -> tuple[tuple[_Tensor, ...], tuple[str, ...], dict[str, tuple[int, ...]]]:
    """(entries, BatchNorm prefixes, flax shape per state_dict key) of ``name`` with a ``num_classes`` head.

    The entries are derived from torchvision's definitions, the shapes from the flax model's own
    ``init`` (abstractly, no arrays): every flax leaf must be filled by exactly one entry.
    """
    from jaxvision.models import get_model

    model = get_model(name, num_classes=num_classes, kernels="reference")
    if name == "alexnet":
        tensors, norms = _alexnet_layout()
    elif name.startswith("vgg"):
        from jaxvision.models.vgg import CONFIGS

        tensors, norms = _vgg_layout(CONFIGS[model.config], model.batch_norm)
    else:
        tensors, norms = _resnet_layout(tuple(model.stage_sizes), model.block)
    abstract = jax.eval_shape(
        lambda x: model.init(jax.random.key(0), x, train=False), jax.ShapeDtypeStruct(_SHAPE_INPUT, jnp.float32)
    )
    flax_shapes = {
        (path[0].key, *(p.key for p in path[1:])): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(dict(abstract))[0]
    }
    covered = {(t.collection, *t.path) for t in tensors}
    if covered != set(flax_shapes):
        # A disagreement between this table and the model definition is a bug here, not bad input.
        raise RuntimeError(
            f"torchvision layout of {name!r} does not cover the flax model: only in flax "
            f"{sorted(set(flax_shapes) - covered)[:5]}, only in the table {sorted(covered - set(flax_shapes))[:5]}."
        )
    return tuple(tensors), tuple(norms), {t.key: flax_shapes[(t.collection, *t.path)] for t in tensors}


def _torch_shape(flax_shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    if layout == "conv":
        height, width, in_channels, out_channels = flax_shape
        return (out_channels, in_channels, height, width)
    if layout in ("dense", "dense_chw"):
        return flax_shape[::-1]
    return flax_shape


# Above this many elements a 2-D transpose runs in XLA (tiled, vectorised): NumPy's strided copy of
# a 25088x4096 VGG kernel misses the cache on nearly every element, 10-15 s against XLA's 1-2 s.
_XLA_TRANSPOSE_ABOVE = 1 << 20


@jax.jit
def _xla_transpose(matrix: jax.Array) -> jax.Array:
    return matrix.T


def _transposed(matrix: np.ndarray) -> np.ndarray:
    """``matrix.T`` as a new C-contiguous float32 host array."""
    if matrix.size <= _XLA_TRANSPOSE_ABOVE:
        return np.ascontiguousarray(matrix.T, dtype=np.float32)
    with jax.default_device(jax.devices("cpu")[0]):  # host memory, whatever the default backend
        return np.array(_xla_transpose(jnp.asarray(matrix, jnp.float32)))


def _to_flax(value: np.ndarray, entry: _Tensor) -> np.ndarray:
    if entry.layout == "conv":
        return np.ascontiguousarray(value.transpose(2, 3, 1, 0), dtype=np.float32)
    if entry.layout == "dense":
        return _transposed(value)
    if entry.layout == "dense_chw":
        channels, height, width = entry.chw
        # Row c*H*W + h*W + w of torchvision's input becomes row (h*W + w)*C + c of ours: transpose to
        # (C*H*W, out), then move whole rows (contiguous, so cheap) from (C, H*W) to (H*W, C) order.
        kernel = _transposed(value).reshape(channels, height * width, -1)
        return np.ascontiguousarray(kernel.transpose(1, 0, 2)).reshape(height * width * channels, -1)
    return np.ascontiguousarray(value, dtype=np.float32)


def _to_torch(value: np.ndarray, entry: _Tensor) -> np.ndarray:
    if entry.layout == "conv":
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1), dtype=np.float32)
    if entry.layout == "dense":
        return _transposed(value)
    if entry.layout == "dense_chw":
        channels, height, width = entry.chw
        kernel = value.reshape(height * width, channels, -1).transpose(1, 0, 2)
        return _transposed(np.ascontiguousarray(kernel).reshape(channels * height * width, -1))
    return np.ascontiguousarray(value, dtype=np.float32)


def _listed(items: list[str], noun: str, plural: str) -> str:
    shown = ", ".join(items[:_SHOWN])
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"{len(items)} {noun if len(items) == 1 else plural} ({shown}{more})"


def _problems_error(what: str, problems: list[tuple[list[str], str, str]], hint: str) -> ValueError:
    parts = [_listed(items, noun, plural) for items, noun, plural in problems if items]
    return ValueError(f"{what}: {'; '.join(parts)}. {hint}")


def _is_float(value: np.ndarray) -> bool:
    return bool(jnp.issubdtype(value.dtype, jnp.floating))


def load_torchvision(name: str, source: StateDictSource, *, num_classes: int | None = None) -> dict[str, Any]:
    """The flax variables of ``jaxvision.get_model(name, num_classes=...)`` from a torchvision state_dict.

    Args:
      name: one of ``SUPPORTED_MODELS`` (alexnet, vgg11/13/16/19 and their ``_bn`` variants,
        resnet18/34/50/101/152), the torchvision model the state_dict comes from.
      source: a torchvision state_dict: a path to a ``.pth``/``.pt`` (needs torch), ``.safetensors`` or
        ``.npz`` file, or a mapping of key to array or tensor (``torch_model.state_dict()``).
      num_classes: the head's size; None takes it from the file (1000 for torchvision's own weights).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` (batch_stats only for models with batch norm), nested
      dicts of float32 host NumPy arrays, to pass to ``model.apply(variables, x, train=False)``.

    Raises:
      ValueError: for an unknown name, an unreadable source, or a state_dict that does not fit: every
        missing key, unexpected key, wrong shape, non-float and non-finite array in one message.
    """
    _check_name(name)
    state_dict = read_state_dict(source)
    if num_classes is None:
        head = state_dict.get(_head_key(name))
        num_classes = int(head.shape[0]) if head is not None and head.ndim == 2 else DEFAULT_NUM_CLASSES
    tensors, norms, flax_shapes = _layout(name, _checked_num_classes(num_classes))
    shapes = {t.key: _torch_shape(flax_shapes[t.key], t.layout) for t in tensors}
    _check_state_dict(name, state_dict, shapes, norms, num_classes)
    variables: dict[str, Any] = {}
    for entry in tensors:
        node = variables.setdefault(entry.collection, {})
        for part in entry.path[:-1]:
            node = node.setdefault(part, {})
        node[entry.path[-1]] = _to_flax(state_dict[entry.key], entry)
    return variables


def _checked_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(
            f"Invalid num_classes={num_classes!r}: expected a positive integer, or None to take the head's size "
            f"from the state_dict."
        )
    return int(num_classes)


def _check_state_dict(
    name: str, state_dict: StateDict, shapes: dict[str, tuple[int, ...]], norms: tuple[str, ...], num_classes: int
) -> None:
    # num_batches_tracked counts training steps; eval-mode batch norm never reads it.
    ignored = {f"{prefix}.num_batches_tracked" for prefix in norms}
    missing = [key for key in shapes if key not in state_dict]
    unexpected = [key for key in state_dict if key not in shapes and key not in ignored]
    wrong_shape, not_float, not_finite = [], [], []
    for key, expected in shapes.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        if tuple(value.shape) != expected:
            wrong_shape.append(f"{key}: got {tuple(value.shape)}, expected {expected}")
        elif not _is_float(value):
            not_float.append(f"{key}: {value.dtype}")
        elif not np.isfinite(value).all():
            not_finite.append(key)
    if not (missing or unexpected or wrong_shape or not_float or not_finite):
        return
    hints = [f"Pass the state_dict of torchvision.models.{name}() (jaxvision weights lists the files)"]
    if unexpected and all(key.startswith("module.") for key in unexpected):
        hints.append("the keys start with 'module.' (saved from DataParallel): strip that prefix first")
    head = _head_key(name)
    if any(item.startswith(f"{head}:") for item in wrong_shape):
        hints.append(f"for a head of another size than {num_classes} classes pass num_classes=None")
    raise _problems_error(
        f"The state_dict does not fit torchvision's {name}",
        [
            (missing, "missing key", "missing keys"),
            (unexpected, "unexpected key", "unexpected keys"),
            (wrong_shape, "shape mismatch", "shape mismatches"),
            (not_float, "non-float array", "non-float arrays"),
            (not_finite, "array with NaN or inf", "arrays with NaN or inf"),
        ],
        "; ".join(hints) + ".",
    )


def _plain(tree: Any) -> Any:
    """Nested mappings (dicts, FrozenDicts) as dicts, arrays as host NumPy."""
    if isinstance(tree, Mapping):
        return {key: _plain(value) for key, value in tree.items()}
    return np.asarray(tree)


def to_torchvision(name: str, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The torchvision state_dict of the jaxvision model ``name``'s variables: the inverse of ``load_torchvision``.

    Args:
      name: one of ``SUPPORTED_MODELS``.
      variables: ``{"params": ..., "batch_stats": ...}`` of ``jaxvision.get_model(name, num_classes=n)``
        (any n, read from the head), JAX or NumPy arrays.

    Returns:
      ``{key: float32 array}`` in the order of torchvision's ``state_dict()``, with a 0-d int64
      ``num_batches_tracked`` of 0 per batch norm, as torchvision holds it: what
      ``torchvision.models.<name>(num_classes=n).load_state_dict`` accepts (``torch.from_numpy`` each).

    Raises:
      ValueError: for an unknown name, or variables that are not the model's (every missing, unexpected
        or wrongly shaped leaf in one message).
    """
    _check_name(name)
    if not isinstance(variables, Mapping) or "params" not in variables:
        got = f"keys {sorted(map(str, variables))}" if isinstance(variables, Mapping) else type(variables).__name__
        raise ValueError(
            f"Invalid variables for {name!r}: expected a mapping with 'params' (and 'batch_stats' for batch norm), "
            f"got {got}. Pass model.init(...)'s result or load_torchvision(...)'s."
        )
    tree = _plain(variables)
    try:
        num_classes = int(tree["params"]["head"]["kernel"].shape[1])
    except (KeyError, TypeError, IndexError, AttributeError):
        raise ValueError(
            f"Invalid variables for {name!r}: no params['head']['kernel'] of shape (features, classes) to read the "
            f"number of classes from. Pass the variables of jaxvision.get_model({name!r}, num_classes=...)."
        ) from None
    tensors, norms, flax_shapes = _layout(name, _checked_num_classes(num_classes))
    leaves = {
        "/".join((path[0].key, *(p.key for p in path[1:]))): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    wanted = {"/".join((t.collection, *t.path)): t for t in tensors}
    missing = [key for key in wanted if key not in leaves]
    unexpected = [key for key in leaves if key not in wanted]
    wrong_shape = []
    for key, entry in wanted.items():
        if key in leaves:
            expected = flax_shapes[entry.key]
            if tuple(leaves[key].shape) != expected:
                wrong_shape.append(f"{key}: got {tuple(leaves[key].shape)}, expected {expected}")
    if missing or unexpected or wrong_shape:
        raise _problems_error(
            f"The variables do not fit jaxvision's {name} with {num_classes} classes",
            [
                (missing, "missing leaf", "missing leaves"),
                (unexpected, "unexpected leaf", "unexpected leaves"),
                (wrong_shape, "shape mismatch", "shape mismatches"),
            ],
            f"Pass the variables of jaxvision.get_model({name!r}, num_classes={num_classes}).",
        )
    state_dict: dict[str, np.ndarray] = {}
    tracked = {f"{prefix}.running_var" for prefix in norms}
    for entry in tensors:
        state_dict[entry.key] = _to_torch(leaves["/".join((entry.collection, *entry.path))], entry)
        if entry.key in tracked:
            state_dict[entry.key[: -len("running_var")] + "num_batches_tracked"] = np.array(0, dtype=np.int64)
    return state_dict
