"""jaxvision's BatchNorm against a NumPy oracle (values, running statistics) and flax's (variables, gradients)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models
from jaxvision.backends.cpu.batch_norm import BatchNorm, channel_sum

pytestmark = pytest.mark.cpu_kernels


@pytest.mark.parametrize("shape", [(128, 8, 8, 16), (3, 5, 7, 16), (4, 6, 6, 3), (10, 200), (5, 129)])
def test_channel_sum_matches_numpy(shape):
    # (128, 8, 8, 16) packs 8 rows per GEMV row; (3, 5, 7, 16) has 105 rows, not a multiple of 8, so it
    # does not; 3 and 129 channels do not divide 128.
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    ours = jax.jit(channel_sum)(jnp.asarray(x))
    chex.assert_shape(ours, (shape[-1],))
    np.testing.assert_allclose(ours, x.reshape(-1, shape[-1]).astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)


def _numpy_batch_norm(x, scale, bias, epsilon):
    axes = tuple(range(x.ndim - 1))
    x = x.astype(np.float64)
    mean, var = x.mean(axes), x.var(axes)
    return (x - mean) / np.sqrt(var + epsilon) * scale + bias, mean, var


def test_training_output_and_running_statistics_match_numpy():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(6, 5, 4, 8)) * 3 + 2).astype(np.float32)
    scale, bias = rng.uniform(0.5, 2, 8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    old_mean, old_var = rng.normal(size=8).astype(np.float32), rng.uniform(0.5, 2, 8).astype(np.float32)
    module = BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-3)
    variables = {"params": {"scale": scale, "bias": bias}, "batch_stats": {"mean": old_mean, "var": old_var}}
    y, updated = jax.jit(lambda v, a: module.apply(v, a, mutable=["batch_stats"]))(variables, x)
    expected, mean, var = _numpy_batch_norm(x, scale, bias, 1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.9 * old_mean + 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updated["batch_stats"]["var"], 0.9 * old_var + 0.1 * var, rtol=1e-5, atol=1e-6)


def test_evaluation_uses_the_running_statistics():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3, 3, 5)).astype(np.float32)
    mean, var = rng.normal(size=5).astype(np.float32), rng.uniform(0.5, 2, 5).astype(np.float32)
    scale, bias = rng.uniform(0.5, 2, 5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    variables = {"params": {"scale": scale, "bias": bias}, "batch_stats": {"mean": mean, "var": var}}
    y = BatchNorm().apply(variables, x, use_running_average=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * scale + bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_variables_output_dtype_and_gradients_match_flax(dtype):
    rng = np.random.default_rng(3)
    x = jnp.asarray((rng.normal(size=(8, 6, 6, 16)) * 2 + 1).astype(np.float32), dtype)
    ours, flax_bn = BatchNorm(momentum=0.9), nn.BatchNorm(momentum=0.9)
    ours_vars = ours.init(jax.random.key(0), x, use_running_average=False)
    flax_vars = flax_bn.init(jax.random.key(0), x, use_running_average=False)
    chex.assert_trees_all_equal_shapes_and_dtypes(ours_vars, flax_vars)
    params = {"scale": jnp.linspace(0.5, 2.0, 16), "bias": jnp.linspace(-1.0, 1.0, 16)}
    weights = jnp.asarray(rng.normal(size=x.shape).astype(np.float32))

    def loss(module, params, images):
        y, updated = module.apply({"params": params, "batch_stats": flax_vars["batch_stats"]}, images,
                                  use_running_average=False, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(y.astype(jnp.float32)) * weights), (y, updated)

    def gradients(module):
        return jax.jit(jax.grad(lambda p, a: loss(module, p, a), (0, 1), has_aux=True))(params, x)

    ours_grads, (ours_y, ours_stats) = gradients(ours)
    flax_grads, (flax_y, flax_stats) = gradients(flax_bn)
    assert ours_y.dtype == flax_y.dtype
    tolerance = 1e-5 if dtype == jnp.float32 else 1e-2
    chex.assert_trees_all_close((ours_y, ours_stats), (flax_y, flax_stats), rtol=tolerance, atol=tolerance)
    chex.assert_trees_all_close(ours_grads, flax_grads, rtol=tolerance, atol=tolerance)
    assert ours_grads[1].dtype == dtype


def test_resnet_variables_are_flax_batch_norm_names():
    # Checkpoints written before BatchNorm moved here must still load: same tree as nn.BatchNorm's.
    model = models.get_model("resnet20")
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    stem = jax.tree.map(lambda a: a.shape, {k: v["stem_bn"] for k, v in variables.items()})
    assert stem == {"params": {"bias": (16,), "scale": (16,)}, "batch_stats": {"mean": (16,), "var": (16,)}}


def test_gradients_equal_flax_in_float64():
    # The forward-mode rules are exact: in float64 the CPU BatchNorm's gradients are flax's to
    # rounding, so the larger float32 differences of deep networks are float32 rounding only.
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (3, 8, 8, 16), jnp.float64) * 0.5 + 2.0
        w = jax.random.normal(jax.random.key(1), x.shape, jnp.float64)

        def grads(module):
            layer = module(use_running_average=False, param_dtype=jnp.float64)
            variables = layer.init(jax.random.key(0), x)

            def loss(params, images):
                y, _ = layer.apply({**variables, "params": params}, images, mutable=["batch_stats"])
                return jnp.sum(jnp.sin(y) * w)

            return jax.grad(loss, argnums=(0, 1))(variables["params"], x)

        chex.assert_trees_all_close(grads(BatchNorm), grads(nn.BatchNorm), rtol=1e-10, atol=1e-10)


def test_forward_mode_matches_flax():
    x = jax.random.normal(jax.random.key(2), (4, 6, 6, 8))
    layer, reference = BatchNorm(use_running_average=False), nn.BatchNorm(use_running_average=False)
    variables = reference.init(jax.random.key(0), x)
    tangent = jax.random.normal(jax.random.key(3), x.shape)

    def run(module):
        return jax.jvp(lambda v: module.apply(variables, v, mutable=["batch_stats"])[0], (x,), (tangent,))

    chex.assert_trees_all_close(run(layer), run(reference), rtol=1e-4, atol=1e-4)
