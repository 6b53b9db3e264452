"""The benchmarked models in PyTorch, layer for layer the same shapes and parameter counts as jaxvision's,
and their train/inference steps timed the same way (SGD momentum, float32, same batch)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.inputs import benchmark_inputs
from benchmarks.timing import PageFaults, Timing, timed_calls


class MLP(nn.Module):
    def __init__(self, num_classes: int = 10, in_features: int = 784, hidden_sizes=(256, 128)):
        super().__init__()
        layers, width = [], in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, num_classes))

    def forward(self, x):
        return self.body(x)


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        # Flatten in NHWC order, as jaxvision does, so weights could be copied across one to one.
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class SimpleCNN(nn.Module):
    """pytorch/examples/mnist's network."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = self.dropout1(x).permute(0, 2, 3, 1).flatten(1)
        return self.fc2(self.dropout2(F.relu(self.fc1(x))))


class MnistCNN(nn.Module):
    """conv 24@5x5, pool, conv 32@3x3, pool, dense 256, dense classes, "same" padding."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 24, 5, padding=2), nn.Conv2d(24, 32, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(7 * 7 * 32, 256), nn.Linear(256, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.permute(0, 2, 3, 1).flatten(1))))


class _Block(nn.Module):
    """Basic or bottleneck residual block (stride on the 3x3, "v1.5"), as jaxvision.models.resnet."""

    def __init__(self, in_features: int, features: int, stride: int, bottleneck: bool, shortcut: str):
        super().__init__()
        out = 4 * features if bottleneck else features
        if bottleneck:
            self.body = nn.Sequential(
                nn.Conv2d(in_features, features, 1, bias=False), nn.BatchNorm2d(features), nn.ReLU(),
                nn.Conv2d(features, features, 3, stride, 1, bias=False), nn.BatchNorm2d(features), nn.ReLU(),
                nn.Conv2d(features, out, 1, bias=False), nn.BatchNorm2d(out))
        else:
            self.body = nn.Sequential(
                nn.Conv2d(in_features, features, 3, stride, 1, bias=False), nn.BatchNorm2d(features), nn.ReLU(),
                nn.Conv2d(features, features, 3, 1, 1, bias=False), nn.BatchNorm2d(features))
        self.stride, self.extra, self.projection = stride, out - in_features, None
        if (stride != 1 or in_features != out) and shortcut == "projection":
            self.projection = nn.Sequential(nn.Conv2d(in_features, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        residual = x
        if self.projection is not None:
            residual = self.projection(x)
        elif self.stride != 1 or self.extra:
            residual = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))
        return F.relu(self.body(x) + residual)


class ResNet(nn.Module):
    def __init__(self, stage_sizes, widths=(64, 128, 256, 512), bottleneck=False, small_input=False,
                 num_classes=1000, shortcut="projection"):
        super().__init__()
        if small_input:
            stem = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
        else:
            stem = [nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(),
                    nn.MaxPool2d(3, 2, 1)]
        blocks, in_features = [], widths[0]
        for stage, (size, width) in enumerate(zip(stage_sizes, widths)):
            for index in range(size):
                blocks.append(_Block(in_features, width, 2 if stage and not index else 1, bottleneck, shortcut))
                in_features = 4 * width if bottleneck else width
        self.body = nn.Sequential(*stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class VGG11Cifar(nn.Module):
    """Configuration A, 3x3 convs with bias, five 2x2 max pools, CIFAR head (512, 512, classes)."""

    def __init__(self, num_classes: int = 10, hidden_size: int = 512):
        super().__init__()
        layers, width = [], 3
        for entry in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
            if entry == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(width, entry, 3, padding=1), nn.ReLU()]
                width = entry
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(512, hidden_size), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(hidden_size, num_classes))

    def forward(self, x):
        return self.head(self.body(x))


TORCH_MODELS = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "simple_cnn": SimpleCNN,
    "mnist_cnn": MnistCNN,
    "resnet20": lambda num_classes=10: ResNet((3, 3, 3), (16, 32, 64), small_input=True, num_classes=num_classes,
                                             shortcut="zero_pad"),
    "vgg11_cifar": VGG11Cifar,
    "resnet18": lambda num_classes=1000: ResNet((2, 2, 2, 2), num_classes=num_classes),
    "resnet50": lambda num_classes=1000: ResNet((3, 4, 6, 3), bottleneck=True, num_classes=num_classes),
}


def build_torch_model(name: str, num_classes: int) -> nn.Module:
    """The PyTorch twin of jaxvision model ``name``."""
    if name not in TORCH_MODELS:
        raise ValueError(f"No PyTorch twin for model {name!r}: expected one of {', '.join(TORCH_MODELS)}.")
    return TORCH_MODELS[name](num_classes=num_classes)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _time(function, *, repeats: int, warmup: int, min_seconds: float) -> Timing:
    for _ in range(warmup):
        function()
    return Timing.of(timed_calls(function, repeats=repeats, min_seconds=min_seconds))


def bench_torch(name: str, input_shape, num_classes: int, batch_size: int, *, repeats: int, warmup: int = 2,
                compile: bool = False, learning_rate: float = 0.01, momentum: float = 0.9,
                images: str = "synthetic", min_seconds: float = 0.0) -> dict[str, Any]:
    """Train-step and inference timings of the PyTorch twin, eager or ``torch.compile``d, on the same
    ``images`` as the jaxvision row ("auto", "mnist" or "synthetic", see ``benchmarks.inputs``)."""
    torch.manual_seed(0)
    model = build_torch_model(name, num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    pixels, labels, source = benchmark_inputs(tuple(input_shape), num_classes, batch_size, images)
    images = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(labels.astype(np.int64))
    forward = torch.compile(model) if compile else model

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()

    def infer():
        with torch.no_grad():
            forward(images)

    start = time.perf_counter()
    model.train()
    train_step()  # eager: first-call overhead; compiled: the compile itself
    train_first_s = time.perf_counter() - start
    with PageFaults() as faults:
        train_timing = _time(train_step, repeats=repeats, warmup=warmup, min_seconds=min_seconds)
    faults_per_step = faults.count / (train_timing.repeats + warmup)
    model.eval()
    start = time.perf_counter()
    infer()
    eval_first_s = time.perf_counter() - start
    eval_timing = _time(infer, repeats=repeats, warmup=warmup, min_seconds=min_seconds)
    return {
        "framework": "pytorch", "mode": "compile" if compile else "eager", "model": name, "batch_size": batch_size,
        "dtype": "float32", "images": source, "parameters": parameter_count(model),
        "train_compile_s": train_first_s, "eval_compile_s": eval_first_s,
        "train_step_s": dataclasses.asdict(train_timing), "train_images_per_s": batch_size / train_timing.median,
        "eval_step_s": dataclasses.asdict(eval_timing), "eval_images_per_s": batch_size / eval_timing.median,
        "torch_threads": torch.get_num_threads(), "train_page_faults_per_step": faults_per_step,
    }
