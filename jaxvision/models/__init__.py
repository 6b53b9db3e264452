"""Flax linen models: one contract, ``Model(num_classes, ...)(images, train=...)`` -> logits."""

from jaxvision.models.activations import ACTIVATIONS, Maxout, get_activation
from jaxvision.models.alexnet import AlexNet, LocalResponseNorm, adaptive_avg_pool
from jaxvision.models.batch_norm import BatchNorm
from jaxvision.models.conv_arithmetic import LayerSpec, conv_output_size, output_size, receptive_field
from jaxvision.models.conv_pool import ConvPool
from jaxvision.models.layers import Dropout, max_pool_2d, pool_2d
from jaxvision.models.lenet import LeNet5
from jaxvision.models.mlp import MLP
from jaxvision.models.mnist_cnn import MnistCNN
from jaxvision.models.perceptron import Perceptron
from jaxvision.models.registry import default_num_classes, get_model, list_models, register_model
from jaxvision.models.resnet import ResNet
from jaxvision.models.simple_cnn import SimpleCNN
from jaxvision.models.summary import LayerSummary, ModelSummary, summary, xla_flops
from jaxvision.models.vgg import VGG

__all__ = [
    "ACTIVATIONS",
    "AlexNet",
    "BatchNorm",
    "ConvPool",
    "Dropout",
    "LayerSpec",
    "LayerSummary",
    "LeNet5",
    "LocalResponseNorm",
    "MLP",
    "MnistCNN",
    "Maxout",
    "ModelSummary",
    "Perceptron",
    "ResNet",
    "SimpleCNN",
    "VGG",
    "adaptive_avg_pool",
    "conv_output_size",
    "default_num_classes",
    "get_activation",
    "get_model",
    "list_models",
    "max_pool_2d",
    "output_size",
    "pool_2d",
    "receptive_field",
    "register_model",
    "summary",
    "xla_flops",
]
