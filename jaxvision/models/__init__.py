"""Flax linen models: one contract, ``Model(num_classes, ...)(images, train=...)`` -> logits."""

from jaxvision.models.activations import ACTIVATIONS, Maxout, get_activation
from jaxvision.models.layers import Dropout, pool_2d
from jaxvision.models.lenet import LeNet5
from jaxvision.models.mlp import MLP
from jaxvision.models.perceptron import Perceptron
from jaxvision.models.registry import get_model, list_models, register_model
from jaxvision.models.simple_cnn import SimpleCNN

__all__ = [
    "ACTIVATIONS",
    "Dropout",
    "LeNet5",
    "MLP",
    "Maxout",
    "Perceptron",
    "SimpleCNN",
    "get_activation",
    "get_model",
    "list_models",
    "pool_2d",
    "register_model",
]
