"""Numerical parity of the zoo with PyTorch: the same weights in an independently written torch.nn model.

Shape tests cannot see a wrong padding side, a stride on the wrong convolution, a pooling window off
by one or a transposed flatten; equal outputs to 1e-4 can. Each torch model is written here from the
papers / torchvision, with the same submodule names as the Flax one so the weights copy by name:
conv kernels HWIO -> OIHW, dense kernels transposed, and the activations permuted to NHWC before the
first flatten so the same dense weights apply. Batch-norm scales and running statistics are random,
so eval-mode batch norm is really compared. Skipped without the ``compare`` extra (torch).
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpy_weights import numpy_variables
from jaxvision.models import AlexNet, LocalResponseNorm, ResNet, adaptive_avg_pool, get_model

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        yield


def _load_into_torch(torch_model, variables):
    """Copies Flax variables into the torch model's modules of the same (dotted) names."""
    params, stats = variables["params"], variables.get("batch_stats", {})

    def at(tree, name):
        for key in name.split("."):
            tree = tree[key]
        return tree

    copied = 0
    with torch.no_grad():
        for name, module in torch_model.named_modules():
            if isinstance(module, tnn.Conv2d):
                module.weight.copy_(torch.from_numpy(np.transpose(at(params, name)["kernel"], (3, 2, 0, 1)).copy()))
            elif isinstance(module, tnn.Linear):
                module.weight.copy_(torch.from_numpy(at(params, name)["kernel"].T.copy()))
            elif isinstance(module, tnn.BatchNorm2d):
                module.weight.copy_(torch.from_numpy(at(params, name)["scale"]))
                module.running_mean.copy_(torch.from_numpy(at(stats, name)["mean"]))
                module.running_var.copy_(torch.from_numpy(at(stats, name)["var"]))
            else:
                continue
            if module.bias is not None:
                module.bias.copy_(torch.from_numpy(at(params, name)["bias"]))
            copied += sum(p.numel() for p in module.parameters(recurse=False))
    # Every Flax parameter has a torch counterpart, and the other way round.
    assert copied == sum(leaf.size for leaf in jax.tree.leaves(params))
    return torch_model.eval()


def _flatten_nhwc(x):
    return x.permute(0, 2, 3, 1).flatten(1)


def _assert_parity(model, torch_model, input_shape, batch=2, seed=0):
    variables = numpy_variables(model, input_shape, seed)
    _load_into_torch(torch_model, variables)
    images = np.random.default_rng(seed + 1).normal(size=(batch, *input_shape)).astype(np.float32)
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * float(np.abs(theirs).max()))


# --- layers ---------------------------------------------------------------------------------------


def test_zoo_local_response_norm_matches_torch():
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 7)).astype(np.float32) * 10
    ours = LocalResponseNorm(size=5, alpha=1e-2, beta=0.75, k=2.0).apply({}, x)
    theirs = tnn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0)(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size, out", [(7, 7), (14, 7), (13, 6), (10, 7), (1, 7), (2, 6), (5, 3)])
def test_zoo_adaptive_avg_pool_matches_torch(size, out):
    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 3)).astype(np.float32)
    ours = adaptive_avg_pool(jnp.asarray(x), (out, out))
    theirs = F.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), (out, out)).permute(0, 2, 3, 1)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-6)


# --- LeNet-5 -------------------------------------------------------------------------------------


class TorchLeNet5(tnn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.Conv_0 = tnn.Conv2d(1, 6, 5, padding=2)
        self.Conv_1 = tnn.Conv2d(6, 16, 5)
        self.Dense_0 = tnn.Linear(16 * 5 * 5, 120)
        self.Dense_1 = tnn.Linear(120, 84)
        self.Dense_2 = tnn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.Conv_0(x)), 2)
        x = F.max_pool2d(F.relu(self.Conv_1(x)), 2)
        x = F.relu(self.Dense_0(_flatten_nhwc(x)))
        return self.Dense_2(F.relu(self.Dense_1(x)))


def test_zoo_lenet5_matches_torch():
    _assert_parity(get_model("lenet5"), TorchLeNet5(), (28, 28, 1), batch=3)


class TorchMnistCNN(tnn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.Conv_0, self.Conv_1 = tnn.Conv2d(1, 24, 5, padding=2), tnn.Conv2d(24, 32, 3, padding=1)
        self.Dense_0, self.Dense_1 = tnn.Linear(7 * 7 * 32, 256), tnn.Linear(256, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.Conv_0(x)), 2)
        x = F.max_pool2d(F.relu(self.Conv_1(x)), 2)
        return self.Dense_1(F.relu(self.Dense_0(_flatten_nhwc(x))))


def test_zoo_mnist_cnn_matches_torch():
    _assert_parity(get_model("mnist_cnn"), TorchMnistCNN(), (28, 28, 1), batch=3)


# --- AlexNet -------------------------------------------------------------------------------------


class TorchAlexNet(tnn.Module):
    """torchvision's AlexNet, with the paper's LRN and conv groups as options."""

    def __init__(self, widths, hidden_size, num_classes, small_input, lrn, groups):
        super().__init__()
        self.small_input, self.lrn = small_input, lrn
        self.conv1 = tnn.Conv2d(3, widths[0], 3, padding=1) if small_input else tnn.Conv2d(3, widths[0], 11, 4, 2)
        self.conv2 = tnn.Conv2d(widths[0], widths[1], 5, padding=2, groups=groups)
        self.conv3 = tnn.Conv2d(widths[1], widths[2], 3, padding=1)
        self.conv4 = tnn.Conv2d(widths[2], widths[3], 3, padding=1, groups=groups)
        self.conv5 = tnn.Conv2d(widths[3], widths[4], 3, padding=1, groups=groups)
        self.norm = tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
        flat = widths[4] * (16 if small_input else 36)
        self.fc1, self.fc2 = tnn.Linear(flat, hidden_size), tnn.Linear(hidden_size, hidden_size)
        self.head = tnn.Linear(hidden_size, num_classes)

    def forward(self, x):
        pool = (lambda y: F.max_pool2d(y, 2)) if self.small_input else (lambda y: F.max_pool2d(y, 3, 2))
        x = F.relu(self.conv1(x))
        x = pool(self.norm(x) if self.lrn else x)
        x = F.relu(self.conv2(x))
        x = pool(self.norm(x) if self.lrn else x)
        x = F.relu(self.conv5(F.relu(self.conv4(F.relu(self.conv3(x))))))
        x = pool(x)
        if not self.small_input:
            x = F.adaptive_avg_pool2d(x, 6)
        x = F.relu(self.fc2(F.relu(self.fc1(_flatten_nhwc(x)))))
        return self.head(x)


@pytest.mark.parametrize("small_input, size", [(True, 32), (False, 99)])
def test_zoo_alexnet_2012_layout_with_lrn_and_groups_matches_torch(small_input, size):
    # Narrow widths keep it fast; the layout (11x11/4 conv, overlapping 3x3/2 pools, LRN, two groups,
    # adaptive pooling from 2x2 up to 6x6 at 99x99) is the paper's.
    widths, hidden = (16, 32, 24, 24, 16), 32
    model = AlexNet(
        num_classes=10, widths=widths, hidden_size=hidden, small_input=small_input, local_response_norm=True, groups=2
    )
    _assert_parity(model, TorchAlexNet(widths, hidden, 10, small_input, lrn=True, groups=2), (size, size, 3))


# --- VGG -----------------------------------------------------------------------------------------

# Configuration A (VGG-11), Table 1 of the paper / torchvision's cfgs["A"].
TORCH_VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class TorchVGG(tnn.Module):
    def __init__(self, cfg, batch_norm, num_classes, hidden_size, small_input):
        super().__init__()
        self.plan, self.small_input = [], small_input
        channels = 3
        for entry in cfg:
            if entry == "M":
                self.plan.append(None)
                continue
            index = len([p for p in self.plan if p is not None]) + 1
            setattr(self, f"conv{index}", tnn.Conv2d(channels, entry, 3, padding=1))
            if batch_norm:
                setattr(self, f"bn{index}", tnn.BatchNorm2d(entry))
            self.plan.append(index)
            channels = entry
        self.batch_norm = batch_norm
        self.fc1 = tnn.Linear(channels * (1 if small_input else 49), hidden_size)
        self.fc2 = tnn.Linear(hidden_size, hidden_size)
        self.head = tnn.Linear(hidden_size, num_classes)

    def forward(self, x):
        for index in self.plan:
            if index is None:
                x = F.max_pool2d(x, 2, 2)
                continue
            x = getattr(self, f"conv{index}")(x)
            if self.batch_norm:
                x = getattr(self, f"bn{index}")(x)
            x = F.relu(x)
        if not self.small_input:
            x = F.adaptive_avg_pool2d(x, 7)
        x = F.relu(self.fc2(F.relu(self.fc1(_flatten_nhwc(x)))))
        return self.head(x)


@pytest.mark.parametrize("name, batch_norm", [("vgg11_cifar", False), ("vgg11_bn_cifar", True)])
def test_zoo_vgg11_small_input_matches_torch(name, batch_norm):
    torch_model = TorchVGG(TORCH_VGG11, batch_norm, num_classes=10, hidden_size=512, small_input=True)
    _assert_parity(get_model(name, num_classes=10), torch_model, (32, 32, 3))


# --- ResNet --------------------------------------------------------------------------------------


class TorchBlock(tnn.Module):
    """He et al.'s basic / bottleneck block, stride on the 3x3 (v1.5, as torchvision)."""

    def __init__(self, in_channels, width, stride, bottleneck, shortcut):
        super().__init__()
        self.bottleneck, self.stride = bottleneck, stride
        out_channels = 4 * width if bottleneck else width
        if bottleneck:
            self.conv1, self.bn1 = tnn.Conv2d(in_channels, width, 1, bias=False), tnn.BatchNorm2d(width)
            self.conv2 = tnn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(width)
            self.conv3, self.bn3 = tnn.Conv2d(width, out_channels, 1, bias=False), tnn.BatchNorm2d(out_channels)
        else:
            self.conv1 = tnn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(width)
            self.conv2, self.bn2 = tnn.Conv2d(width, width, 3, 1, 1, bias=False), tnn.BatchNorm2d(width)
        self.extra = 0
        if stride != 1 or in_channels != out_channels:
            if shortcut == "projection":
                self.downsample_conv = tnn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
                self.downsample_bn = tnn.BatchNorm2d(out_channels)
            else:  # Option A: subsample, then zero channels appended.
                self.extra = out_channels - in_channels

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            y = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(y)))))
        else:
            y = self.bn2(self.conv2(y))
        if hasattr(self, "downsample_conv"):
            x = self.downsample_bn(self.downsample_conv(x))
        elif self.stride != 1 or self.extra:
            x = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))
        return F.relu(y + x)


class TorchResNet(tnn.Module):
    def __init__(self, stage_sizes, widths, bottleneck, small_input, shortcut, num_classes):
        super().__init__()
        self.small_input = small_input
        if small_input:
            self.stem_conv = tnn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        else:
            self.stem_conv = tnn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.stem_bn = tnn.BatchNorm2d(widths[0])
        self.blocks = []
        channels = widths[0]
        for stage, (num_blocks, width) in enumerate(zip(stage_sizes, widths)):
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                block = TorchBlock(channels, width, stride, bottleneck, shortcut)
                setattr(self, f"stage{stage + 1}_block{index + 1}", block)
                self.blocks.append(block)
                channels = 4 * width if bottleneck else width
        self.head = tnn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem_conv(x)))
        if not self.small_input:
            x = F.max_pool2d(x, 3, 2, 1)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


def test_zoo_resnet18_matches_torch():
    # 57x57 is odd at every stride-2 layer (57 -> 29 -> 15 -> 8 -> 4 -> 2): a padding placed on the
    # wrong side, or SAME instead of explicit padding, would show.
    torch_model = TorchResNet((2, 2, 2, 2), (64, 128, 256, 512), False, False, "projection", num_classes=1000)
    _assert_parity(get_model("resnet18", num_classes=1000), torch_model, (57, 57, 3))


def test_zoo_resnet20_cifar_matches_torch():
    torch_model = TorchResNet((3, 3, 3), (16, 32, 64), False, True, "zero_pad", num_classes=10)
    _assert_parity(get_model("resnet20", num_classes=10), torch_model, (32, 32, 3), batch=3)


def test_zoo_resnet_bottleneck_v1_5_matches_torch():
    # ResNet-50's block layout at narrow widths; a stride on the first 1x1 (v1) would not match.
    model = ResNet(num_classes=10, stage_sizes=(1, 2, 1, 1), block="bottleneck", widths=(8, 16, 16, 16))
    torch_model = TorchResNet((1, 2, 1, 1), (8, 16, 16, 16), True, False, "projection", num_classes=10)
    _assert_parity(model, torch_model, (45, 45, 3))
