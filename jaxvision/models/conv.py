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
NHWC_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def is_plain_nhwc_conv(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any, *, lhs_dilation: Sequence[int] | None,
                       feature_group_count: int, batch_group_count: int, preferred_element_type: Any) -> bool:
    """Whether a ``conv_general_dilated`` call is one the CPU rewrites here (and in benchmarks/fast_conv.py)
    handle: on the CPU backend, 2-D, NHWC/HWIO/NHWC, no input dilation, no groups, no output dtype."""
    if jax.default_backend() != "cpu" or lhs.ndim != 4 or feature_group_count != 1 or batch_group_count != 1:
        return False
    if preferred_element_type is not None or any(d != 1 for d in (lhs_dilation or (1, 1))):
        return False
    return (lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
            == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC_DIMENSIONS))


def explicit_padding(padding: str | Sequence[tuple[int, int]], in_size: Sequence[int], kernel_size: Sequence[int],
                     strides: Sequence[int], dilation: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """``((top, bottom), (left, right))`` for "SAME"/"VALID" or explicit pairs; hashable, for custom_vjp."""
    if isinstance(padding, str):
        window = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation)]
        padding = lax.padtype_to_pads(in_size, window, strides, padding)
    return tuple((int(low), int(high)) for low, high in padding)


def kernel_taps(images: jax.Array, kernel_size: Sequence[int], strides: Sequence[int],
                padding: Sequence[tuple[int, int]], dilation: Sequence[int]) -> list[jax.Array]:
    """For every kernel tap (i, j), row-major, the input pixels it multiplies: [batch, out_h, out_w, channels].

    Args:
      images: [batch, height, width, channels].
      kernel_size: (kh, kw).
      strides, dilation: (sh, sw) and kernel dilation (dh, dw).
      padding: explicit ((top, bottom), (left, right)), e.g. from ``explicit_padding``.
    """
    (top, bottom), (left, right) = padding
    padded = jnp.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)))
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    out_h = (padded.shape[1] - (kh - 1) * dh - 1) // sh + 1
    out_w = (padded.shape[2] - (kw - 1) * dw - 1) // sw + 1
    return [
        padded[:, i * dh : i * dh + (out_h - 1) * sh + 1 : sh, j * dw : j * dw + (out_w - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]


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
    padding = explicit_padding(padding, images.shape[1:3], (kh, kw), strides, dilation)
    # Column order (i, j, channel) matches the row-major reshape of the HWIO kernel.
    patches = jnp.concatenate(kernel_taps(images, (kh, kw), strides, padding, dilation), axis=-1)
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
                                                           dimension_numbers=NHWC_DIMENSIONS), images, kernel)
    return vjp(output_cotangent)


_patch_forward_xla_backward.defvjp(_forward, _backward)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
                         lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """``lax.conv_general_dilated``; for few-channel 2-D NHWC inputs on CPU, the forward pass is
    ``patch_conv_2d`` and the backward pass XLA's convolution gradients."""
    if (lhs.shape[-1] <= MAX_PATCH_CHANNELS and precision is None
            and is_plain_nhwc_conv(lhs, rhs, dimension_numbers, lhs_dilation=lhs_dilation,
                                   feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                                   preferred_element_type=preferred_element_type)):
        dilation = tuple(rhs_dilation or (1, 1))
        padding = explicit_padding(padding, lhs.shape[1:3], rhs.shape[:2], window_strides, dilation)
        return _patch_forward_xla_backward(lhs, rhs, tuple(window_strides), padding, dilation)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                    feature_group_count, batch_group_count, precision, preferred_element_type)


# nn.Conv (same parameters, same names) with the CPU few-channel path.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
