"""ResNet (He et al., 2016): ImageNet ResNet-18 to 152 (v1.5) and the CIFAR ResNets 20 to 110.

Parameter counts with 1000 classes, as torchvision: ResNet-18 11,689,512; ResNet-34 21,797,672;
ResNet-50 25,557,032; ResNet-101 44,549,160; ResNet-152 60,192,808. CIFAR ResNet-20 with 10 classes
and the paper's zero-padding shortcuts: 269,722 (0.27M in the paper's Table 6).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.layers import ModuleDef, PoolFn

_BLOCKS = ("basic", "bottleneck")
_SHORTCUTS = ("projection", "zero_pad")


class _ResidualBlock(nn.Module):
    """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) residual block.

    In the bottleneck the stride sits on the 3x3 convolution ("ResNet v1.5", as torchvision and the
    Flax/TF official models), not on the first 1x1 as in the paper; v1.5 is ~0.5% more accurate.
    The shortcut is the identity unless the shape changes; then either a 1x1 strided conv + BN
    ("projection", option B in the paper) or subsampling plus zero channels ("zero_pad", option A,
    used on CIFAR; the new channels are appended after the existing ones).
    """

    features: int
    block: str = "basic"
    strides: int = 1
    shortcut: str = "projection"
    zero_init_residual: bool = False
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        norm = functools.partial(
            self.norm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
            dtype=self.dtype, param_dtype=self.param_dtype,
        )
        # Zero scale on the last BN makes each block start as the identity (Goyal et al., 2017).
        last_norm_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        act = self.act
        stride = (self.strides, self.strides)
        if self.block == "basic":
            out_features = self.features
            y = act(norm(name="bn1")(conv(self.features, (3, 3), stride, padding=1, name="conv1")(x)))
            y = norm(name="bn2", scale_init=last_norm_init)(conv(self.features, (3, 3), padding=1, name="conv2")(y))
        else:
            out_features = 4 * self.features
            y = act(norm(name="bn1")(conv(self.features, (1, 1), name="conv1")(x)))
            y = act(norm(name="bn2")(conv(self.features, (3, 3), stride, padding=1, name="conv2")(y)))
            y = norm(name="bn3", scale_init=last_norm_init)(conv(out_features, (1, 1), name="conv3")(y))

        residual = x
        if self.strides != 1 or x.shape[-1] != out_features:
            if self.shortcut == "projection":
                residual = conv(out_features, (1, 1), stride, name="downsample_conv")(x)
                residual = norm(name="downsample_bn")(residual)
            else:
                residual = x[:, :: self.strides, :: self.strides, :]
                extra = out_features - x.shape[-1]
                residual = jnp.pad(residual, ((0, 0), (0, 0), (0, 0), (0, extra))).astype(y.dtype)
        return act(y + residual)


class ResNet(nn.Module):
    """Stem, stages of residual blocks (the first block of every stage but the first strides by 2), head.

    ImageNet stem: conv 7x7/2 pad 3, BN, ReLU, max pool 3x3/2 pad 1 (224 -> 112 -> 56). Small-input
    (CIFAR) stem: conv 3x3/1 pad 1, BN, ReLU, no pooling. Head: global average pool, dense classes.
    On 224x224x3 ResNet-18's stages give 56x56x64, 28x28x128, 14x14x256, 7x7x512.

    Attributes:
      num_classes: logits out.
      stage_sizes: residual blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
      block: "basic" (two 3x3 convs) or "bottleneck" (1x1, 3x3, 1x1; output 4x the stage width).
      widths: channels per stage (the stem has ``widths[0]``); (16, 32, 64) on CIFAR.
      small_input: the CIFAR stem described above.
      shortcut: "projection" (1x1 conv + BN where the shape changes) or "zero_pad" (the paper's
        parameter-free option A, used by the CIFAR variants).
      zero_init_residual: start each block's last BN scale at 0, so blocks start as the identity.
      dtype: compute dtype (e.g. jnp.bfloat16); None follows the inputs and parameters.
      param_dtype: parameter dtype.
      conv, norm, max_pool, act: the layers and activation (flax's ``nn.Conv``, ``nn.BatchNorm``,
        ``nn.max_pool``, ``nn.relu``; ``jaxvision.backends`` may pass its own).
    """

    num_classes: int = 1000
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    widths: Sequence[int] = (64, 128, 256, 512)
    small_input: bool = False
    shortcut: str = "projection"
    zero_init_residual: bool = False
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    max_pool: PoolFn = nn.max_pool
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[batch, 224, 224, 3]`` (or ``[batch, 32, 32, 3]`` with small_input) to ``[batch, num_classes]``."""
        if self.block not in _BLOCKS:
            raise ValueError(f"Unknown ResNet block {self.block!r}: expected one of {', '.join(_BLOCKS)}.")
        if self.shortcut not in _SHORTCUTS:
            raise ValueError(f"Unknown ResNet shortcut {self.shortcut!r}: expected one of {', '.join(_SHORTCUTS)}.")
        if len(self.stage_sizes) != len(self.widths):
            raise ValueError(
                f"ResNet got {len(self.stage_sizes)} stage_sizes {tuple(self.stage_sizes)} but {len(self.widths)} "
                f"widths {tuple(self.widths)}: pass one width per stage."
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.small_input:
            x = self.conv(self.widths[0], (3, 3), padding=1, use_bias=False, name="stem_conv", **kw)(x)
        else:
            x = self.conv(self.widths[0], (7, 7), strides=(2, 2), padding=3, use_bias=False, name="stem_conv", **kw)(x)
        x = self.norm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="stem_bn", **kw)(x)
        x = self.act(x)
        if not self.small_input:
            # Flax pads max pooling with -inf, as PyTorch does, so the padding never wins the max.
            x = self.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, (num_blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
            for index in range(num_blocks):
                x = _ResidualBlock(
                    width,
                    block=self.block,
                    strides=2 if stage > 0 and index == 0 else 1,
                    shortcut=self.shortcut,
                    zero_init_residual=self.zero_init_residual,
                    conv=self.conv,
                    norm=self.norm,
                    act=self.act,
                    name=f"stage{stage + 1}_block{index + 1}",
                    **kw,
                )(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head", **kw)(x)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block="bottleneck")
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block="bottleneck")


def cifar_resnet(depth: int) -> functools.partial:
    """The CIFAR ResNet of ``depth = 6n + 2`` layers: n basic blocks in each of 3 stages (16, 32, 64).

    Raises:
      ValueError: if ``depth`` is not 6n + 2 for some n >= 1 (20, 32, 44, 56, 110, ...).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"Invalid CIFAR ResNet depth={depth}: expected 6n + 2, e.g. 20, 32, 44, 56 or 110.")
    n = (depth - 2) // 6
    return functools.partial(
        ResNet, num_classes=10, stage_sizes=(n, n, n), block="basic", widths=(16, 32, 64),
        small_input=True, shortcut="zero_pad",
    )


ResNet20 = cifar_resnet(20)
ResNet32 = cifar_resnet(32)
ResNet44 = cifar_resnet(44)
ResNet56 = cifar_resnet(56)
ResNet110 = cifar_resnet(110)
