"""The model registry: every model by name, built with ``get_model(name, num_classes=...)``."""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxvision import backends
from jaxvision._suggest import unknown_name_error
from jaxvision.models import resnet
from jaxvision.models.activations import get_activation
from jaxvision.models.alexnet import AlexNet
from jaxvision.models.lenet import LeNet5
from jaxvision.models.mlp import MLP
from jaxvision.models.convnet import ConvNet
from jaxvision.models.mnist_cnn import MnistCNN
from jaxvision.models.perceptron import Perceptron
from jaxvision.models.simple_cnn import SimpleCNN
from jaxvision.models.unet import UNet
from jaxvision.models.vgg import VGG

ModelConstructor = Callable[..., nn.Module]


def _vgg_variants() -> dict[str, ModelConstructor]:
    """vgg11/13/16/19 (configurations A, B, D, E), each also with batch norm ("_bn"), with the 32x32
    head ("_cifar": flatten 1x1x512, dense 512, dense 512, dense classes) and both ("_bn_cifar");
    plus vgg11_lrn (configuration A-LRN) and vgg16_c (configuration C, with 1x1 convolutions)."""
    variants: dict[str, ModelConstructor] = {
        "vgg11_lrn": functools.partial(VGG, config="A-LRN"),
        "vgg16_c": functools.partial(VGG, config="C"),
    }
    cifar = dict(num_classes=10, small_input=True, hidden_size=512)
    for depth, config in ((11, "A"), (13, "B"), (16, "D"), (19, "E")):
        for suffix, batch_norm in (("", False), ("_bn", True)):
            variants[f"vgg{depth}{suffix}"] = functools.partial(VGG, config=config, batch_norm=batch_norm)
            variants[f"vgg{depth}{suffix}_cifar"] = functools.partial(VGG, config=config, batch_norm=batch_norm, **cifar)
    return variants


_MODELS: dict[str, ModelConstructor] = {
    "perceptron": Perceptron,
    "mlp": MLP,
    "lenet5": LeNet5,
    "simple_cnn": SimpleCNN,
    "mnist_cnn": MnistCNN,
    # AlexNet: torchvision's single-tower layout; the 2012 paper's (LRN, two groups); 32x32 inputs.
    "alexnet": AlexNet,
    "alexnet_2012": functools.partial(AlexNet, widths=(96, 256, 384, 384, 256), local_response_norm=True, groups=2),
    "alexnet_cifar": functools.partial(AlexNet, num_classes=10, small_input=True, hidden_size=1024),
    **_vgg_variants(),
    # ResNet: ImageNet 18-152 (v1.5, projection shortcuts); CIFAR 20-110 (6n+2 layers, zero-padding shortcuts).
    **{f"resnet{depth}": getattr(resnet, f"ResNet{depth}") for depth in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)},
    # A small all-convolutional net with batch norm and global average pooling, for any input size.
    "convnet": ConvNet,
    # Dense prediction: per-pixel logits [N, H, W, num_classes] (Ronneberger et al., 2015); _small halves every width.
    "unet": UNet,
    "unet_small": functools.partial(UNet, widths=(8, 16, 32, 64)),
}


def register_model(name: str, constructor: ModelConstructor) -> None:
    """Adds a model under ``name``; the constructor must accept ``num_classes=``."""
    if name in _MODELS:
        raise ValueError(f"A model named {name!r} is already registered; pick another name.")
    _MODELS[name] = constructor


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def default_num_classes(name: str) -> int:
    """The number of classes model ``name`` has when none is asked for (1000 for ImageNet models).

    Raises:
      ValueError: for an unknown name.
    """
    if name not in _MODELS:
        raise unknown_name_error("model", name, _MODELS)
    constructor = _MODELS[name]
    keywords = getattr(constructor, "keywords", {})
    if "num_classes" in keywords:
        return keywords["num_classes"]
    model_class = getattr(constructor, "func", constructor)
    return next(f.default for f in dataclasses.fields(model_class) if f.name == "num_classes")


def _checked_num_classes(num_classes: Any) -> int:
    """``num_classes`` as an int, refusing what would fail later (a 0-wide head divides by zero)."""
    # numbers.Integral admits NumPy integers (labels.max() + 1) and refuses 2.5 and 10.0; bool is an
    # Integral too, but True classes is a typo rather than a count.
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(
            f"Invalid num_classes={num_classes!r} ({type(num_classes).__name__}): expected a positive integer "
            f"(the number of classes in the labels), e.g. num_classes=10."
        )
    if num_classes < 1:
        raise ValueError(
            f"Invalid num_classes={num_classes}: expected a positive integer (the number of classes in the "
            f"labels), e.g. num_classes=10."
        )
    return int(num_classes)


def get_model(name: str, num_classes: int = 10, *, kernels: str = "auto", **overrides: Any) -> nn.Module:
    """Builds the registered model ``name``.

    Args:
      name: a name from ``list_models()``, e.g. "lenet5".
      num_classes: number of output logits, at least 1.
      kernels: which layers fill the model's conv/norm/pool fields (``jaxvision.backends``):
        "reference" (flax's), "cpu" (XLA:CPU kernels with the same parameters and results up to
        float rounding) or "auto" ("cpu" on the CPU backend, else "reference").
      **overrides: any other field of the model, e.g. ``dropout_rate=0.5`` or ``activation="tanh"``.

    Raises:
      ValueError: for an unknown name or kernels, a bad num_classes, or an override the model does not have.
    """
    if name not in _MODELS:
        raise unknown_name_error("model", name, _MODELS)
    num_classes = _checked_num_classes(num_classes)
    layer_fields = backends.layers(kernels)
    constructor = _MODELS[name]
    model_class = getattr(constructor, "func", constructor)  # functools.partial variants
    fields = {f.name for f in dataclasses.fields(model_class)} - {"parent", "name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"Model {name!r} has no field(s) {', '.join(unknown)}. "
            f"Its fields: {', '.join(sorted(fields))}."
        )
    if isinstance(overrides.get("activation"), str) and overrides["activation"] != "maxout":
        get_activation(overrides["activation"])  # an unknown name fails here, not at the first trace
    injected = {field: layer for field, layer in layer_fields.items() if field in fields and field not in overrides}
    return constructor(num_classes=num_classes, **injected, **overrides)
