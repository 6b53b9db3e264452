"""``nn.Conv`` with a faster CPU path for convolutions with few input channels.

XLA:CPU runs convolutions far below its GEMM speed when their input has few channels: a network's
MNIST or RGB stem (1 or 3 channels) and LeNet-5's 6->16 layer. At batch 128 (fastest of 30 calls,
2-core AVX2, float32):

| layer | XLA | patches @ kernel | here | PyTorch (oneDNN) |
|---|---|---|---|---|
| 5x5 1->6 on 28x28 (VALID), forward | 3.2-6.0 ms | 3.1-3.4 ms | 0.9-1.5 ms (stencil 0.3-0.4 + NHWC GEMM) | 0.7 ms |
| 5x5 1->24 on 28x28 (VALID), forward | 3.3-6.2 ms | 3.4 ms | 1.7-3.0 ms (stencil 1.1-2.1 + NHWC GEMM) | 1.1 ms |
| 5x5 1->24 on 28x28 (SAME), forward | 6.3-6.4 ms | | 2.3-2.4 ms | |
| 3x3 3->16 on 32x32, forward | 5.2-5.4 ms | 2.9 ms | 1.9 ms | |
| 5x5 6->16 on 14x14, input gradient | 2.5-5.0 ms | | 1.5 ms (col2im) | |

The "here" forward figures include the GEMM that stores the result in NHWC (see ``stencil_conv_2d``);
ranges are two runs on different days (benchmarks/README.md, "Where the time goes", item 8).

So for 2-D NHWC inputs of up to ``MAX_FEW_CHANNELS`` channels on CPU, ``Conv`` (an ``nn.Conv`` with
the same parameters) takes:

- forward: ``stencil_conv_2d`` for up to ``MAX_STENCIL_CHANNELS`` input channels (one fused loop of
  broadcast multiply-adds), else XLA's convolution;
- kernel gradient: XLA's, which is fast at every channel count here;
- input gradient: ``col2im_input_gradient`` (one GEMM, then shifted slices summed), dropped by XLA
  when the images are not differentiated, as in a first layer.

Whole LeNet-5 train steps at batch 128 (SGD momentum, real MNIST, medians of 60, two alternating
runs): 14.5 and 11.6 ms with the previous path (patches @ kernel stem, XLA's 6->16 layer) -> 11.9 and
9.7 ms. MnistCNN (batch 48 to 128) and ResNet-20 are unchanged within the noise. GPUs'
and TPUs' convolution libraries handle such layers well, so elsewhere this is ``lax.conv_general_dilated``.

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

MAX_STENCIL_CHANNELS = 4
MAX_FEW_CHANNELS = 8
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


def stencil_conv_2d(images: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
                    padding: str | Sequence[tuple[int, int]] = "VALID", dilation: Sequence[int] = (1, 1)) -> jax.Array:
    """A 2-D convolution as a sum of ``kh * kw * in_channels`` broadcast multiply-adds of shifted input planes.

    Every term is one input channel's shifted plane ``[batch, out_h, out_w]`` times that tap's weights
    for all output channels, accumulated in ``[out_channels, batch, out_h, out_w]`` order (the image
    width innermost), which XLA fuses into one vectorised loop. The result goes to NHWC through a GEMM
    with the identity: XLA:CPU never fuses a GEMM's operand into its consumers, so the sum is computed
    once. Left as a transpose, it is fused into, and recomputed by, every consumer of the output (the
    activation, the pooling and their gradients): LeNet-5's train step took 17 ms that way. This is
    ``layers.materialize``'s mechanism with the transpose folded into the GEMM; a transpose followed by
    ``materialize`` (one more pass over the output) measured slower (LeNet-5 12.2-14.2 against
    11.6-11.9 ms, MnistCNN at batch 64 15.7-18.8 against 13.3-14.2 ms, alternating runs).

    Args:
      images: [batch, height, width, in_channels].
      kernel: [kh, kw, in_channels, out_channels].
      strides: (sh, sw).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      dilation: kernel dilation (dh, dw).

    Returns:
      [batch, out_height, out_width, out_channels], what ``lax.conv_general_dilated`` returns for
      NHWC/HWIO/NHWC.
    """
    kh, kw, in_channels, out_channels = kernel.shape
    padding = explicit_padding(padding, images.shape[1:3], (kh, kw), strides, dilation)
    taps = kernel_taps(images, (kh, kw), strides, padding, dilation)
    planes = [tap[..., channel] for tap in taps for channel in range(in_channels)]
    weights = kernel.reshape(kh * kw * in_channels, out_channels)[:, :, None, None, None]
    total = sum(plane[None] * weight for plane, weight in zip(planes, weights))
    return jnp.einsum("onhw,op->nhwp", total, jnp.eye(out_channels, dtype=total.dtype))


def col2im_input_gradient(output_cotangent: jax.Array, kernel: jax.Array, input_size: Sequence[int],
                          strides: Sequence[int], padding: Sequence[tuple[int, int]],
                          dilation: Sequence[int]) -> jax.Array:
    """The input gradient of a 2-D NHWC convolution as one GEMM and a sum of shifted, padded slices.

    ``columns = dy @ kernel^T`` gives every tap's contribution ``[batch, out_h, out_w, taps, in]``;
    each tap's slice is then padded back to where it came from (strides as interior padding) and the
    slices summed, which XLA fuses into one loop. XLA:CPU's own input-gradient convolution is slow when
    it has few output (= the layer's input) channels: LeNet-5's 6->16 layer at batch 128, 2.5-5 ms
    against 1.5 ms this way; with 24 channels XLA's (2.6 ms) beats this (3.9 ms).

    Args:
      output_cotangent: dy, [batch, out_h, out_w, out_channels].
      kernel: [kh, kw, in_channels, out_channels].
      input_size: (height, width) of the convolution's input.
      strides, dilation: (sh, sw) and kernel dilation (dh, dw).
      padding: explicit ((top, bottom), (left, right)).

    Returns:
      dx, [batch, height, width, in_channels].
    """
    kh, kw, in_channels, out_channels = kernel.shape
    columns = jnp.einsum("nhwo,tco->nhwtc", output_cotangent, kernel.reshape(kh * kw, in_channels, out_channels))
    (top, bottom), (left, right) = padding
    height, width = input_size
    out_h, out_w = output_cotangent.shape[1:3]
    (sh, sw), (dh, dw) = strides, dilation
    zero = jnp.zeros((), output_cotangent.dtype)
    total = 0
    for i in range(kh):
        for j in range(kw):
            below = height + top + bottom - i * dh - (out_h - 1) * sh - 1
            after = width + left + right - j * dw - (out_w - 1) * sw - 1
            total = total + lax.pad(columns[:, :, :, i * kw + j, :], zero,
                                    ((0, 0, 0), (i * dh, below, sh - 1), (j * dw, after, sw - 1), (0, 0, 0)))
    return total[:, top : top + height, left : left + width, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _few_channel_conv(images: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                      padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...]) -> jax.Array:
    return _few_channel_forward(images, kernel, strides, padding, dilation)[0]


def _xla_conv(images, kernel, strides, padding, dilation):
    return lax.conv_general_dilated(images, kernel, strides, padding, rhs_dilation=dilation,
                                    dimension_numbers=NHWC_DIMENSIONS)


def _few_channel_forward(images, kernel, strides, padding, dilation):
    if images.shape[-1] <= MAX_STENCIL_CHANNELS:
        output = stencil_conv_2d(images, kernel, strides, padding, dilation)
    else:
        output = _xla_conv(images, kernel, strides, padding, dilation)
    return output, (images, kernel)


def _few_channel_backward(strides, padding, dilation, residuals, output_cotangent):
    # XLA's kernel gradient is fast at every channel count here (a stencil's or GEMM's would contract
    # batch x height x width into a tiny result, which Eigen does badly); its input gradient is not.
    # When the images are not differentiated (a network's first layer), XLA drops the unused dx.
    images, kernel = residuals
    _, kernel_vjp = jax.vjp(lambda w: _xla_conv(images, w, strides, padding, dilation), kernel)
    images_cotangent = col2im_input_gradient(output_cotangent, kernel, images.shape[1:3], strides, padding, dilation)
    return images_cotangent, kernel_vjp(output_cotangent)[0]


_few_channel_conv.defvjp(_few_channel_forward, _few_channel_backward)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
                         lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """``lax.conv_general_dilated``; on CPU, 2-D NHWC inputs of up to ``MAX_FEW_CHANNELS`` channels take
    the few-channel path: forward ``stencil_conv_2d`` (up to ``MAX_STENCIL_CHANNELS``, else XLA's),
    kernel gradient XLA's, input gradient ``col2im_input_gradient``."""
    if (lhs.shape[-1] <= MAX_FEW_CHANNELS and precision is None
            and is_plain_nhwc_conv(lhs, rhs, dimension_numbers, lhs_dilation=lhs_dilation,
                                   feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                                   preferred_element_type=preferred_element_type)):
        dilation = tuple(rhs_dilation or (1, 1))
        padding = explicit_padding(padding, lhs.shape[1:3], rhs.shape[:2], window_strides, dilation)
        return _few_channel_conv(lhs, rhs, tuple(window_strides), padding, dilation)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                    feature_group_count, batch_group_count, precision, preferred_element_type)


# nn.Conv (same parameters, same names) with the CPU few-channel path.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
