"""``nn.Conv`` with a faster path for a network's few-channel first layer on CPU.

XLA:CPU runs a forward convolution whose input has 1 or 3 channels (an MNIST or RGB stem) far below
its GEMM speed: at batch 128 the 5x5 1->24 convolution over 28x28 takes 6.5-10.6 ms, PyTorch (oneDNN)
1.4 ms, and the same product written as shifted-slice patches @ the ``[kh * kw * in, out]`` kernel
4.2 ms. With few input channels the patches are small (kh * kw * channels columns), so gathering them
and multiplying once is cheap. The backward pass is another matter: the patch product's kernel
gradient is a GEMM contracting batch x height x width into a tiny result, which Eigen does badly,
while XLA's own convolution gradients are fast here. So the forward pass is the patch product and the
backward pass XLA's (a ``custom_vjp``); forward + kernel gradient of that 1->24 layer: 9.6 ms with
XLA alone, 7.3 ms with the patch product differentiated, 4.1 ms this way. With more input channels
the patches grow with them and XLA's convolution wins (16->16 at 32x32: 6.9 ms against 87 ms), so
only inputs of up to ``MAX_PATCH_CHANNELS`` channels take this path, and only on CPU: GPUs' and TPUs'
convolution libraries handle such stems well.

Whole train steps at batch 128 (SGD momentum, XLA's convolution vs this one, alternating A/B runs,
medians of 10): LeNet-5 14.1 -> 11.1 ms, SimpleCNN 127 -> 121 ms, ResNet-20 637 -> 627 ms; MnistCNN
with Adam 26.4 -> 22.5 ms (batch 64: 14.8 -> 12.5 ms). Those four models use it for their first layer.

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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _patch_forward_xla_backward(images: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                                padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...]) -> jax.Array:
    return patch_conv_2d(images, kernel, strides, padding, dilation)


def _forward(images, kernel, strides, padding, dilation):
    return patch_conv_2d(images, kernel, strides, padding, dilation), (images, kernel)


def _backward(strides, padding, dilation, residuals, output_cotangent):
    # The patch product's own kernel gradient is a GEMM contracting batch x height x width (100,352
    # rows for MNIST at batch 128) into a tiny [kh * kw * in, out] result, a shape Eigen's GEMM handles
    # badly; XLA's convolution gradients are fast here, so the backward pass is theirs.
    images, kernel = residuals
    _, vjp = jax.vjp(lambda x, w: lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                                           dimension_numbers=("NHWC", "HWIO", "NHWC")), images, kernel)
    return vjp(output_cotangent)


_patch_forward_xla_backward.defvjp(_forward, _backward)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
                         lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """``lax.conv_general_dilated``; for few-channel 2-D NHWC inputs on CPU, the forward pass is
    ``patch_conv_2d`` and the backward pass XLA's convolution gradients."""
    if (jax.default_backend() == "cpu" and lhs.ndim == 4 and lhs.shape[-1] <= MAX_PATCH_CHANNELS
            and feature_group_count == 1 and batch_group_count == 1 and precision is None
            and preferred_element_type is None and all(d == 1 for d in (lhs_dilation or (1, 1)))
            and _is_nhwc_hwio(lhs, rhs, dimension_numbers)):
        dilation = tuple(rhs_dilation or (1, 1))
        window = tuple((k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation))
        pads = tuple(_explicit_padding(padding, lhs.shape[1:3], window, tuple(window_strides)))
        return _patch_forward_xla_backward(lhs, rhs, tuple(window_strides), pads, dilation)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                    feature_group_count, batch_group_count, precision, preferred_element_type)


# nn.Conv (same parameters, same names) with the CPU few-channel path.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
