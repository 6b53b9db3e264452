"""Experiment: a convolution whose kernel gradient is one GEMM per kernel tap (``--conv fast``).

XLA:CPU computes the gradient of a convolution with respect to its kernel as one more convolution in
which the batch is the contracted "feature" axis and the output map is the "kernel" (e.g. a 24x24
window sliding over 26x26 to give 3x3). With XLA's default YNN fusions that convolution runs on one
thread at ~4 GFLOP/s: on SimpleCNN's conv 32->64 at batch 128, 364 ms of CPU time, 3.7x its forward. The same gradient is a sum over the kernel taps of one matrix product each,
``dW[i, j] = x_shifted(i, j)^T @ dy`` with the batch and spatial axes contracted, and XLA runs
those products through its GEMM at full speed (benchmarks/README.md has the measurements).
The forward convolution and the input gradient stay XLA's own, which are fast. With few input
channels (LeNet-5's 1->6 and 6->16) XLA's kernel gradient is already fast and the per-tap products
are too thin to pay for their slices, so those keep XLA's gradient too.

Verdict (benchmarks/README.md, "Where the time goes"): with XLA's default YNN fusions this makes
SimpleCNN's train step 1.3x faster (500 -> 380 ms); with YNN off (the harness's default on CPU) XLA's
own kernel gradient is 2.5-4x faster than these per-tap GEMMs, so the models keep ``nn.Conv``. Kept
to reproduce the measurement.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.models.conv import NHWC_DIMENSIONS, explicit_padding, is_plain_nhwc_conv, kernel_taps


_MIN_TAP_GEMM_IN_FEATURES = 16


def _xla_conv(x, kernel, strides, padding, dilation, precision):
    return lax.conv_general_dilated(
        x, kernel, strides, padding, rhs_dilation=dilation, dimension_numbers=NHWC_DIMENSIONS, precision=precision
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_nhwc(x, kernel, strides, padding, dilation, precision):
    return _xla_conv(x, kernel, strides, padding, dilation, precision)


def _conv_nhwc_forward(x, kernel, strides, padding, dilation, precision):
    return _conv_nhwc(x, kernel, strides, padding, dilation, precision), (x, kernel)


def _conv_nhwc_backward(strides, padding, dilation, precision, residuals, grad):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda v: _xla_conv(v, kernel, strides, padding, dilation, precision), x)
    (grad_x,) = input_vjp(grad)
    kh, kw, in_features, out_features = kernel.shape
    taps = kernel_taps(x, (kh, kw), strides, padding, dilation)
    grad_flat = grad.reshape(-1, out_features)
    grad_kernel = jnp.stack(
        [jnp.dot(tap.reshape(-1, in_features).T, grad_flat, precision=precision) for tap in taps]
    ).reshape(kernel.shape)
    return grad_x, grad_kernel.astype(kernel.dtype)


_conv_nhwc.defvjp(_conv_nhwc_forward, _conv_nhwc_backward)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """``lax.conv_general_dilated`` with the kernel gradient computed as one GEMM per kernel tap on CPU.

    A drop-in for ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``: same
    arguments, same values (to float rounding). The fast path covers 2-D NHWC/HWIO convolutions of
    any stride, padding and kernel dilation with at least 16 input channels, without input dilation
    or feature/batch groups, on the CPU backend; everything else, and every other backend, goes
    straight to ``lax``.
    """
    lax_call = functools.partial(
        lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision, preferred_element_type=preferred_element_type,
    )
    if rhs.shape[2] < _MIN_TAP_GEMM_IN_FEATURES or not is_plain_nhwc_conv(
        lhs, rhs, dimension_numbers, lhs_dilation=lhs_dilation, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, preferred_element_type=preferred_element_type,
    ):
        return lax_call()
    dilation = tuple(rhs_dilation or (1, 1))
    padding = explicit_padding(padding, lhs.shape[1:3], rhs.shape[:2], window_strides, dilation)
    return _conv_nhwc(lhs, rhs, tuple(window_strides), padding, dilation, precision)


@contextlib.contextmanager
def _interceptor():
    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or type(module) is not nn.Conv or module.conv_general_dilated:
            return next_fun(*args, **kwargs)
        object.__setattr__(module, "conv_general_dilated", conv_general_dilated)
        try:
            return next_fun(*args, **kwargs)
        finally:
            object.__setattr__(module, "conv_general_dilated", None)

    with nn.intercept_methods(intercept):
        yield


def with_fast_conv(apply_fn):
    """``apply_fn`` with every ``nn.Conv`` inside it on ``conv_general_dilated`` above (same parameters),
    without editing the model files."""

    def apply(*args, **kwargs):
        with _interceptor():
            return apply_fn(*args, **kwargs)

    return apply
