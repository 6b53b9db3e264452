"""Core models: shapes, hand-computed parameter counts, activations, pooling, registry errors."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models


def count_params(model: nn.Module, input_shape) -> int:
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape)), train=False))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize(
    "model, input_shape, expected",
    [
        # 3 inputs -> 4 hidden -> 2 outputs: (3*4 + 4) + (4*2 + 2) = 16 + 10
        (models.MLP(num_classes=2, hidden_sizes=(4,)), (3,), 26),
        # (3*4 + 4) + (4*4 + 4) + (4*1 + 1) = 16 + 20 + 5
        (models.MLP(num_classes=1, hidden_sizes=(4, 4)), (3,), 41),
        # one unit on 2 inputs: 2 weights + 1 bias
        (models.Perceptron(num_classes=1), (2,), 3),
        # conv1 6*(5*5*1)+6 = 156; conv2 16*(5*5*6)+16 = 2,416; fc 400*120+120 = 48,120;
        # fc 120*84+84 = 10,164; fc 84*10+10 = 850; total 61,706
        (models.LeNet5(num_classes=10), (28, 28, 1), 61_706),
        # conv 32*(3*3*1)+32 = 320; conv 64*(3*3*32)+64 = 18,496; 12*12*64 = 9,216 -> 128: 1,179,776;
        # 128*10+10 = 1,290; total 1,199,882 (pytorch/examples/mnist's Net)
        (models.SimpleCNN(num_classes=10), (28, 28, 1), 1_199_882),
        # conv 24*(5*5*1)+24 = 624; conv 32*(3*3*24)+32 = 6,944; 7*7*32 = 1,568 -> 256: 401,664;
        # 256*10+10 = 2,570; total 411,802
        (models.MnistCNN(num_classes=10), (28, 28, 1), 411_802),
    ],
)
def test_parameter_counts_match_hand_arithmetic(model, input_shape, expected):
    assert count_params(model, input_shape) == expected


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
@pytest.mark.parametrize("name, input_shape", [("perceptron", (8, 8, 1)), ("mlp", (8, 8, 1)), ("lenet5", (28, 28, 1)), ("simple_cnn", (28, 28, 1)),
                                                   ("mnist_cnn", (28, 28, 1))])
def test_every_core_model_gives_logits_per_example_under_jit_and_vmap(name, input_shape, kernels):
    model = models.get_model(name, num_classes=7, kernels=kernels)
    images = jax.random.normal(jax.random.key(1), (5, *input_shape))
    variables = model.init(jax.random.key(0), images, train=False)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    chex.assert_shape(logits, (5, 7))
    chex.assert_tree_all_finite(logits)
    # vmap over single examples (a batch of one each) gives the same logits as the batched call.
    per_example = jax.vmap(lambda x: model.apply(variables, x[None], train=False)[0])(images)
    chex.assert_trees_all_close(per_example, logits, atol=1e-5, rtol=1e-5)


def test_dropout_is_active_only_in_training_and_keyed():
    model = models.MLP(num_classes=3, hidden_sizes=(64,), dropout_rate=0.5)
    x = jnp.ones((4, 10))
    variables = model.init(jax.random.key(0), x, train=False)
    eval_out = model.apply(variables, x, train=False)
    chex.assert_trees_all_equal(eval_out, model.apply(variables, x, train=False))
    a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    c = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, eval_out)


def test_dropout_accepts_a_traced_rate_and_keeps_the_expected_scale():
    x = jnp.ones((20_000,))

    @jax.jit
    def apply(rate):
        return models.Dropout(rate).apply({}, x, train=True, rngs={"dropout": jax.random.key(0)})

    for rate in (0.0, 0.25, 0.75):
        out = np.asarray(apply(jnp.float32(rate)))
        kept = out != 0
        assert abs(kept.mean() - (1 - rate)) < 0.02
        np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)


def test_activation_table_matches_numpy_definitions():
    x = np.linspace(-3, 3, 13).astype(np.float32)
    expected = {
        "sigmoid": 1 / (1 + np.exp(-x)),
        "tanh": np.tanh(x),
        "relu": np.maximum(x, 0),
        "leaky_relu": np.where(x > 0, x, 0.1 * x),
        "elu": np.where(x > 0, x, np.exp(x) - 1),
        "softmax": np.exp(x) / np.exp(x).sum(),
        "step": (x > 0).astype(np.float32),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(models.get_activation(name)(jnp.asarray(x)), value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_maxout_takes_the_max_of_its_linear_pieces():
    layer = models.Maxout(features=3, pieces=4)
    x = jax.random.normal(jax.random.key(0), (5, 6))
    variables = layer.init(jax.random.key(1), x)
    kernel = np.asarray(variables["params"]["Dense_0"]["kernel"])
    bias = np.asarray(variables["params"]["Dense_0"]["bias"])
    linear = (np.asarray(x) @ kernel + bias).reshape(5, 3, 4)
    np.testing.assert_allclose(layer.apply(variables, x), linear.max(-1), rtol=1e-5, atol=1e-6)


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"Unknown model 'lenet'\. Known: .*lenet5.* Did you mean 'lenet5'\?"):
        models.get_model("lenet")


def test_unknown_override_lists_the_model_fields():
    with pytest.raises(ValueError, match=r"no field\(s\) dropout\b.*Its fields: .*dropout_rate"):
        models.get_model("mlp", dropout=0.5)


def test_overrides_reach_the_model():
    model = models.get_model("lenet5", num_classes=3, activation="tanh", pooling="avg")
    assert (model.num_classes, model.activation, model.pooling) == (3, "tanh", "avg")


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True])
def test_get_model_rejects_a_bad_num_classes_before_building(num_classes):
    with pytest.raises(ValueError, match=r"Invalid num_classes=.*expected a positive integer"):
        models.get_model("mlp", num_classes=num_classes)


def test_models_are_textbook_flax_by_default():
    # Built directly, a model has flax's own layers: the reference path, whatever the backend.
    model = models.LeNet5()
    assert (model.conv, model.max_pool, model.avg_pool) == (nn.Conv, nn.max_pool, nn.avg_pool)
    assert models.ResNet().norm is nn.BatchNorm and models.ResNet().act is nn.relu


def test_pytorch_default_init_draws_uniform_within_one_over_root_fan_in():
    from jaxvision.models.initializers import pytorch_default_init

    model = models.get_model("mnist_cnn", kernels="reference")
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    redrawn = pytorch_default_init(params, jax.random.key(1))
    assert jax.tree.structure(redrawn) == jax.tree.structure(params)
    # PyTorch's nn.Linear / nn.Conv2d: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias the same.
    for layer, fan_in in (("Conv_0", 5 * 5 * 1), ("Conv_1", 3 * 3 * 24), ("Dense_0", 7 * 7 * 32)):
        bound = 1 / np.sqrt(fan_in)
        kernel, bias = np.asarray(redrawn[layer]["kernel"]), np.asarray(redrawn[layer]["bias"])
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
        assert abs(kernel.var() - bound**2 / 3) < 0.15 * bound**2 / 3  # a uniform's variance
        assert np.abs(bias).max() > 0.5 * bound  # not the zeros flax starts from
    torch = pytest.importorskip("torch")
    bound = 1 / np.sqrt(7 * 7 * 32)
    linear = torch.nn.Linear(7 * 7 * 32, 256)  # the oracle: PyTorch's own draw has the same range and spread
    assert 0.99 * bound < float(linear.weight.abs().max()) <= bound
    assert abs(float(linear.weight.var()) - float(np.asarray(redrawn["Dense_0"]["kernel"]).var())) < 0.05 * bound**2 / 3
