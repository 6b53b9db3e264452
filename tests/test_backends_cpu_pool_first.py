"""The pool-first rewrite of conv + bias + ReLU + max pool: where it applies, and that nothing changes."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import backends, models
from jaxvision.backends.cpu import pool_first_rewrite as pool_first_module
from jaxvision.backends.cpu.pool_first_rewrite import plan, pool_first
from jaxvision.batch import Batch
from jaxvision.train import create_train_state, make_train_step

pytestmark = pytest.mark.cpu_kernels

# Model, overrides, input shape, and how many conv stages end in bias + ReLU + a 2x2 max pool.
CASES = {
    "lenet5": ({}, (28, 28, 1), 2),
    "mnist_cnn": ({}, (28, 28, 1), 2),
    "simple_cnn": ({}, (28, 28, 1), 1),  # conv, ReLU, conv, ReLU, pool: the second conv's stage
    "vgg11_cifar": ({}, (32, 32, 3), 5),  # the last conv of each of the five stages
    "vgg11_bn_cifar": ({}, (32, 32, 3), 5),  # batch norm's shift is a per-channel addition as well
    "lenet5_classic": ({"activation": "tanh", "pooling": "avg"}, (28, 28, 1), 0),
    "lenet5_tanh_max": ({"activation": "tanh"}, (28, 28, 1), 0),  # only ReLU is recognised
}


def _model(case, kernels="cpu"):
    overrides, shape, _ = CASES[case]
    return models.get_model(case.split("_classic")[0].split("_tanh")[0], kernels=kernels, **overrides), shape


def _variables(model, shape, batch=3):
    """Images and variables with non-zero biases (flax initialises them to zero)."""
    x = jax.random.normal(jax.random.key(0), (batch, *shape))
    variables = model.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x, train=False)
    leaves, structure = jax.tree.flatten(variables["params"])
    noise = [0.1 * jax.random.normal(key, leaf.shape) for key, leaf in zip(jax.random.split(jax.random.key(3), len(leaves)), leaves)]
    return x, {**variables, "params": jax.tree.unflatten(structure, [a + b for a, b in zip(leaves, noise)])}


class _Stage(nn.Module):
    """conv 3@3x3 (the CPU layer), ReLU, 2x2 max pool; optionally also returning the ReLU's output."""

    also_activation: bool = False

    @nn.compact
    def __call__(self, x):
        activated = nn.relu(backends.cpu.Conv(3, (3, 3), padding="SAME")(x))
        pooled = backends.cpu.max_pool(activated, (2, 2), strides=(2, 2))
        return (pooled, activated) if self.also_activation else pooled


@pytest.mark.parametrize("case", sorted(CASES))
def test_it_finds_exactly_the_conv_relu_pool_stages(case):
    model, shape = _model(case)
    x, variables = _variables(model, shape)
    jaxpr = jax.make_jaxpr(lambda v, a: model.apply(v, a, train=False))(variables, x).jaxpr
    fused, skipped = plan(jaxpr)
    assert len(fused) == CASES[case][2]
    assert len(skipped) == 2 * len(fused)  # each stage's bias addition and ReLU
    assert all(step.window == 2 for step in fused.values())


def test_the_train_step_takes_it_only_with_the_cpu_layers():
    cpu, reference = models.get_model("lenet5", kernels="cpu"), models.get_model("lenet5", kernels="reference")
    assert backends.training_forward(reference.apply) == reference.apply
    mlp = models.get_model("mlp")
    assert backends.training_forward(mlp.apply) == mlp.apply  # nothing to rewrite
    assert backends.training_forward(cpu.apply) != cpu.apply
    other = lambda variables, images: images  # noqa: E731
    assert backends.training_forward(other) is other


@pytest.mark.parametrize("case", ["lenet5", "mnist_cnn", "simple_cnn", "vgg11_cifar"])
def test_values_are_bit_for_bit_those_of_the_written_order_nan_included(case):
    model, shape = _model(case)
    x, variables = _variables(model, shape)
    poisoned = np.array(x)
    poisoned[1, shape[0] // 2, 3, 0] = np.nan

    def apply(v, a):
        return model.apply(v, a, train=True, rngs={"dropout": jax.random.key(5)})

    for images in (x, jnp.asarray(poisoned)):
        np.testing.assert_array_equal(pool_first(apply)(variables, images), apply(variables, images))
        np.testing.assert_array_equal(jax.jit(pool_first(apply))(variables, images), jax.jit(apply)(variables, images))
    logits = np.asarray(pool_first(apply)(variables, jnp.asarray(poisoned)))
    assert np.isnan(logits[1]).all() and np.isfinite(logits[[0, 2]]).all()


@pytest.mark.parametrize("case", ["lenet5", "mnist_cnn", "vgg11_cifar"])
def test_gradients_equal_the_written_orders(case):
    # In float64, so that any difference is the arithmetic's and not float32 rounding's.
    with jax.enable_x64(True):
        overrides, shape, _ = CASES[case]
        model = models.get_model(case, kernels="cpu", dtype=jnp.float64, param_dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(0), (4, *shape), jnp.float64)
        variables = model.init(jax.random.key(1), x)

        def loss(apply):
            return jax.jit(jax.value_and_grad(lambda p: jnp.sum(jnp.sin(apply({"params": p}, x)))))(variables["params"])

        chex.assert_trees_all_close(loss(pool_first(model.apply)), loss(model.apply), rtol=1e-12, atol=1e-14)


def test_gradients_at_exact_ties_go_to_the_first_maximum_as_in_the_written_order():
    # Integer images, kernel, bias and cotangent: every sum is exact, so a window's ties stay ties after the bias is
    # added, and both orders must send the gradient to the first of them (nn.max_pool's choice).
    stage = _Stage()
    x = jnp.round(2 * jax.random.normal(jax.random.key(0), (2, 8, 8, 1)))
    variables = stage.init(jax.random.key(1), x)
    variables = jax.tree.map(lambda p: jnp.round(4 * jax.random.normal(jax.random.key(2), p.shape)), variables)
    cotangent = jnp.round(4 * jax.random.normal(jax.random.key(3), (2, 4, 4, 3)))

    def pullback(apply):
        out, pull = jax.vjp(lambda v, a: apply(v, a), variables, x)
        return out, pull(cotangent)

    assert len(plan(jax.make_jaxpr(stage.apply)(variables, x).jaxpr)[0]) == 1
    chex.assert_trees_all_equal(pullback(pool_first(stage.apply)), pullback(stage.apply))
    reference = nn.max_pool(nn.relu(jax.lax.conv_general_dilated(
        x, variables["params"]["Conv_0"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        + variables["params"]["Conv_0"]["bias"]), (2, 2), strides=(2, 2))
    np.testing.assert_array_equal(pool_first(stage.apply)(variables, x), reference)


def test_an_intermediate_read_elsewhere_is_kept_as_written():
    # capture_intermediates returns every conv output: the bias additions are outputs of the traced
    # function, so those stages stay as written, and the intermediates are the same.
    model, shape = _model("lenet5")
    x, variables = _variables(model, shape)

    def apply(v, a):
        return model.apply(v, a, capture_intermediates=True, mutable=["intermediates"])

    jaxpr = jax.make_jaxpr(apply)(variables, x).jaxpr
    assert plan(jaxpr)[0] == {}
    chex.assert_trees_all_equal(pool_first(apply)(variables, x), apply(variables, x))
    # A ReLU read by something besides the pool is not rewritten either.
    stage = _Stage(also_activation=True)
    variables = stage.init(jax.random.key(1), x)
    assert plan(jax.make_jaxpr(stage.apply)(variables, x).jaxpr)[0] == {}
    chex.assert_trees_all_equal(pool_first(stage.apply)(variables, x), stage.apply(variables, x))


def test_it_works_under_jvp_and_vmap():
    model, shape = _model("lenet5")
    x, variables = _variables(model, shape)
    tangent = jax.tree.map(lambda p: jax.random.normal(jax.random.key(4), p.shape), variables)
    ours = jax.jvp(lambda v: pool_first(model.apply)(v, x), (variables,), (tangent,))
    chex.assert_trees_all_close(ours, jax.jvp(lambda v: model.apply(v, x), (variables,), (tangent,)), rtol=1e-5, atol=1e-5)
    stacked = jax.tree.map(lambda *p: jnp.stack(p), variables, tangent)  # a population of two members
    chex.assert_trees_all_close(jax.vmap(pool_first(model.apply), in_axes=(0, None))(stacked, x),
                                jax.vmap(model.apply, in_axes=(0, None))(stacked, x), rtol=1e-6, atol=1e-6)


def test_a_train_step_with_the_cpu_layers_equals_one_without_the_rewrite(monkeypatch):
    model = models.get_model("lenet5", kernels="cpu")
    state = create_train_state(model, (28, 28, 1), optax.adam(1e-3), jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = Batch.of(rng.random((8, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 8))
    step = make_train_step().unjitted
    original, calls = pool_first_module._evaluate, []
    monkeypatch.setattr(pool_first_module, "_evaluate", lambda *a: calls.append(1) or original(*a))
    # Fresh lambdas, so that each is traced anew.
    rewritten, rewritten_metrics = jax.jit(lambda *a: step(*a))(state, batch, jax.random.key(1))
    assert calls == [1]
    monkeypatch.setattr("jaxvision.train.training_forward", lambda apply_fn: apply_fn)
    written, written_metrics = jax.jit(lambda *a: step(*a))(state, batch, jax.random.key(1))
    assert calls == [1]
    chex.assert_trees_all_close(rewritten_metrics, written_metrics, rtol=1e-6)
    chex.assert_trees_all_close(rewritten.params, written.params, rtol=1e-5, atol=1e-6)
