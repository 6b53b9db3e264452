"""Starting a run from trained weights: where they come from, how their inputs were prepared, and the
state a fine-tuning run starts from (new head, frozen modules, per-part learning rates).

Weights come from a torchvision state_dict (``.pth``, ``.pt``, ``.safetensors``, ``.npz``; ImageNet
preprocessing) or from a finished jaxvision run folder (that run's preprocessing). The pieces are
``jaxvision.pretrained`` (loading) and ``jaxvision.transfer`` (freezing, heads); this module puts them
together for ``jaxvision train --weights`` and for Python users who want the same start.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import optax

from jaxvision.train import TrainState, state_from_variables

# torchvision's ImageNet normalisation (its weights' `transforms`), in [0, 1] pixel units, RGB.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's weights are trained and evaluated at 224x224 (resize 256, centre crop 224).
IMAGENET_SIZE = (224, 224)
TORCHVISION_SUFFIXES = (".pth", ".pt", ".safetensors", ".npz")


@dataclasses.dataclass(frozen=True)
class Weights:
    """Trained variables and the input preparation they expect.

    Attributes:
      variables: ``{"params": ..., "batch_stats": ...}`` for ``model_name``.
      source: the file or run folder they came from.
      kind: "torchvision" or "run".
      model_name: the registry name the variables belong to.
      num_classes: the size of their head.
      mean, std: per-channel normalisation in [0, 1] pixel units.
      channels: 1 or 3.
      image_size: (height, width) they were trained at.
      resize: how images of other sizes are brought to ``image_size`` (``jaxvision.data.image_folder``).
    """

    variables: dict[str, Any]
    source: str
    kind: str
    model_name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    image_size: tuple[int, int]
    resize: str

    def record(self) -> dict[str, Any]:
        """What run.json says about the weights (strict JSON)."""
        return {"source": os.path.abspath(self.source), "kind": self.kind, "model": self.model_name,
                "num_classes": self.num_classes, "mean": list(self.mean), "std": list(self.std),
                "channels": self.channels, "image_size": list(self.image_size), "resize": self.resize}


def read_weights(source: str, model_name: str) -> Weights:
    """Reads trained weights for ``model_name`` from a torchvision file or a jaxvision run folder.

    Raises:
      ValueError: one line, for a missing source, a file of another kind, weights of another model, or
        a state_dict that does not fit the model (every wrong key named).
    """
    if os.path.isdir(source):
        return _run_weights(source, model_name)
    if not os.path.isfile(source):
        raise ValueError(f"Invalid --weights {source}: no such file or folder; pass a torchvision state_dict "
                         f"({', '.join(TORCHVISION_SUFFIXES)}) or a jaxvision run folder (`jaxvision weights` lists "
                         "torchvision's files)")
    if not source.endswith(TORCHVISION_SUFFIXES):
        raise ValueError(f"Invalid --weights {source}: expected a torchvision state_dict ending in "
                         f"{', '.join(TORCHVISION_SUFFIXES)}, or a jaxvision run folder")
    from jaxvision.pretrained import load_torchvision

    variables = load_torchvision(model_name, source)
    num_classes = int(variables["params"]["head"]["bias"].shape[0])
    return Weights(variables=variables, source=source, kind="torchvision", model_name=model_name,
                   num_classes=num_classes, mean=IMAGENET_MEAN, std=IMAGENET_STD, channels=3,
                   image_size=IMAGENET_SIZE, resize="resize-crop")


def _run_weights(path: str, model_name: str) -> Weights:
    from jaxvision.run_record import load_run

    run = load_run(path)
    trained = run.metadata["model"]["name"]
    if trained != model_name:
        raise ValueError(f"Invalid --weights {path}: that run trained {trained!r}, not {model_name!r}; pass "
                         f"--model {trained} or another run's folder")
    shape = tuple(int(s) for s in run.metadata["input_shape"])
    normalization = run.metadata["normalization"]
    resize = (run.metadata.get("preprocessing") or {}).get("resize") or "stretch"
    return Weights(variables=jax.device_get(run.variables), source=path, kind="run", model_name=model_name,
                   num_classes=int(run.metadata["num_classes"]), mean=tuple(normalization["mean"]),
                   std=tuple(normalization["std"]), channels=shape[2], image_size=shape[:2],
                   resize="stretch" if resize == "none" else resize)


@dataclasses.dataclass(frozen=True)
class FineTuneStart:
    """Where a fine-tuning run starts.

    Attributes:
      model: the model with ``num_classes`` outputs, its frozen modules in inference mode.
      state: the TrainState at step 0, from the weights (and a new head unless it was kept).
      frozen: the top-level modules whose parameters stay fixed (for ``make_train_step(frozen=...)``).
    """

    model: nn.Module
    state: TrainState
    frozen: tuple[str, ...]


def fine_tune_start(
    model: nn.Module,
    weights: Weights,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    finetune: str = "all",
    backbone_lr_scale: float = 1.0,
    keep_head: bool = False,
) -> FineTuneStart:
    """The model, state and frozen modules of a run that starts from ``weights``.

    Args:
      model: the architecture with ``num_classes`` outputs (``get_model(name, num_classes=...)``).
      weights: from ``read_weights``.
      num_classes: the new task's classes.
      input_shape: one example's (height, width, channels).
      optimizer: the optimiser of the trained parts; wrapped by ``jaxvision.transfer.finetune_optimizer``.
      key: initialises the new head.
      finetune: "all", "linear" (the head only) or "last:K" (the last K stages or blocks and the head).
      backbone_lr_scale: the trained backbone's learning rate relative to the head's.
      keep_head: keep the weights' head (it must have ``num_classes`` outputs) rather than a new one.

    Raises:
      ValueError: one line, for a bad finetune spec or scale, a kept head of another size, or weights that
        do not fit the model.
    """
    from jaxvision import transfer

    if not (backbone_lr_scale > 0 and backbone_lr_scale == backbone_lr_scale and backbone_lr_scale != float("inf")):
        raise ValueError(f"Invalid backbone_lr_scale={backbone_lr_scale}: expected a finite number > 0, e.g. 0.1 "
                         "(--backbone-lr-scale 0.1)")
    transfer.parse_finetune(finetune)
    if keep_head:
        if weights.num_classes != num_classes:
            raise ValueError(f"Cannot keep the head of {weights.source}: it has {weights.num_classes} outputs and the "
                             f"data has {num_classes} classes; drop --keep-head to train a new head")
        variables = weights.variables
    else:
        source_model = model.clone(num_classes=weights.num_classes)
        model, variables = transfer.with_new_head(source_model, weights.variables, num_classes, key, input_shape)
    frozen = transfer.frozen_modules(model, tuple(input_shape), finetune)
    model = transfer.with_frozen_layers(model, frozen)
    tx = transfer.finetune_optimizer(optimizer, frozen, backbone_lr_scale=backbone_lr_scale)
    state = state_from_variables(model, variables, tx)
    return FineTuneStart(model=model, state=state, frozen=frozen)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FineTuneStart", "Weights", "fine_tune_start", "read_weights"]
