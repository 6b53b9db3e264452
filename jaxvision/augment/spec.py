"""Augmentation pipelines from a small text spec: ``parse_augment_spec("flip,crop:4,rotate:15,jitter:0.2")``.

Grammar: comma-separated ``name[:magnitude]`` items, applied in order; a name alone takes the op's
default magnitude, and magnitude 0 is the identity. One option item, ``fill:constant|edge|reflect``,
sets what geometric ops shift in from outside the image (default constant: 0, the dataset mean of
normalised images). ``describe_augmentations()`` lists every op with its default and range.

How a pipeline runs on a batch (inside the jitted train step, on device):
  1. per example, with its own key from ``jax.random.split(key, batch_size)``: each run of
     consecutive geometric ops is fused into one affine matrix and one bilinear resample (nearest
     neighbour when every op of the run moves whole pixels: flips and crops); each run of
     photometric ops is applied in [0, 1] pixel units (un-normalised with the dataset ``mean`` and
     ``std`` when given, as is otherwise); cutout and erase act on the normalised image;
  2. per batch, after every per-example op whatever their place in the spec: mixup and cutmix, in
     spec order, which turn labels into soft labels ``[batch, num_classes]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxvision._suggest import unknown_name_error
from jaxvision.augment import affine, geometric, mixing, photometric
from jaxvision.batch import Batch


@dataclasses.dataclass(frozen=True)
class AugmentOp:
    """One spec op: its kind, magnitude range, and how it runs.

    Attributes:
      kind: "geometric" (``apply(key, height, width, magnitude) -> matrix``), "photometric" or
        "image" (``apply(key, image, magnitude) -> image``), or "batch"
        (``apply(key, images, labels, magnitude, num_classes) -> (images, soft labels)``).
      default, low, high: the magnitude a bare name takes, and its allowed range.
      unit: what the magnitude measures, for help and errors.
      integer: whether the magnitude must be a whole number.
      whole_pixels: geometric ops whose matrices move whole pixels only (resampled exactly).
    """

    kind: str
    apply: Callable[..., Any]
    default: float
    low: float
    high: float
    unit: str
    integer: bool = False
    whole_pixels: bool = False


def _geometric(sampler: Callable[..., jax.Array], parameter: Callable[[float], dict[str, Any]]):
    return lambda key, height, width, magnitude: sampler(key, height, width, **parameter(magnitude))


def _per_image(function: Callable[..., jax.Array], name: str):
    return lambda key, image, magnitude: function(key, image, **{name: magnitude})


def _mix(function: Callable[..., tuple[jax.Array, jax.Array]]):
    return lambda key, images, labels, magnitude, num_classes: function(key, images, labels, alpha=magnitude, num_classes=num_classes)


# name: AugmentOp(kind, apply, default, low, high, unit, ...). Ranges stop where an op stops making
# sense (a 45-degree shear is already extreme; hue wraps at half a turn).
OPS: dict[str, AugmentOp] = {
    # geometric: fused into one resample per run of consecutive ops
    "flip": AugmentOp(
        "geometric", _geometric(geometric.sample_flip, lambda m: {"probability": m}),
        0.5, 0, 1, "probability of a left-right mirror", whole_pixels=True,
    ),
    "vflip": AugmentOp(
        "geometric", _geometric(geometric.sample_flip, lambda m: {"probability": m, "vertical": True}),
        0.5, 0, 1, "probability of an up-down mirror", whole_pixels=True,
    ),
    "crop": AugmentOp(
        "geometric", _geometric(geometric.sample_crop, lambda m: {"padding": int(m)}),
        4, 0, 64, "pixels of padding before a random crop back to size", integer=True, whole_pixels=True,
    ),
    "resized_crop": AugmentOp(
        "geometric",
        _geometric(geometric.sample_resized_crop, lambda m: {"scale": (1 - m, 1.0), "ratio": ((3 / 4) ** m, (4 / 3) ** m)}),
        0.5, 0, 0.92, "largest area fraction cut away; aspect in [(3/4)^m, (4/3)^m]",
    ),
    "translate": AugmentOp(
        "geometric", _geometric(geometric.sample_translation, lambda m: {"max_fraction": m}),
        0.1, 0, 0.5, "largest shift, fraction of the size",
    ),
    "rotate": AugmentOp("geometric", _geometric(geometric.sample_rotation, lambda m: {"max_degrees": m}), 15, 0, 180, "degrees"),
    "shear": AugmentOp("geometric", _geometric(geometric.sample_shear, lambda m: {"max_degrees": m}), 10, 0, 45, "degrees"),
    "stretch": AugmentOp(
        "geometric", _geometric(geometric.sample_stretch, lambda m: {"max_fraction": m}),
        0.1, 0, 0.5, "largest change of each axis' scale, fraction",
    ),
    "zoom": AugmentOp(
        "geometric", _geometric(geometric.sample_zoom, lambda m: {"max_fraction": m}),
        0.1, 0, 0.5, "largest change of scale, fraction",
    ),
    # photometric: in [0, 1] pixel units
    "brightness": AugmentOp(
        "photometric", _per_image(photometric.random_brightness, "max_delta"), 0.2, 0, 1, "largest delta in [0, 1] pixel units"
    ),
    "contrast": AugmentOp(
        "photometric", _per_image(photometric.random_contrast, "max_fraction"), 0.2, 0, 1, "largest change of contrast, fraction"
    ),
    "saturation": AugmentOp(
        "photometric", _per_image(photometric.random_saturation, "max_fraction"), 0.2, 0, 1, "largest change of saturation, fraction"
    ),
    "hue": AugmentOp(
        "photometric", _per_image(photometric.random_hue, "max_delta"), 0.1, 0, 0.5, "largest hue turn, fraction of a full turn"
    ),
    "gamma": AugmentOp("photometric", _per_image(photometric.random_gamma, "max_log_gamma"), 0.2, 0, 2, "largest |log gamma|"),
    "grayscale": AugmentOp("photometric", _per_image(photometric.random_grayscale, "probability"), 0.2, 0, 1, "probability"),
    "vignette": AugmentOp(
        "photometric", _per_image(photometric.random_vignette, "max_strength"), 0.3, 0, 1, "largest darkening of the corners, fraction"
    ),
    "jitter": AugmentOp(
        "photometric", _per_image(photometric.random_jitter, "strength"), 0.2, 0, 1, "brightness, contrast and saturation strength"
    ),
    # per-image regularisers: on the normalised image
    "cutout": AugmentOp(
        "image", _per_image(mixing.cutout, "size_fraction"), 0.5, 0, 1, "side of the zeroed square, fraction of the size"
    ),
    "erase": AugmentOp(
        "image", _per_image(mixing.random_erasing, "max_area"), 0.25, 0, 1, "largest erased area, fraction (applied with probability 0.5)"
    ),
    # per batch, last: soft labels
    "mixup": AugmentOp("batch", _mix(mixing.mixup), 0.2, 0, 10, "Beta(alpha, alpha) concentration"),
    "cutmix": AugmentOp("batch", _mix(mixing.cutmix), 1.0, 0, 10, "Beta(alpha, alpha) concentration"),
}
_FILL_OPTION = "fill"


def describe_augmentations() -> str:
    """One line per op: ``name  default  range  unit``, for ``--help`` and error hints."""
    lines = [f"{_FILL_OPTION}:{'|'.join(affine.FILL_MODES)}  what geometric ops shift in (default constant = 0)"]
    for name, op in OPS.items():
        lines.append(f"{name}[:{op.default:g}]  {op.low:g}..{op.high:g} {op.unit}")
    return "\n".join(lines)


def _format_range(op: AugmentOp) -> str:
    kind = "an integer " if op.integer else ""
    return f"expected {kind}{op.low:g}..{op.high:g} {op.unit}"


def _validated_magnitude(name: str, value: Any) -> float:
    op = OPS[name]
    try:
        magnitude = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid magnitude for {name}: {value!r} ({_format_range(op)}). Write e.g. {name}:{op.default:g}.") from None
    if not math.isfinite(magnitude) or not op.low <= magnitude <= op.high or (op.integer and magnitude != int(magnitude)):
        raise ValueError(f"Invalid magnitude for {name}: {value} ({_format_range(op)}).")
    return magnitude


@dataclasses.dataclass(frozen=True)
class AugmentPipeline:
    """A parsed spec; call it as ``pipeline(key, batch) -> batch`` (a ``jaxvision.train.BatchAugment``).

    Frozen and hashable, so it can be part of a train step (``make_train_step(augment=...)``): two pipelines from
    the same spec compare equal and share one compiled train step.

    Attributes:
      ops: (name, magnitude) pairs in spec order; magnitude-0 ops are kept but skipped.
      num_classes: width of soft labels, required by mixup and cutmix.
      mean, std: per-channel normalisation of the images in [0, 1] pixel units, used to run
        photometric ops on pixel values; None runs them on the values as given.
      fill_mode: "constant", "edge" or "reflect" for every geometric op.
    """

    ops: tuple[tuple[str, float], ...]
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    fill_mode: str = "constant"

    def __post_init__(self) -> None:
        for name, magnitude in self.ops:
            if name not in OPS:
                raise unknown_name_error("augmentation", name, OPS, hint="Write the spec as name[:magnitude],... e.g. flip,crop:4,rotate:15.")
            _validated_magnitude(name, magnitude)
        if self.fill_mode not in affine.FILL_MODES:
            raise unknown_name_error("fill mode", self.fill_mode, affine.FILL_MODES)
        mixers = [name for name, magnitude in self.ops if OPS[name].kind == "batch" and magnitude > 0]
        if mixers and (self.num_classes is None or self.num_classes < 2):
            raise ValueError(
                f"{mixers[0]} mixes labels, so it needs the number of classes: pass "
                f"parse_augment_spec(spec, num_classes=10) (got num_classes={self.num_classes})."
            )
        if (self.mean is None) != (self.std is None):
            raise ValueError("Pass both mean and std (the dataset's normalisation), or neither.")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"Invalid std={self.std}: expected positive per-channel standard deviations.")

    @property
    def spec(self) -> str:
        """The canonical spec string (every magnitude written out)."""
        items = [f"{name}:{magnitude:g}" for name, magnitude in self.ops]
        if self.fill_mode != "constant":
            items.append(f"{_FILL_OPTION}:{self.fill_mode}")
        return ",".join(items)

    def _per_image_ops(self) -> list[tuple[str, float]]:
        return [(n, m) for n, m in self.ops if OPS[n].kind != "batch" and m > 0]

    def augment_image(self, key: jax.Array, image: jax.Array) -> jax.Array:
        """The per-example part of the pipeline on one ``[height, width, channels]`` image."""
        return self.augment_example(key, image)[0]

    def augment_example(self, key: jax.Array, image: jax.Array, targets: Any = None,
                        warp_targets: Callable[[Any, jax.Array], Any] | None = None) -> tuple[jax.Array, Any]:
        """One image and its dense or box targets, kept aligned: ``(image, targets)``.

        The image goes through exactly ``augment_image`` (same keys, same ops); every fused geometric
        matrix is also handed to ``warp_targets(targets, matrix)`` (e.g. ``jaxvision.augment.targets``'
        ``warp_mask``/``warp_boxes``), so a mask or boxes move with the pixels. Photometric and per-image
        ops leave targets alone.
        """
        ops = self._per_image_ops()
        if not ops:
            return image, targets
        keys = jax.random.split(key, len(ops))
        height, width, channels = image.shape
        index = 0
        while index < len(ops):
            kind = OPS[ops[index][0]].kind
            end = index + 1
            if kind in ("geometric", "photometric"):
                while end < len(ops) and OPS[ops[end][0]].kind == kind:
                    end += 1
            run = list(zip(ops[index:end], keys[index:end]))
            if kind == "geometric":
                matrix = affine.compose(*(OPS[n].apply(k, height, width, m) for (n, m), k in run))
                exact = all(OPS[n].whole_pixels for (n, _), _ in run)
                image = affine.warp_affine(image, matrix, mode=self.fill_mode, order=0 if exact else 1)
                if warp_targets is not None:
                    targets = warp_targets(targets, matrix)
            elif kind == "photometric":
                image = self._photometric_run(run, image, channels)
            else:
                (name, magnitude), op_key = run[0]
                image = OPS[name].apply(op_key, image, magnitude)
            index = end
        return image, targets

    def _photometric_run(self, run: list, image: jax.Array, channels: int) -> jax.Array:
        if self.mean is not None:
            if len(self.mean) != channels:
                raise ValueError(f"mean has {len(self.mean)} channels but the images have {channels}.")
            mean = jnp.asarray(self.mean, image.dtype).reshape(1, 1, channels)
            std = jnp.asarray(self.std, image.dtype).reshape(1, 1, channels)
            image = image * std + mean
        for (name, magnitude), op_key in run:
            image = OPS[name].apply(op_key, image, magnitude)
        if self.mean is not None:
            image = (image - mean) / std
        return image

    def augment_images(self, key: jax.Array, images: jax.Array) -> jax.Array:
        """The per-example part on ``[batch, height, width, channels]``: one key per example."""
        if not self._per_image_ops():
            return images
        return jax.vmap(self.augment_image)(jax.random.split(key, images.shape[0]), images)

    def __call__(self, key: jax.Array, batch: Batch) -> Batch:
        """Augments a batch: per-example ops, then mixup/cutmix. Pure; runs under jit."""
        image_key, batch_key = jax.random.split(key)
        images = self.augment_images(image_key, batch.images)
        labels = batch.labels
        mixers = [(n, m) for n, m in self.ops if OPS[n].kind == "batch" and m > 0]
        for (name, magnitude), mix_key in zip(mixers, jax.random.split(batch_key, max(len(mixers), 1))):
            images, labels = OPS[name].apply(mix_key, images, labels, magnitude, self.num_classes)
        return batch.replace(images=images, labels=labels)


def _parse_items(spec: str | Sequence[str | tuple[str, float]]) -> list[tuple[str, Any]]:
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError(f"Empty augmentation spec {spec!r}: expected name[:magnitude],... e.g. flip,crop:4,rotate:15.")
        items = spec.split(",")
    else:
        items = list(spec)
    parsed = []
    for item in items:
        if isinstance(item, tuple):
            parsed.append(item)
            continue
        text = item.strip()
        name, _, magnitude = text.partition(":")
        name = name.strip().lower().replace("-", "_")
        if not name:
            raise ValueError(f"Empty item in augmentation spec {spec!r}: expected name[:magnitude] between commas.")
        parsed.append((name, magnitude.strip() if magnitude.strip() else None))
    return parsed


def parse_augment_spec(
    spec: str | Sequence[str | tuple[str, float]],
    *,
    num_classes: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    fill_mode: str = "constant",
) -> AugmentPipeline:
    """Parses ``"flip,crop:4,rotate:15,shear:10,jitter:0.2"`` into a ``(key, batch) -> batch`` pipeline.

    Args:
      spec: comma-separated ``name[:magnitude]`` (see ``describe_augmentations()``), or a list of such
        strings or (name, magnitude) pairs.
      num_classes: classes of the dataset; required when the spec has mixup or cutmix.
      mean, std: the dataset's per-channel normalisation in [0, 1] units (``splits.meta.mean``/``std``),
        so photometric ops see pixel values; leave None for images already in [0, 1].
      fill_mode: default fill of geometric ops; a ``fill:...`` item in the spec overrides it.

    Returns:
      An AugmentPipeline, usable as ``create_train_state(..., augment=pipeline)``.

    Raises:
      ValueError: one line naming the bad item, e.g. ``Unknown augmentation 'rotat'. Known: ...
        Did you mean 'rotate'?`` or ``Invalid magnitude for rotate: 400 (expected 0..180 degrees).``
    """
    ops = []
    for name, magnitude in _parse_items(spec):
        if name == _FILL_OPTION:
            fill_mode = str(magnitude).lower()
            if fill_mode not in affine.FILL_MODES:
                raise ValueError(f"Invalid fill mode {magnitude!r}: expected one of {', '.join(affine.FILL_MODES)}, e.g. fill:reflect.")
            continue
        if name not in OPS:
            raise unknown_name_error("augmentation", name, OPS, hint="Write the spec as name[:magnitude],... e.g. flip,crop:4,rotate:15.")
        ops.append((name, OPS[name].default if magnitude is None else _validated_magnitude(name, magnitude)))
    return AugmentPipeline(
        ops=tuple(ops),
        num_classes=num_classes,
        mean=None if mean is None else tuple(float(m) for m in mean),
        std=None if std is None else tuple(float(s) for s in std),
        fill_mode=fill_mode,
    )
