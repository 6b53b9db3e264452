"""``nn.Conv`` with a faster path for a network's few-channel first layer on CPU.

XLA:CPU runs some convolutions whose input has 1 or 3 channels (an MNIST or RGB stem) far below its
GEMM speed: at batch 128, LeNet-5's 5x5 1->6 convolution over 28x28 takes 9.8 ms forward against
4.5 ms for the same product written as patches @ kernel. With so few input channels the patches are
small (kh * kw * channels columns), so gathering them by shifted slices and multiplying once by the
``[kh * kw * in, out]`` kernel is cheap, and its gradient (a GEMM for the kernel; the slices'
transposes for the input) is what XLA does well. With more input channels the patches grow with them
and XLA's own convolution wins (16->16 at 32x32: 6.9 ms against 87 ms), so only inputs of up to
``MAX_PATCH_CHANNELS`` channels take this path, and only on CPU: GPUs' and TPUs' convolution
libraries handle such stems well.

Whether it pays inside a whole train step depends on what XLA fuses around it, so models opt in where
it was measured to (benchmarks/README.md): LeNet-5's train step 14-20 -> 12.5 ms and its inference
8-10 -> 5 ms at batch 128; SimpleCNN's 1->32 and ResNet-20's 3->16 stems were level within noise, and
MnistCNN's 5x5 1->24 one was ~15% slower, so those keep ``nn.Conv``.

The parameters are ``nn.Conv``'s own (``kernel [kh, kw, in, out]``, ``bias``), so checkpoints and
weights copied from PyTorch are unchanged; only the arithmetic's order differs (float32 rounding).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

MAX_PATCH_CHANNELS = 4
_NHWC_SPEC = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))  # lhs NHWC, rhs HWIO, out NHWC as (batch/out, feature/in, spatial...)


def _is_nhwc_hwio(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any) -> bool:
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    return (tuple(numbers.lhs_spec), tuple(numbers.rhs_spec), tuple(numbers.out_spec)) == _NHWC_SPEC


def _explicit_padding(padding: str | Sequence[tuple[int, int]], in_size: Sequence[int], window: Sequence[int],
                      strides: Sequence[int]) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        return list(lax.padtype_to_pads(in_size, window, strides, padding))
    return [tuple(p) for p in padding]


def patch_conv_2d(images: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
                  padding: str | Sequence[tuple[int, int]] = "VALID", dilation: Sequence[int] = (1, 1),
                  precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """A 2-D convolution as one matrix product of shifted-slice patches with the flattened kernel.

    Args:
      images: [batch, height, width, in_channels].
      kernel: [kh, kw, in_channels, out_channels].
      strides: (sh, sw).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      dilation: kernel dilation (dh, dw).
      precision, preferred_element_type: as for ``lax.dot_general``.

    Returns:
      [batch, out_height, out_width, out_channels], what ``lax.conv_general_dilated`` returns for
      NHWC/HWIO/NHWC.
    """
    kh, kw, in_channels, out_channels = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    window = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    (top, bottom), (left, right) = _explicit_padding(padding, images.shape[1:3], window, strides)
    padded = jnp.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h = (padded.shape[1] - window[0]) // sh + 1
    out_w = (padded.shape[2] - window[1]) // sw + 1
    # Column order (i, j, channel) matches the row-major reshape of the HWIO kernel.
    patches = jnp.concatenate([
        padded[:, i * dh : i * dh + (out_h - 1) * sh + 1 : sh, j * dw : j * dw + (out_w - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ], axis=-1)
    return lax.dot_general(patches, kernel.reshape(kh * kw * in_channels, out_channels), (((3,), (0,)), ((), ())),
                           precision=precision, preferred_element_type=preferred_element_type)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
                         lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """``lax.conv_general_dilated``, through ``patch_conv_2d`` for few-channel 2-D NHWC inputs on CPU."""
    if (jax.default_backend() == "cpu" and lhs.ndim == 4 and lhs.shape[-1] <= MAX_PATCH_CHANNELS
            and feature_group_count == 1 and batch_group_count == 1
            and all(d == 1 for d in (lhs_dilation or (1, 1)))
            and _is_nhwc_hwio(lhs, rhs, dimension_numbers)):
        return patch_conv_2d(lhs, rhs, window_strides, padding, rhs_dilation or (1, 1), precision, preferred_element_type)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                    feature_group_count, batch_group_count, precision, preferred_element_type)


# nn.Conv (same parameters, same names) with the CPU few-channel path.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
