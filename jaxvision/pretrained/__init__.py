"""Pretrained weights from torchvision: load its state_dicts into jaxvision's models, and back.

    import jaxvision, jaxvision.pretrained
    variables = jaxvision.pretrained.load_torchvision("resnet18", "resnet18-f37072fd.pth")
    model = jaxvision.get_model("resnet18", num_classes=1000)
    logits = model.apply(variables, images, train=False)   # images: [N, 224, 224, 3], ImageNet-normalised

``catalog`` lists torchvision's published files (``jaxvision weights`` prints it) and downloads one on
request; nothing here touches the network on import.
"""

from jaxvision.pretrained.catalog import (
    WEIGHTS,
    TorchvisionWeights,
    download,
    get_weights,
    model_names,
    sha256_of,
    weights_for_file,
)
from jaxvision.pretrained.state_dict import read_state_dict, save_state_dict
from jaxvision.pretrained.torchvision import SUPPORTED_MODELS, load_torchvision, to_torchvision

__all__ = [
    "SUPPORTED_MODELS",
    "WEIGHTS",
    "TorchvisionWeights",
    "download",
    "get_weights",
    "load_torchvision",
    "model_names",
    "read_state_dict",
    "save_state_dict",
    "sha256_of",
    "to_torchvision",
    "weights_for_file",
]
