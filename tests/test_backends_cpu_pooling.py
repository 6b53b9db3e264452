"""The XLA:CPU pooling and materialize kernels against flax's pools, NumPy and PyTorch."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.backends.cpu import materialization, pooling

pytestmark = pytest.mark.cpu_kernels


@pytest.mark.parametrize("channels", [3, 24])
@pytest.mark.parametrize("window", [2, 3])
def test_max_pool_gradient_at_ties_goes_where_flax_and_pytorch_send_it(channels, window):
    # Half-integers on a coarse grid: most windows hold tied maxima. nn.max_pool (select-and-scatter)
    # and PyTorch's max_pool2d send a window's gradient to its first maximum in row-major order.
    x = jnp.round(jax.random.normal(jax.random.key(0), (2, 3 * window + 1, 2 * window, channels)))
    cotangent = jax.random.normal(jax.random.key(1), (2, 3, 2, channels))
    pooled, pull = jax.vjp(lambda v: pooling.max_pool(v, (window, window), strides=(window, window)), x)
    expected, pull_flax = jax.vjp(lambda v: nn.max_pool(v, (window, window), strides=(window, window)), x)
    np.testing.assert_array_equal(pooled, expected)
    np.testing.assert_array_equal(pull(cotangent)[0], pull_flax(cotangent)[0])
    torch = pytest.importorskip("torch")
    x_torch = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2), requires_grad=True)
    torch.nn.functional.max_pool2d(x_torch, window).backward(torch.tensor(np.asarray(cotangent).transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(pull(cotangent)[0], x_torch.grad.numpy().transpose(0, 2, 3, 1))


def test_max_pool_gradient_with_windows_past_int8_indices():
    # 12x12 windows have 144 entries: the stored index no longer fits int8.
    x = jax.random.normal(jax.random.key(2), (1, 24, 12, 4))
    expected = jax.grad(lambda v: jnp.sum(nn.max_pool(v, (12, 12), strides=(12, 12)) ** 2))(x)
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(pooling.max_pool_2d(v, 12) ** 2))(x), expected)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools_match_a_numpy_loop_and_their_gradients_match_flax(kind):
    x = np.array(jax.random.normal(jax.random.key(0), (2, 7, 6, 3)))  # 7 rows: the last is dropped
    expected = np.zeros((2, 3, 3, 3), np.float32)
    reduce = np.max if kind == "max" else np.mean
    for i in range(3):
        for j in range(3):
            expected[:, i, j, :] = reduce(x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, :], axis=(1, 2))
    ours = functools.partial(pooling.max_pool if kind == "max" else pooling.avg_pool, window_shape=(2, 2), strides=(2, 2))
    reference = functools.partial(nn.max_pool if kind == "max" else nn.avg_pool, window_shape=(2, 2), strides=(2, 2))
    np.testing.assert_allclose(ours(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-7)
    grad = jax.grad(lambda v: jnp.sum(ours(v) ** 2))(jnp.asarray(x))
    np.testing.assert_allclose(grad, jax.grad(lambda v: jnp.sum(reference(v) ** 2))(jnp.asarray(x)), rtol=1e-6)


def test_overlapping_or_padded_pools_are_flax_own():
    x = jax.random.normal(jax.random.key(3), (2, 9, 9, 4))
    for args in [((3, 3), (2, 2), "VALID"), ((3, 3), (2, 2), ((1, 1), (1, 1))), ((2, 2), (2, 2), "SAME")]:
        np.testing.assert_array_equal(pooling.max_pool(x, *args), nn.max_pool(x, *args))
        np.testing.assert_array_equal(pooling.avg_pool(x, *args), nn.avg_pool(x, *args))


def test_max_pool_forward_mode_is_the_tangent_at_the_first_maximum():
    x = jnp.round(jax.random.normal(jax.random.key(4), (2, 6, 6, 5)))  # ties
    tangent = jax.random.normal(jax.random.key(5), x.shape)
    ours = jax.jvp(lambda v: pooling.max_pool(v, (2, 2), (2, 2)), (x,), (tangent,))
    theirs = jax.jvp(lambda v: nn.max_pool(v, (2, 2), (2, 2)), (x,), (tangent,))
    chex.assert_trees_all_close(ours, theirs)
    # A Hessian-vector product (forward over reverse) runs and matches flax's (away from ties,
    # where the second derivative of a max is defined).
    smooth = jax.random.normal(jax.random.key(7), x.shape)

    def hvp(pool):
        return jax.jvp(jax.grad(lambda v: jnp.sum(pool(v, (2, 2), (2, 2)) ** 3)), (smooth,), (tangent,))[1]
    np.testing.assert_allclose(hvp(pooling.max_pool), hvp(nn.max_pool), rtol=1e-5, atol=1e-5)


def test_max_pool_propagates_nan_and_inf_as_flax_does():
    x = np.array(jax.random.normal(jax.random.key(6), (2, 4, 4, 3)))
    x[0, 1, 1, 0], x[1, 2, 3, 2], x[1, 0, 0, 1] = np.nan, np.inf, -np.inf
    ours, theirs = pooling.max_pool(jnp.asarray(x), (2, 2), (2, 2)), nn.max_pool(jnp.asarray(x), (2, 2), (2, 2))
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_array_equal(ours, theirs)  # assert_array_equal treats NaN == NaN
    assert np.isnan(ours[0, 0, 0, 0])
    # The gradient of the window holding the NaN is NaN, only there.
    grad = np.asarray(jax.grad(lambda v: jnp.sum(pooling.max_pool(v, (2, 2), (2, 2))))(jnp.asarray(x)))
    assert np.isnan(grad[0, 1, 1, 0]) or grad[0, 1, 1, 0] == 1.0
    assert np.isfinite(np.delete(grad.reshape(-1), np.ravel_multi_index((0, 1, 1, 0), x.shape))).all()


@pytest.mark.parametrize("shape", [(2, 5, 5, 16), (3, 7)])
def test_materialize_is_the_identity_with_identity_derivatives(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    weights = jax.random.normal(jax.random.key(1), shape)
    np.testing.assert_array_equal(jax.jit(materialization.materialize)(x), x)
    grad = jax.jit(jax.grad(lambda v: jnp.sum(materialization.materialize(v) * weights)))(x)
    np.testing.assert_array_equal(grad, weights)
    _, tangent = jax.jvp(materialization.materialize, (x,), (weights,))
    np.testing.assert_array_equal(tangent, weights)


def test_materialize_keeps_a_nan_to_its_own_example_and_position():
    x = np.array(jax.random.normal(jax.random.key(2), (2, 3, 3, 16)))
    x[1, 2, 0, 5] = np.nan
    out = np.asarray(materialization.materialize(jnp.asarray(x)))
    bad = ~np.isfinite(out)
    assert bad[1, 2, 0, 5] and bad.sum() <= materialization.MATERIALIZE_BLOCK  # its block of 8 channels at most
    assert bad[1, 2, 0].any() and not bad[0].any() and not np.delete(bad[1].reshape(9, 16), 6, axis=0).any()


@pytest.mark.parametrize("channels", [6, 32])  # both forms of the window maxima (pooling.MIN_REDUCE_CHANNELS)
def test_undifferentiated_max_pool_keeps_a_nan_that_xla_cpu_reductions_drop(channels):
    # One pixel's channels NaN among ones: on a 28x28 map XLA:CPU's max-reduction of the windows (and
    # nn.max_pool's reduce_window) returns 1 there, eagerly and under jit; lax.max's NaN semantics
    # (and NumPy's) say NaN, in that window only.
    x = np.ones((2, 28, 28, channels), np.float32)
    x[0, 2, 3, :] = np.nan
    x[1, 27, 26, 1] = -np.inf
    expected = x.reshape(2, 14, 2, 14, 2, channels).max(axis=(2, 4))
    pool = functools.partial(pooling.max_pool, window_shape=(2, 2), strides=(2, 2))
    np.testing.assert_array_equal(pool(jnp.asarray(x)), expected)
    np.testing.assert_array_equal(jax.jit(pool)(jnp.asarray(x)), expected)
    # Differentiated (a train step), the maximum is XLA's plain reduction, as nn.max_pool's would be.


def test_max_pool_of_integers_is_the_plain_maximum():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.int32).reshape(2, 4, 4, 3)
    np.testing.assert_array_equal(pooling.max_pool(x, (2, 2), strides=(2, 2)), nn.max_pool(x, (2, 2), strides=(2, 2)))
