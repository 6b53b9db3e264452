"""The few-channel convolution path against lax.conv_general_dilated (values and gradients) and PyTorch."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.backends.cpu import conv as conv_module
from jaxvision.backends.cpu.conv import Conv, col2im_input_gradient, conv_general_dilated, stencil_conv_2d

_NHWC = ("NHWC", "HWIO", "NHWC")

pytestmark = pytest.mark.cpu_kernels


def _lax(x, w, strides, padding, dilation):
    return jax.lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=_NHWC)


_GEOMETRIES = [((5, 5), (1, 1), "SAME", (1, 1)), ((3, 3), (1, 1), "VALID", (1, 1)),
               ((7, 7), (2, 2), ((3, 3), (3, 3)), (1, 1)), ((3, 2), (2, 1), ((0, 1), (2, 0)), (2, 1))]


def _images_and_kernel(seed, in_channels, kernel, out_channels):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, 11, 13, in_channels)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(*kernel, in_channels, out_channels)).astype(np.float32))
    return rng, x, w


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("kernel, strides, padding, dilation", _GEOMETRIES)
def test_stencil_conv_matches_lax_values_and_gradients(in_channels, kernel, strides, padding, dilation):
    rng, x, w = _images_and_kernel(0, in_channels, kernel, 5)
    # Jitted: eagerly, its kh * kw * in_channels terms are as many dispatches.
    stencil = jax.jit(lambda a, b: stencil_conv_2d(a, b, strides, padding, dilation))
    ours = stencil(x, w)
    theirs = _lax(x, w, strides, padding, dilation)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    dy = jnp.asarray(rng.normal(size=theirs.shape).astype(np.float32))
    grads = jax.jit(lambda a, b, c: jax.vjp(stencil, a, b)[1](c))(x, w, dy)
    expected = jax.vjp(lambda a, b: _lax(a, b, strides, padding, dilation), x, w)[1](dy)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_channels", [1, 6])
@pytest.mark.parametrize("kernel, strides, padding, dilation", _GEOMETRIES)
def test_col2im_input_gradient_matches_lax(in_channels, kernel, strides, padding, dilation):
    rng, x, w = _images_and_kernel(1, in_channels, kernel, 7)
    y, vjp = jax.vjp(lambda a: _lax(a, w, strides, padding, dilation), x)
    dy = jnp.asarray(rng.normal(size=y.shape).astype(np.float32))
    explicit = conv_module.explicit_padding(padding, x.shape[1:3], kernel, strides, dilation)
    ours = jax.jit(lambda c, b: col2im_input_gradient(c, b, x.shape[1:3], strides, explicit, dilation))(dy, w)
    np.testing.assert_allclose(ours, vjp(dy)[0], rtol=1e-4, atol=1e-4)


def test_conv_module_takes_the_few_channel_paths_by_channel_count(monkeypatch):
    few, stencil = [], []
    real_few, real_stencil = conv_module._few_channel_conv, conv_module.stencil_conv_2d
    monkeypatch.setattr(conv_module, "_few_channel_conv", lambda x, *a: few.append(x.shape[-1]) or real_few(x, *a))
    monkeypatch.setattr(conv_module, "stencil_conv_2d", lambda x, *a: stencil.append(x.shape[-1]) or real_stencil(x, *a))
    for channels in (1, 3, 4, 5, 8, 9, 16):
        x = jnp.ones((1, 8, 8, channels))
        jax.eval_shape(Conv(2, (3, 3)).init, jax.random.key(0), x)
    assert few == [1, 3, 4, 5, 8]
    assert stencil == [1, 3, 4]


def test_conv_module_has_nn_conv_parameters_and_outputs():
    x = jax.random.normal(jax.random.key(1), (2, 9, 9, 3))
    ours, theirs = Conv(4, (3, 3), strides=2, padding=1), nn.Conv(4, (3, 3), strides=2, padding=1)
    variables = theirs.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(variables)
    np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-5, atol=1e-5)


def test_grouped_or_dilated_input_convolutions_fall_back_to_lax():
    x = jnp.ones((1, 6, 6, 2))
    w = jnp.ones((3, 3, 1, 4))
    out = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC, feature_group_count=2)
    np.testing.assert_allclose(out, jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC,
                                                                 feature_group_count=2))
    out = conv_general_dilated(x, jnp.ones((3, 3, 2, 4)), (1, 1), ((0, 0), (0, 0)), lhs_dilation=(2, 2),
                               dimension_numbers=_NHWC)
    assert out.shape == (1, 9, 9, 4)


def test_stencil_conv_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 28, 28, 1)).astype(np.float32)
    w = rng.normal(size=(5, 5, 1, 6)).astype(np.float32)
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2),
                                        torch.from_numpy(w).permute(3, 2, 0, 1), padding=2)
    ours = stencil_conv_2d(jnp.asarray(x), jnp.asarray(w), (1, 1), "SAME")
    np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_channels", [3, 6])
@pytest.mark.parametrize("strides, padding", [((1, 1), "SAME"), ((2, 2), ((3, 3), (3, 3))), ((1, 2), "VALID")])
def test_conv_general_dilated_gradients_match_lax(strides, padding, in_channels):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 12, 10, in_channels)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(5, 5, in_channels, 4)).astype(np.float32))

    def loss(conv, a, b):
        return jnp.sum(jnp.sin(conv(a, b, strides, padding, dimension_numbers=_NHWC)))

    ours = jax.grad(lambda a, b: loss(conv_general_dilated, a, b), argnums=(0, 1))(x, w)
    theirs = jax.grad(lambda a, b: loss(jax.lax.conv_general_dilated, a, b), argnums=(0, 1))(x, w)
    for g, e in zip(ours, theirs):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_channels", [1, 3, 6])
@pytest.mark.parametrize("strides, padding", [((1, 1), ((2, 2), (2, 2))), ((2, 1), ((0, 1), (1, 0)))])
def test_im2col_tangent_transposes_into_col2im(in_channels, strides, padding):
    # The few-channel convolution's forward-mode rule writes the images' tangent as im2col_conv_2d;
    # reverse mode transposes it, and that transpose must be the col2im input gradient.
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 11, 9, in_channels)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(5, 5, in_channels, 4)).astype(np.float32))
    y, pull = jax.vjp(lambda v: conv_module.im2col_conv_2d(v, w, strides, padding, (1, 1)), x)
    dy = jnp.asarray(rng.normal(size=y.shape).astype(np.float32))
    np.testing.assert_allclose(pull(dy)[0], col2im_input_gradient(dy, w, x.shape[1:3], strides, padding, (1, 1)),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_channels", [1, 6])
def test_conv_forward_mode_and_hessian_vector_products_match_lax(in_channels):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, 10, 10, in_channels)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, in_channels, 4)).astype(np.float32))
    dx, dw = (jnp.asarray(rng.normal(size=a.shape).astype(np.float32)) for a in (x, w))

    def f(conv):
        return lambda a, b: jnp.tanh(conv(a, b, (1, 1), "SAME", dimension_numbers=_NHWC))

    ours = jax.jvp(f(conv_general_dilated), (x, w), (dx, dw))
    theirs = jax.jvp(f(jax.lax.conv_general_dilated), (x, w), (dx, dw))
    chex.assert_trees_all_close(ours, theirs, rtol=1e-4, atol=1e-4)

    def hvp(conv):
        grad = jax.grad(lambda b: jnp.sum(f(conv)(x, b) ** 2))
        return jax.jvp(grad, (w,), (dw,))[1]

    np.testing.assert_allclose(hvp(conv_general_dilated), hvp(jax.lax.conv_general_dilated), rtol=1e-3, atol=1e-3)


def test_small_maps_are_one_matmul_with_lax_values_and_gradients():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(3, 2, 2, 16)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, 16, 8)).astype(np.float32))
    jaxpr = str(jax.make_jaxpr(lambda a, b: conv_general_dilated(a, b, (1, 1), "SAME", dimension_numbers=_NHWC))(x, w))
    assert "conv_general_dilated" not in jaxpr and "dot_general" in jaxpr

    def loss(conv, a, b):
        return jnp.sum(jnp.sin(conv(a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_NHWC)))

    ours = jax.value_and_grad(lambda a, b: loss(conv_general_dilated, a, b), argnums=(0, 1))(x, w)
    theirs = jax.value_and_grad(lambda a, b: loss(jax.lax.conv_general_dilated, a, b), argnums=(0, 1))(x, w)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_strided_few_channel_convolutions_are_xla_own():
    # ImageNet stems (7x7/2, 11x11/4 on RGB) keep XLA's convolution, as before the seam.
    x = jnp.ones((1, 16, 16, 3))
    w = jnp.ones((7, 7, 3, 4))
    jaxpr = str(jax.make_jaxpr(lambda a, b: conv_general_dilated(a, b, (2, 2), "SAME", dimension_numbers=_NHWC))(x, w))
    assert "conv_general_dilated" in jaxpr and "custom_jvp" not in jaxpr
