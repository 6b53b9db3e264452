"""torchvision's official ImageNet weights for the models jaxvision can load, and their checked download.

Figures from torchvision's weight enums (torchvision/models/alexnet.py, vgg.py, resnet.py: ``url``,
``meta["num_params"]``, ``meta["_metrics"]["ImageNet-1K"]``, ``transforms``). Every entry's evaluation
transform is torchvision's ``ImageClassification`` preset: resize the shorter side to ``resize_size``
(bilinear, antialiased), centre-crop ``crop_size``, scale to [0, 1], normalise with the ImageNet mean
and std, RGB. The 8 hex digits in a file name are the start of the file's SHA-256, which
``torch.hub`` checks and ``download`` checks too.

Nothing here touches the network until ``download`` is called.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import urllib.error
import urllib.request
import uuid

from jaxvision._suggest import unknown_name_error

BASE_URL = "https://download.pytorch.org/models/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_TAG = "IMAGENET1K_V1"
_CHUNK = 1 << 20
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.pth$")


@dataclasses.dataclass(frozen=True)
class TorchvisionWeights:
    """One set of torchvision's pretrained weights.

    Attributes:
      model: the jaxvision (and torchvision) model name, e.g. "resnet50".
      tag: torchvision's name for the weights, e.g. "IMAGENET1K_V1" (``ResNet50_Weights.IMAGENET1K_V1``).
      file_name: the file torchvision publishes, e.g. "resnet50-0676ba61.pth".
      top1, top5: ImageNet-1k validation accuracy (%) torchvision reports, with this transform.
      num_params: parameters, with the 1000-class head.
      resize_size: shorter side after resizing, before the crop (256, or 232 for the V2 weights).
      crop_size: side of the centre crop the model sees.
      mean, std: per-channel normalisation of RGB values in [0, 1].
    """

    model: str
    tag: str
    file_name: str
    top1: float
    top5: float
    num_params: int
    resize_size: int = 256
    crop_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def url(self) -> str:
        return BASE_URL + self.file_name

    @property
    def sha256_prefix(self) -> str:
        match = _HASH_IN_NAME.search(self.file_name)
        if match is None:  # every file below is named <name>-<hash>.pth
            raise RuntimeError(f"{self.file_name!r} carries no SHA-256 prefix")
        return match.group(1)

    def as_dict(self) -> dict:
        """The entry as JSON-ready values, url and sha256_prefix included."""
        return {**dataclasses.asdict(self), "url": self.url, "sha256_prefix": self.sha256_prefix,
                "interpolation": "bilinear"}


_W = TorchvisionWeights
WEIGHTS: tuple[TorchvisionWeights, ...] = (
    _W("alexnet", "IMAGENET1K_V1", "alexnet-owt-7be5be79.pth", 56.522, 79.066, 61_100_840),
    _W("vgg11", "IMAGENET1K_V1", "vgg11-8a719046.pth", 69.020, 88.628, 132_863_336),
    _W("vgg13", "IMAGENET1K_V1", "vgg13-19584684.pth", 69.928, 89.246, 133_047_848),
    _W("vgg16", "IMAGENET1K_V1", "vgg16-397923af.pth", 71.592, 90.382, 138_357_544),
    _W("vgg19", "IMAGENET1K_V1", "vgg19-dcbb9e9d.pth", 72.376, 90.876, 143_667_240),
    _W("vgg11_bn", "IMAGENET1K_V1", "vgg11_bn-6002323d.pth", 70.370, 89.810, 132_868_840),
    _W("vgg13_bn", "IMAGENET1K_V1", "vgg13_bn-abd245e5.pth", 71.586, 90.374, 133_053_736),
    _W("vgg16_bn", "IMAGENET1K_V1", "vgg16_bn-6c64b313.pth", 73.360, 91.516, 138_365_992),
    _W("vgg19_bn", "IMAGENET1K_V1", "vgg19_bn-c79401a0.pth", 74.218, 91.842, 143_678_248),
    _W("resnet18", "IMAGENET1K_V1", "resnet18-f37072fd.pth", 69.758, 89.078, 11_689_512),
    _W("resnet34", "IMAGENET1K_V1", "resnet34-b627a593.pth", 73.314, 91.420, 21_797_672),
    _W("resnet50", "IMAGENET1K_V1", "resnet50-0676ba61.pth", 76.130, 92.862, 25_557_032),
    # The V2 weights (torchvision's "new training recipe") are evaluated after a resize to 232.
    _W("resnet50", "IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 80.858, 95.434, 25_557_032, resize_size=232),
    _W("resnet101", "IMAGENET1K_V1", "resnet101-63fe2227.pth", 77.374, 93.546, 44_549_160),
    _W("resnet101", "IMAGENET1K_V2", "resnet101-cd907fc2.pth", 81.886, 95.780, 44_549_160, resize_size=232),
    _W("resnet152", "IMAGENET1K_V1", "resnet152-394f9c45.pth", 78.312, 94.046, 60_192_808),
    _W("resnet152", "IMAGENET1K_V2", "resnet152-f82ba261.pth", 82.284, 96.002, 60_192_808, resize_size=232),
)
del _W


def model_names() -> list[str]:
    """The models with torchvision weights, in catalog order."""
    return list(dict.fromkeys(entry.model for entry in WEIGHTS))


def get_weights(name: str, tag: str = DEFAULT_TAG) -> TorchvisionWeights:
    """The catalog entry of model ``name``'s weights ``tag``.

    Raises:
      ValueError: for a model without torchvision weights, or a tag that model does not have.
    """
    names = model_names()
    if name not in names:
        raise unknown_name_error("model with torchvision weights", name, names)
    tags = [entry.tag for entry in WEIGHTS if entry.model == name]
    if tag not in tags:
        raise ValueError(f"Model {name!r} has no torchvision weights {tag!r}: expected one of {', '.join(tags)}.")
    return next(entry for entry in WEIGHTS if entry.model == name and entry.tag == tag)


def weights_for_file(path: str | os.PathLike) -> TorchvisionWeights | None:
    """The entry whose published file name is ``path``'s base name (so its transform can be used), else None."""
    base = os.path.basename(os.fspath(path))
    return next((entry for entry in WEIGHTS if entry.file_name == base), None)


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, temporary: str, *, progress: bool, description: str) -> str:
    """Streams ``url`` into ``temporary``; returns the hex SHA-256 of what was written."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, open(temporary, "wb") as f:
        total = response.headers.get("Content-Length")
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=description, disable=not progress) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def download(name: str, directory: str | os.PathLike, *, tag: str = DEFAULT_TAG, url: str | None = None,
             progress: bool = True) -> str:
    """Downloads model ``name``'s torchvision weights into ``directory``, checked against their SHA-256 prefix.

    The file is written under a temporary name and renamed to its published name (e.g.
    ``resnet18-f37072fd.pth``) only once its hash matches, so an interrupted or corrupt download leaves
    nothing behind. A file already there with the right hash is kept and not downloaded again.

    Args:
      name: a model of the catalog, e.g. "resnet18".
      directory: where the file goes (created if needed).
      tag: which of the model's weights, e.g. "IMAGENET1K_V2" for resnet50's newer ones.
      url: fetch from here instead of download.pytorch.org (a mirror; ``file://`` works too).
      progress: show a tqdm progress bar.

    Returns:
      The path of the checked file.

    Raises:
      ValueError: for an unknown name or tag, a network or file error, or a hash mismatch.
    """
    entry = get_weights(name, tag)
    source = url or entry.url
    directory = os.fspath(directory)
    destination = os.path.join(directory, entry.file_name)
    if os.path.isfile(destination) and sha256_of(destination).startswith(entry.sha256_prefix):
        return destination
    created = not os.path.isdir(directory)
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{entry.file_name}.{uuid.uuid4().hex}.part")
    kept = False
    try:
        try:
            digest = _fetch(source, temporary, progress=progress, description=entry.file_name)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise ValueError(
                f"Cannot download {source}: {reason}. Download it on a machine with internet access from "
                f"{entry.url} and pass the file with --weights FILE."
            ) from None
        if not digest.startswith(entry.sha256_prefix):
            raise ValueError(
                f"Downloaded {source} has SHA-256 {digest[:16]}..., expected one starting {entry.sha256_prefix}: the "
                f"file is damaged or not torchvision's {entry.file_name}, and was not kept. Download it again."
            )
        os.replace(temporary, destination)
        kept = True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        if created and not kept:
            with contextlib.suppress(OSError):  # only the folder this call made, and only if still empty
                os.rmdir(directory)
    return destination
