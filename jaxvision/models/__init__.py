"""Flax linen models: one contract, ``Model(num_classes, ...)(images, train=...)`` -> logits.

Every model is textbook Flax; its convolution, normalisation and pooling layers are fields that
default to flax's own, and ``get_model(..., kernels=...)`` fills them (``jaxvision.backends``).
"""

from jaxvision.models.activations import ACTIVATIONS, Maxout, get_activation
from jaxvision.models.alexnet import AlexNet, LocalResponseNorm, adaptive_avg_pool
from jaxvision.models.centernet import CenterNet, detection_model
from jaxvision.models.convnet import ConvNet
from jaxvision.models.conv_arithmetic import LayerSpec, conv_output_size, output_size, receptive_field
from jaxvision.models.layers import Dropout
from jaxvision.models.lenet import LeNet5
from jaxvision.models.mlp import MLP
from jaxvision.models.mnist_cnn import MnistCNN
from jaxvision.models.perceptron import Perceptron
from jaxvision.models.registry import default_num_classes, get_model, list_models, register_model
from jaxvision.models.resnet import ResNet
from jaxvision.models.simple_cnn import SimpleCNN
from jaxvision.models.stages import BackboneStages, stage_layers
from jaxvision.models.summary import LayerSummary, ModelSummary, summary, xla_flops
from jaxvision.models.unet import BackboneUNet, UNet, UNetDecoder, segmentation_model
from jaxvision.models.vgg import VGG

__all__ = [
    "ACTIVATIONS",
    "AlexNet",
    "BackboneStages",
    "BackboneUNet",
    "CenterNet",
    "ConvNet",
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
    "UNet",
    "UNetDecoder",
    "VGG",
    "adaptive_avg_pool",
    "conv_output_size",
    "default_num_classes",
    "detection_model",
    "get_activation",
    "get_model",
    "list_models",
    "output_size",
    "receptive_field",
    "register_model",
    "segmentation_model",
    "stage_layers",
    "summary",
    "xla_flops",
]
