"""U-Nets for per-pixel classification: the original from scratch, and a decoder on any zoo backbone.

``UNet`` is Ronneberger et al. (2015), "U-Net: Convolutional Networks for Biomedical Image
Segmentation", with "same" padding (so the output is the input's size and no cropping of skips is
needed) and optional batch norm. ``BackboneUNet`` puts a light U-Net-style decoder on the stages of a
classifier (``jaxvision.models.stages``), the layout of feature-pyramid segmentation heads; its
``UNetDecoder`` is also CenterNet's trunk (``jaxvision.models.centernet``).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.layers import ModuleDef, PoolFn
from jaxvision.models.stages import BackboneStages, stage_layers


def _resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of ``[N, h, w, C]`` to ``[N, *size, C]``; any ratio, not only powers of two."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), method="bilinear")


def _checked_stride(what: str, output_stride: int, height: int, width: int) -> None:
    if isinstance(output_stride, bool) or not isinstance(output_stride, int) or output_stride < 1:
        raise ValueError(f"Invalid output_stride={output_stride!r} for {what}: expected a positive integer, e.g. 4.")
    if height % output_stride or width % output_stride:
        raise ValueError(
            f"{what} with output_stride={output_stride} needs height and width divisible by {output_stride}; got "
            f"{height}x{width}. Resize or pad the images, or pick an output_stride that divides both."
        )


class _DoubleConv(nn.Module):
    """Two 3x3 convolutions ("same" padding), each followed by batch norm (optional) and ReLU."""

    features: int
    batch_norm: bool = True
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for index in (1, 2):
            # A bias before batch norm is cancelled by its mean subtraction.
            x = self.conv(self.features, (3, 3), padding=1, use_bias=not self.batch_norm, name=f"conv{index}", **kw)(x)
            if self.batch_norm:
                x = self.norm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{index}", **kw)(x)
            x = nn.relu(x)
        return x


class UNet(nn.Module):
    """Encoder of double 3x3 convs and 2x2 max pools, bottleneck, decoder of 2x2 transposed convs + skips.

    With ``widths=(16, 32, 64, 128)``: three levels at 16, 32, 64 channels, each pooled by 2, a
    128-channel bottleneck at 1/8 resolution, then three up levels (transposed conv 2x2/2 to the
    level's width, concatenate the encoder's map of that level, double conv), and a 1x1 conv to
    the logits. The paper's network is ``widths=(64, 128, 256, 512, 1024)``, ``batch_norm=False``.

    Attributes:
      num_classes: logits per pixel (2 for a foreground/background mask).
      widths: channels per level, the last one the bottleneck's; ``len(widths) - 1`` poolings.
      batch_norm: batch norm after every 3x3 convolution (which then has no bias).
      dtype: compute dtype (e.g. jnp.bfloat16); None follows the inputs and parameters.
      param_dtype: parameter dtype.
      conv, norm, max_pool, conv_transpose: the layers (flax's; ``jaxvision.backends`` may pass its own).
    """

    num_classes: int = 2
    widths: Sequence[int] = (16, 32, 64, 128)
    batch_norm: bool = True
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    max_pool: PoolFn = nn.max_pool
    conv_transpose: ModuleDef = nn.ConvTranspose

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[N, H, W, C]`` to per-pixel logits ``[N, H, W, num_classes]``.

        Raises:
          ValueError: if ``widths`` is empty, or H or W is not divisible by ``2 ** (len(widths) - 1)``.
        """
        if not self.widths:
            raise ValueError("Invalid UNet widths=(): expected at least one width, e.g. widths=(16, 32, 64, 128).")
        factor = 2 ** (len(self.widths) - 1)
        height, width = x.shape[1:3]
        if height % factor or width % factor:
            raise ValueError(
                f"UNet with widths={tuple(self.widths)} pools {len(self.widths) - 1} times, so height and width must "
                f"be divisible by {factor}; got {height}x{width}. Resize or pad the images to a multiple of {factor}."
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        block = dict(batch_norm=self.batch_norm, conv=self.conv, norm=self.norm, **kw)
        skips = []
        for level, features in enumerate(self.widths[:-1], start=1):
            x = _DoubleConv(features, name=f"down{level}", **block)(x, train=train)
            skips.append(x)
            x = self.max_pool(x, (2, 2), strides=(2, 2))
        x = _DoubleConv(self.widths[-1], name="bottleneck", **block)(x, train=train)
        for level in range(len(skips), 0, -1):
            features = self.widths[level - 1]
            x = self.conv_transpose(features, (2, 2), strides=(2, 2), name=f"up{level}_transpose", **kw)(x)
            x = jnp.concatenate([skips[level - 1], x], axis=-1)
            x = _DoubleConv(features, name=f"up{level}", **block)(x, train=train)
        return self.conv(self.num_classes, (1, 1), name="head", **kw)(x)


class UNetDecoder(nn.Module):
    """Merges backbone stages deepest first into one map of ``width`` channels at a given size.

    The deepest stage goes through a 1x1 conv to ``width``; then for each shallower stage the map
    is resized (bilinear) to that stage's size, concatenated with it and passed through a 3x3
    conv + batch norm + ReLU; the result is resized to ``output_size``. Stages finer than ``output_size``
    are left out. Every stage is ReLU'd
    first: a captured norm output (VGG's ``bn``, ResNet's ``stem_bn``) is pre-activation.

    Attributes:
      width: channels of the decoder's maps.
      dtype: compute dtype; None follows the inputs and parameters.
      param_dtype: parameter dtype.
      conv, norm: the layers (flax's; ``jaxvision.backends`` may pass its own).
    """

    width: int = 64
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, stages: Sequence[jax.Array], output_size: tuple[int, int], *, train: bool) -> jax.Array:
        """Maps stages ``[N, h_i, w_i, c_i]`` (highest resolution first) to ``[N, *output_size, width]``."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        # Stages finer than the output would be merged at their resolution only to be resized down: a
        # stride-4 detector's decoder skips the full- and half-resolution stages and their cost.
        *shallower, deepest = stages
        shallower = [skip for skip in shallower if skip.shape[1] <= output_size[0] and skip.shape[2] <= output_size[1]]
        x = self.conv(self.width, (1, 1), name="lateral", **kw)(nn.relu(deepest))
        for index, skip in enumerate(reversed(shallower), start=1):
            x = jnp.concatenate([nn.relu(skip), _resize(x, skip.shape[1:3])], axis=-1)
            x = self.conv(self.width, (3, 3), padding=1, use_bias=False, name=f"merge{index}_conv", **kw)(x)
            x = self.norm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"merge{index}_bn", **kw)(x)
            x = nn.relu(x)
        return _resize(x, output_size)


class BackboneUNet(nn.Module):
    """Per-pixel logits from a zoo backbone's stages, a ``UNetDecoder`` and a 3x3 + 1x1 conv head.

    Variables: ``"backbone"`` (exactly the classifier's, head included, so pretrained weights load
    unchanged), ``"decoder"``, ``"head_conv"`` and ``"head"``.

    Attributes:
      backbone: a zoo model, e.g. ``get_model("resnet20")``.
      layers: its stage outputs, highest resolution first (``stage_layers(backbone, input_shape)``).
      num_classes: logits per pixel.
      decoder_width: channels of the decoder and of the head's 3x3 conv.
      output_stride: the logits are at ``1 / output_stride`` of the input's height and width.
      dtype: compute dtype; None follows the inputs and parameters.
      param_dtype: parameter dtype.
      conv, norm: the decoder's and head's layers (``segmentation_model`` passes the backbone's).
    """

    backbone: nn.Module
    layers: tuple[str, ...]
    num_classes: int
    decoder_width: int = 64
    output_stride: int = 1
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[N, H, W, C]`` to logits ``[N, H / output_stride, W / output_stride, num_classes]``."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = decoded_features(self, x, self.decoder_width, train=train)
        y = nn.relu(self.conv(self.decoder_width, (3, 3), padding=1, name="head_conv", **kw)(y))
        return self.conv(self.num_classes, (1, 1), name="head", **kw)(y)


def decoded_features(module: nn.Module, x: jax.Array, width: int, *, train: bool) -> jax.Array:
    """The trunk ``BackboneUNet`` and ``CenterNet`` share, called inside their ``__call__``: the backbone's stages
    (submodule ``stages``) merged by a ``UNetDecoder`` (``decoder``) into ``[N, H / s, W / s, width]``, s the module's
    ``output_stride``."""
    height, image_width = x.shape[1:3]
    _checked_stride(type(module).__name__, module.output_stride, height, image_width)
    if not module.layers:
        raise ValueError("Invalid layers=(): expected stage names, e.g. from stage_layers(backbone, input_shape).")
    kw = dict(dtype=module.dtype, param_dtype=module.param_dtype)
    stages = BackboneStages(module.backbone, tuple(module.layers), name="stages")(x, train=train)
    size = (height // module.output_stride, image_width // module.output_stride)
    return UNetDecoder(width, conv=module.conv, norm=module.norm, name="decoder", **kw)(stages, size, train=train)


def _backbone_layers(backbone: nn.Module) -> dict[str, ModuleDef]:
    """The backbone's own conv and norm layers (its ``kernels``), for the decoder to match them."""
    return {field: getattr(backbone, field) for field in ("conv", "norm") if hasattr(backbone, field)}


def segmentation_model(
    backbone: nn.Module, num_classes: int, input_shape: Sequence[int], *, output_stride: int = 1, decoder_width: int = 64
) -> BackboneUNet:
    """A ``BackboneUNet`` on ``backbone``'s stages at ``input_shape``, its decoder built with the backbone's layers.

    Example::

      model = segmentation_model(get_model("resnet20"), num_classes=3, input_shape=(64, 64, 3))
      logits = model.apply(variables, images, train=False)  # [N, 64, 64, 3]

    Args:
      backbone: a zoo model.
      num_classes: logits per pixel.
      input_shape: one image's (height, width, channels); the stages are found at this size.
      output_stride: logits at ``1 / output_stride`` of the input's size.
      decoder_width: channels of the decoder.
    """
    return BackboneUNet(
        backbone, stage_layers(backbone, input_shape), num_classes, decoder_width=decoder_width,
        output_stride=output_stride, **_backbone_layers(backbone),
    )
