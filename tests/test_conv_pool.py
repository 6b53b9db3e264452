"""ConvPool: nn.Conv's parameters, flax's conv + activation + pool arithmetic, cheaper order where valid."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import ACTIVATIONS, get_model, summary
from jaxvision.models.activations import NON_DECREASING_ACTIVATIONS, is_non_decreasing
from jaxvision.models.conv_pool import ConvPool, pools_first


class _Reference(nn.Module):
    """The written order with flax's own layers: nn.Conv, the activation, nn.max_pool / nn.avg_pool."""

    activation: str
    pooling: str
    padding: object

    @nn.compact
    def __call__(self, x):
        y = ACTIVATIONS[self.activation](nn.Conv(5, (3, 3), padding=self.padding, name="Conv_0")(x))
        pool = nn.max_pool if self.pooling == "max" else nn.avg_pool
        return pool(y, (2, 2), strides=(2, 2))


class _Pooled(nn.Module):
    activation: str
    pooling: str
    padding: object

    @nn.compact
    def __call__(self, x):
        return ConvPool(5, (3, 3), activation=self.activation, pooling=self.pooling, padding=self.padding,
                        name="Conv_0")(x)


def _images(shape=(2, 9, 10, 3)):
    return jax.random.normal(jax.random.key(3), shape)


@pytest.mark.parametrize(
    ("activation", "pooling", "padding"),
    [(activation, pooling, "SAME") for activation in ("relu", "leaky_relu", "elu", "tanh", "sigmoid", "gelu")
     for pooling in ("max", "avg")] + [("relu", "max", "VALID"), ("relu", "max", 1), ("gelu", "avg", 1)],
)
def test_conv_pool_equals_flax_conv_activation_and_pool(activation, pooling, padding):
    x = _images()
    reference, pooled = _Reference(activation, pooling, padding), _Pooled(activation, pooling, padding)
    variables = reference.init(jax.random.key(0), x)
    # Same parameter tree and the same initial values as nn.Conv under the same name and key.
    chex.assert_trees_all_equal(pooled.init(jax.random.key(0), x), variables)
    chex.assert_trees_all_close(pooled.apply(variables, x), reference.apply(variables, x), rtol=1e-6, atol=1e-6)

    def loss(module):
        return lambda params, images: jnp.sum(jnp.sin(module.apply({"params": params}, images)))

    # Odd sizes (9x10 -> 9x10 or 7x8 before pooling) exercise the dropped last row/column too.
    expected = jax.grad(loss(reference), argnums=(0, 1))(variables["params"], x)
    actual = jax.grad(loss(pooled), argnums=(0, 1))(variables["params"], x)
    # Three input channels take the stencil path (models/conv.py): float32 rounding, not flax's order.
    chex.assert_trees_all_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_conv_pool_gradients_at_ties_are_flax_max_pools():
    # Constant images make every window of the convolution's output a four-way tie, as MNIST's blank
    # background does: the gradient must go where flax's conv + ReLU + nn.max_pool sends it.
    x = jnp.ones((2, 8, 8, 1))
    reference, pooled = _Reference("relu", "max", "VALID"), _Pooled("relu", "max", "VALID")
    variables = reference.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + 0.1, variables["params"])  # positive outputs: ReLU passes them

    def loss(module):
        return lambda params, images: jnp.sum(module.apply({"params": params}, images) ** 2)

    expected = jax.grad(loss(reference), argnums=(0, 1))(params, x)
    actual = jax.grad(loss(pooled), argnums=(0, 1))(params, x)
    chex.assert_trees_all_close(actual, expected, rtol=1e-6, atol=1e-6)


def _bias_add_shapes(module, x):
    """Output shapes of the additions of the [1, 1, 1, features] bias in ``module``'s forward pass."""
    variables = module.init(jax.random.key(0), x)
    jaxpr = jax.make_jaxpr(lambda v: module.apply(v, x))(variables).jaxpr
    return [tuple(eqn.outvars[0].aval.shape) for eqn in jaxpr.eqns
            if eqn.primitive.name == "add" and any(tuple(v.aval.shape) == (1, 1, 1, 5) for v in eqn.invars)]


@pytest.mark.parametrize(
    ("activation", "pooling", "pooled_first"),
    [("relu", "max", True), ("tanh", "max", True), ("gelu", "max", False), ("relu", "avg", False)],
)
def test_conv_pool_adds_the_bias_after_pooling_only_where_that_is_the_same_function(activation, pooling, pooled_first):
    x = _images((2, 8, 8, 3))
    shapes = _bias_add_shapes(_Pooled(activation, pooling, "SAME"), x)
    assert shapes == [(2, 4, 4, 5) if pooled_first else (2, 8, 8, 5)]
    assert pools_first(activation, pooling) is pooled_first


def test_non_decreasing_activations_are_non_decreasing_and_the_rest_are_not_claimed():
    grid = jnp.linspace(-6.0, 6.0, 241)
    for name, activation in ACTIVATIONS.items():
        if name == "softmax":  # not elementwise
            assert not is_non_decreasing(name)
            continue
        steps = np.diff(np.asarray(activation(grid)))
        if name in NON_DECREASING_ACTIVATIONS:
            assert steps.min() >= -1e-6, name  # float32 tanh may step down by an ulp near +-1
        else:
            assert steps.min() < -1e-3, name  # e.g. gelu dips below zero; listing it would be wrong
    assert is_non_decreasing("relu") and is_non_decreasing(ACTIVATIONS["relu"])
    assert not is_non_decreasing(lambda x: x)  # unknown callables are not assumed monotone


def test_conv_pool_rejects_an_unknown_pooling():
    with pytest.raises(ValueError, match="Unknown pooling 'min'"):
        ConvPool(4, (3, 3), pooling="min").init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


def test_conv_pool_follows_the_compute_dtype():
    x = _images((2, 8, 8, 3))
    module = ConvPool(5, (3, 3), dtype=jnp.bfloat16)
    variables = module.init(jax.random.key(0), x)
    assert module.apply(variables, x).dtype == jnp.bfloat16
    assert jax.tree.leaves(variables)[0].dtype == jnp.float32


def test_models_built_on_conv_pool_keep_their_parameter_names():
    def parameter_names(name, shape):
        model = get_model(name)
        return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))["params"]

    for name, layers in (("mnist_cnn", {"Conv_0", "Conv_1", "Dense_0", "Dense_1"}),
                         ("lenet5", {"Conv_0", "Conv_1", "Dense_0", "Dense_1", "Dense_2"})):
        params = parameter_names(name, (28, 28, 1))
        assert set(params) == layers
        assert set(params["Conv_0"]) == {"kernel", "bias"}
    vgg = parameter_names("vgg11_cifar", (32, 32, 3))
    assert set(vgg) == {f"conv{i}" for i in range(1, 9)} | {"fc1", "fc2", "head"}
    assert vgg["conv8"]["kernel"].shape == (3, 3, 512, 512)


def test_summary_counts_a_conv_pool_at_its_convolution_size():
    rows = {row.name: row for row in summary(get_model("mnist_cnn"), (28, 28, 1), batch_size=2).layers}
    assert rows["Conv_0"].kind == "ConvPool"
    assert rows["Conv_0"].output_shape == (2, 14, 14, 24)
    assert rows["Conv_0"].flops == 2 * 28 * 28 * 24 * 5 * 5 * 1  # "SAME": the convolution is 28x28
    assert rows["Conv_1"].flops == 2 * 14 * 14 * 32 * 3 * 3 * 24
