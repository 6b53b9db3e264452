"""CenterNet (Zhou et al., 2019, "Objects as Points"): objects as heatmap peaks, with size and offset.

A zoo backbone's stages, merged by ``UNetDecoder`` into one map at ``1 / output_stride`` of the
input, feed three heads of one 3x3 conv + ReLU + 1x1 conv each: a per-class center heatmap (logits,
the focal loss's input), the box size and the sub-cell offset of the center.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models.layers import ModuleDef
from jaxvision.models.stages import stage_layers
from jaxvision.models.unet import _backbone_layers, decoded_features

# The heatmap starts at sigmoid(bias) = 0.1 everywhere, so the focal loss of the many background
# cells does not swamp the first steps (RetinaNet's prior; CenterNet's code rounds it to -2.19).
HEATMAP_PRIOR = 0.1
HEATMAP_BIAS = -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR)  # -2.197

SIZE_CHANNELS = 2  # box width, height in output-grid cells
OFFSET_CHANNELS = 2  # center's x, y offset within its cell


class CenterNet(nn.Module):
    """Center heatmap, size and offset maps from a zoo backbone, in one array.

    The output's channels are ``[heatmap logits (num_classes), width, height, offset x, offset y]``:
    ``out[..., :num_classes]`` are logits (apply a sigmoid for the heatmap), ``out[..., -4:-2]`` the
    box size in output-grid cells and ``out[..., -2:]`` the center's offset within its cell, both
    raw values whose parametrisation (linear, log, ...) the loss decides.

    Variables: ``"backbone"`` (exactly the classifier's), ``"decoder"``, and ``"heatmap_conv"``,
    ``"heatmap"``, ``"size_conv"``, ``"size"``, ``"offset_conv"``, ``"offset"``.

    Attributes:
      backbone: a zoo model, e.g. ``get_model("resnet18")``.
      layers: its stage outputs, highest resolution first (``stage_layers(backbone, input_shape)``).
      num_classes: object classes (heatmap channels).
      decoder_width: channels of the decoder.
      head_width: channels of each head's 3x3 conv.
      output_stride: the maps are at ``1 / output_stride`` of the input's height and width (4 in the paper).
      dtype: compute dtype; None follows the inputs and parameters.
      param_dtype: parameter dtype.
      conv, norm: the decoder's and heads' layers (``detection_model`` passes the backbone's).
    """

    backbone: nn.Module
    layers: tuple[str, ...]
    num_classes: int
    decoder_width: int = 64
    head_width: int = 64
    output_stride: int = 4
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps ``[N, H, W, C]`` to ``[N, H / output_stride, W / output_stride, num_classes + 4]``."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        features = decoded_features(self, x, self.decoder_width, train=train)

        def head(name: str, channels: int, **bias) -> jax.Array:
            y = nn.relu(self.conv(self.head_width, (3, 3), padding=1, name=f"{name}_conv", **kw)(features))
            return self.conv(channels, (1, 1), name=name, **bias, **kw)(y)

        heatmap = head("heatmap", self.num_classes, bias_init=nn.initializers.constant(HEATMAP_BIAS))
        return jnp.concatenate([heatmap, head("size", SIZE_CHANNELS), head("offset", OFFSET_CHANNELS)], axis=-1)


def detection_model(
    backbone: nn.Module, num_classes: int, input_shape: Sequence[int], output_stride: int = 4, *,
    decoder_width: int = 64, head_width: int = 64,
) -> CenterNet:
    """A ``CenterNet`` on ``backbone``'s stages at ``input_shape``, its decoder built with the backbone's layers.

    Example::

      model = detection_model(get_model("resnet18"), num_classes=20, input_shape=(128, 128, 3))
      out = model.apply(variables, images, train=False)  # [N, 32, 32, 24]

    Args:
      backbone: a zoo model.
      num_classes: object classes.
      input_shape: one image's (height, width, channels); the stages are found at this size.
      output_stride: maps at ``1 / output_stride`` of the input's size.
      decoder_width: channels of the decoder.
      head_width: channels of each head's 3x3 conv.
    """
    return CenterNet(
        backbone, stage_layers(backbone, input_shape), num_classes, decoder_width=decoder_width,
        head_width=head_width, output_stride=output_stride, **_backbone_layers(backbone),
    )
