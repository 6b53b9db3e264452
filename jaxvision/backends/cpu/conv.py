"""``nn.Conv`` with faster XLA:CPU paths for convolutions with few input channels and for tiny maps.

XLA:CPU runs convolutions far below its GEMM speed when their input has few channels (a network's
MNIST or RGB stem, LeNet-5's 6->16 layer) and when their output map is 2x2 or smaller (VGG's last
stage on 32x32 inputs). ``Conv`` is ``nn.Conv`` (same parameters, names and initialisers) whose
convolution is ``conv_general_dilated`` below:

- stride 1, up to ``MAX_FEW_CHANNELS`` input channels: forward ``stencil_conv_2d`` (up to
  ``MAX_STENCIL_CHANNELS``: one fused loop of broadcast multiply-adds), else XLA's convolution;
  kernel gradient XLA's; input gradient col2im (one GEMM, then shifted slices summed);
- stride 1 with at most ``MAX_SMALL_MAP`` output positions: one im2col matmul.

The gradients come from a forward-mode rule whose tangent is written with operations whose
transposes are those backward passes, so ``jax.grad``, ``jax.jvp`` and ``jax.vmap`` all work.
Only the order of the arithmetic differs from ``lax.conv_general_dilated`` (float32 rounding).
Measurements and limits: README.md beside this file.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

MAX_STENCIL_CHANNELS = 4
MAX_FEW_CHANNELS = 8
# Output positions up to which a stride-1 convolution is one im2col matmul (VGG's 2x2 maps on 32x32 inputs).
MAX_SMALL_MAP = 4
NHWC_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def is_plain_nhwc_conv(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any, *, lhs_dilation: Sequence[int] | None,
                       feature_group_count: int, batch_group_count: int, preferred_element_type: Any) -> bool:
    """Whether a ``conv_general_dilated`` call is one the rewrites here handle: 2-D, NHWC/HWIO/NHWC, no
    input dilation, no groups, no output dtype."""
    if lhs.ndim != 4 or feature_group_count != 1 or batch_group_count != 1:
        return False
    if preferred_element_type is not None or any(d != 1 for d in (lhs_dilation or (1, 1))):
        return False
    return (lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
            == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC_DIMENSIONS))


def explicit_padding(padding: str | Sequence[tuple[int, int]], in_size: Sequence[int], kernel_size: Sequence[int],
                     strides: Sequence[int], dilation: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """``((top, bottom), (left, right))`` for "SAME"/"VALID" or explicit pairs; hashable, for the custom_jvp's static arguments."""
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


def im2col_conv_2d(images: jax.Array, kernel: jax.Array, strides: Sequence[int],
                   padding: Sequence[tuple[int, int]], dilation: Sequence[int]) -> jax.Array:
    """A 2-D NHWC convolution as every tap's shifted input, stacked, times the kernel (one GEMM).

    Used as the few-channel convolution's tangent in its forward-mode rule: it is linear in
    ``images``, and JAX's transpose of it (the GEMM transposed, each tap's slice turned back into a
    padded plane, the planes summed) is ``col2im_input_gradient``, so reverse mode gets the fast
    input gradient without a custom VJP, and ``jax.jvp`` works too.
    """
    kh, kw, in_channels, out_channels = kernel.shape
    columns = jnp.stack(kernel_taps(images, (kh, kw), strides, padding, dilation), axis=-2)
    return jnp.einsum("nhwtc,tco->nhwo", columns, kernel.reshape(kh * kw, in_channels, out_channels))


def _xla_conv(images, kernel, strides, padding, dilation):
    return lax.conv_general_dilated(images, kernel, strides, padding, rhs_dilation=dilation,
                                    dimension_numbers=NHWC_DIMENSIONS)


def _few_channel_primal(images, kernel, strides, padding, dilation):
    if images.shape[-1] <= MAX_STENCIL_CHANNELS:
        return stencil_conv_2d(images, kernel, strides, padding, dilation)
    return _xla_conv(images, kernel, strides, padding, dilation)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _few_channel_conv(images: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                      padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...]) -> jax.Array:
    return _few_channel_primal(images, kernel, strides, padding, dilation)


def _few_channel_jvp(strides, padding, dilation, primals, tangents):
    # A forward-mode rule rather than a custom VJP, so that jax.jvp (Hessian-vector products) works.
    # The tangent is written with operations whose transposes are the fast backward passes: XLA's
    # kernel gradient for the kernel's term (fast at every channel count here), col2im for the
    # images' term (XLA:CPU's input-gradient convolution is slow with few channels). Symbolic zeros
    # drop a term: a network's first layer never computes the images' gradient.
    images, kernel = primals
    images_dot, kernel_dot = tangents
    output = _few_channel_primal(images, kernel, strides, padding, dilation)
    tangent = None
    if not isinstance(images_dot, SymbolicZero):
        tangent = im2col_conv_2d(images_dot, kernel, strides, padding, dilation)
    if not isinstance(kernel_dot, SymbolicZero):
        kernel_term = _xla_conv(images, kernel_dot, strides, padding, dilation)
        tangent = kernel_term if tangent is None else tangent + kernel_term
    return output, jnp.zeros_like(output) if tangent is None else tangent


_few_channel_conv.defjvp(_few_channel_jvp, symbolic_zeros=True)


def small_map_conv(lhs: jax.Array, rhs: jax.Array, padding: Sequence[tuple[int, int]],
                   precision: Any = None) -> jax.Array | None:
    """A stride-1 NHWC convolution whose output has at most ``MAX_SMALL_MAP`` positions, as one matmul
    over the shifted copies of the input (im2col); None for any other convolution.

    XLA:CPU (jax 0.10) is pathologically slow on 2x2 maps: a 3x3 conv of [32, 2, 2, 512] took 1.5 s
    forward, 80x the 19 ms of the same conv as a matmul, which made VGG's last stage on 32x32 inputs
    most of a training step (README.md beside this file). Plain autodiff differentiates it.
    """
    kernel_h, kernel_w, in_features, out_features = rhs.shape
    x = jnp.pad(lhs, ((0, 0), *map(tuple, padding), (0, 0)))
    out_h, out_w = x.shape[1] - kernel_h + 1, x.shape[2] - kernel_w + 1
    if out_h * out_w > MAX_SMALL_MAP:
        return None
    columns = jnp.concatenate(
        [x[:, i : i + out_h, j : j + out_w, :] for i in range(kernel_h) for j in range(kernel_w)], axis=-1
    )
    return jnp.matmul(columns, rhs.reshape(kernel_h * kernel_w * in_features, out_features), precision=precision)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
                         lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
    """``lax.conv_general_dilated`` with two XLA:CPU paths for plain 2-D NHWC convolutions:

    - stride 1 and up to ``MAX_FEW_CHANNELS`` input channels: forward ``stencil_conv_2d`` (up to
      ``MAX_STENCIL_CHANNELS``, else XLA's), kernel gradient XLA's, input gradient col2im;
    - stride 1 with at most ``MAX_SMALL_MAP`` output positions: ``small_map_conv``.

    Anything else is ``lax.conv_general_dilated`` itself.
    """
    plain = precision is None and is_plain_nhwc_conv(
        lhs, rhs, dimension_numbers, lhs_dilation=lhs_dilation, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, preferred_element_type=preferred_element_type)
    dilation = tuple(rhs_dilation or (1, 1))
    if plain and lhs.shape[-1] <= MAX_FEW_CHANNELS and tuple(window_strides) == (1, 1):
        padding = explicit_padding(padding, lhs.shape[1:3], rhs.shape[:2], window_strides, dilation)
        return _few_channel_conv(lhs, rhs, tuple(window_strides), padding, dilation)
    if plain and tuple(window_strides) == (1, 1) and dilation == (1, 1):
        pads = explicit_padding(padding, lhs.shape[1:3], rhs.shape[:2], window_strides, dilation)
        output = small_map_conv(lhs, rhs, pads)
        if output is not None:
            return output
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                    feature_group_count, batch_group_count, precision, preferred_element_type)


# nn.Conv (same parameters, same names) with the CPU paths above.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
