"""Transfer learning: units and frozen sets by hand, the fine-tuning optimiser by hand, frozen layers in
inference mode, features, new heads, and a linear probe against SGD through the frozen model."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import FrozenDict

import jaxvision
from jaxvision import transfer
from jaxvision.backends import cpu
from jaxvision.batch import Batch
from jaxvision.models.layers import ModuleDef

TINY_RESNET = (8, 8, 3)  # resnet20's three stages give 8x8, 4x4, 2x2 maps
VGG_CIFAR = (32, 32, 3)

BLOCKS20 = {stage: tuple(f"stage{stage}_block{block}" for block in (1, 2, 3)) for stage in (1, 2, 3)}


def _variables(model, shape, seed=0, batch=2):
    """Inputs and variables for ``model``, random with running statistics far from their init (so inference
    and training modes differ); from the abstract tree, since flax's init takes tens of seconds here."""
    abstract = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros((1, *shape)))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            value = rng.normal(size=leaf.shape) / math.sqrt(math.prod(leaf.shape[:-1]))
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 2.0, leaf.shape)
        else:
            value = 0.1 * rng.normal(size=leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    x = jnp.asarray(rng.normal(size=(batch, *shape)), jnp.float32)
    return x, jax.tree_util.tree_map_with_path(fill, abstract)


def _apply(model, *, train):
    """``model.apply`` in training mode (batch statistics mutable) or evaluation mode; eager, as one-off
    passes on tiny inputs are cheaper than a compile."""
    if train:
        return functools.partial(model.apply, train=True, mutable=["batch_stats"])
    return functools.partial(model.apply, train=False)


# --- parse_finetune ----------------------------------------------------------------------------------


def test_parse_finetune_reads_the_three_forms():
    assert transfer.parse_finetune("all") == ("all", None)
    assert transfer.parse_finetune("linear") == ("linear", None)
    assert transfer.parse_finetune("last:3") == ("last", 3)


@pytest.mark.parametrize("spec", ["last", "last:", "last:0", "last:-1", "last:2.5", "last:x", "first:2", "", "ALL",
                                  "linear:1", None, 3])
def test_parse_finetune_refuses_anything_else_in_one_line(spec):
    with pytest.raises(ValueError, match=r"^Invalid --finetune .*: expected \"all\", \"linear\" or \"last:K\"") as info:
        transfer.parse_finetune(spec)
    assert "\n" not in str(info.value)


# --- units and frozen_modules, written out by hand ---------------------------------------------------

UNITS = {
    "resnet18": ((32, 32, 3), [
        ("stem", ("stem_conv", "stem_bn")),
        ("stage1", ("stage1_block1", "stage1_block2")),
        ("stage2", ("stage2_block1", "stage2_block2")),
        ("stage3", ("stage3_block1", "stage3_block2")),
        ("stage4", ("stage4_block1", "stage4_block2")),
    ]),
    "resnet20": (TINY_RESNET, [
        ("stem", ("stem_conv", "stem_bn")),
        ("stage1", ("stage1_block1", "stage1_block2", "stage1_block3")),
        ("stage2", ("stage2_block1", "stage2_block2", "stage2_block3")),
        ("stage3", ("stage3_block1", "stage3_block2", "stage3_block3")),
    ]),
    "vgg11_bn": ((32, 32, 3), [
        ("conv1", ("conv1", "bn1")), ("conv2", ("conv2", "bn2")), ("conv3", ("conv3", "bn3")),
        ("conv4", ("conv4", "bn4")), ("conv5", ("conv5", "bn5")), ("conv6", ("conv6", "bn6")),
        ("conv7", ("conv7", "bn7")), ("conv8", ("conv8", "bn8")),
        ("fc1", ("fc1", "Dropout_0")), ("fc2", ("fc2", "Dropout_1")),
    ]),
    # AlexNet's dropouts come before fc1 and fc2, so each joins the layer before it.
    "alexnet": ((224, 224, 3), [
        ("conv1", ("conv1",)), ("conv2", ("conv2",)), ("conv3", ("conv3",)), ("conv4", ("conv4",)),
        ("conv5", ("conv5", "Dropout_0")), ("fc1", ("fc1", "Dropout_1")), ("fc2", ("fc2",)),
    ]),
    "lenet5": ((28, 28, 1), [
        ("Conv_0", ("Conv_0",)), ("Conv_1", ("Conv_1",)),
        ("Dense_0", ("Dense_0", "Dropout_0")), ("Dense_1", ("Dense_1", "Dropout_1")),
    ]),
    "mlp": ((8, 8, 1), [("Dense_0", ("Dense_0", "Dropout_0")), ("Dense_1", ("Dense_1", "Dropout_1"))]),
}

FROZEN = {
    ("resnet18", "linear"): ("stage1_block1", "stage1_block2", "stage2_block1", "stage2_block2", "stage3_block1",
                             "stage3_block2", "stage4_block1", "stage4_block2", "stem_bn", "stem_conv"),
    ("resnet18", "last:2"): ("stage1_block1", "stage1_block2", "stage2_block1", "stage2_block2", "stem_bn",
                             "stem_conv"),
    ("resnet18", "last:5"): (),
    ("resnet20", "last:1"): (*BLOCKS20[1], *BLOCKS20[2], "stem_bn", "stem_conv"),
    ("vgg11_bn", "last:3"): ("bn1", "bn2", "bn3", "bn4", "bn5", "bn6", "bn7",
                             "conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7"),
    ("vgg11_bn", "linear"): ("Dropout_0", "Dropout_1", "bn1", "bn2", "bn3", "bn4", "bn5", "bn6", "bn7", "bn8",
                             "conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8", "fc1", "fc2"),
    ("alexnet", "last:2"): ("Dropout_0", "conv1", "conv2", "conv3", "conv4", "conv5"),
    ("alexnet", "linear"): ("Dropout_0", "Dropout_1", "conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2"),
    ("lenet5", "last:1"): ("Conv_0", "Conv_1", "Dense_0", "Dropout_0"),
    ("lenet5", "all"): (),
    ("mlp", "linear"): ("Dense_0", "Dense_1", "Dropout_0", "Dropout_1"),
    ("mlp", "last:1"): ("Dense_0", "Dropout_0"),
}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_by_hand(name):
    shape, expected = UNITS[name]
    assert transfer.units(jaxvision.get_model(name, kernels="reference"), shape) == expected


@pytest.mark.parametrize("name, finetune", sorted(FROZEN))
def test_frozen_modules_by_hand(name, finetune):
    shape = UNITS[name][0]
    assert transfer.frozen_modules(jaxvision.get_model(name, kernels="reference"), shape, finetune) == FROZEN[name, finetune]


def test_units_are_the_same_with_the_cpu_kernels():
    model = jaxvision.get_model("resnet20", kernels="cpu")
    assert transfer.units(model, TINY_RESNET) == UNITS["resnet20"][1]


def test_layer_order_and_head_of_models_without_a_head_name():
    model = jaxvision.get_model("alexnet_2012")
    assert transfer.layer_order(model, (224, 224, 3)) == [
        "conv1", "lrn1", "conv2", "lrn2", "conv3", "conv4", "conv5", "Dropout_0", "fc1", "Dropout_1", "fc2", "head"]
    assert transfer.head_name(jaxvision.get_model("mnist_cnn"), (28, 28, 1)) == "Dense_1"
    assert transfer.head_name(jaxvision.get_model("mlp", activation="maxout"), (8, 8, 1)) == "Dense_0"


def test_last_k_beyond_the_units_says_how_many_there_are():
    model = jaxvision.get_model("resnet20")
    with pytest.raises(ValueError, match=r"^Invalid --finetune last:5: ResNet has 4 units below its head "
                                         r"\(stem, stage1, stage2, stage3\); use last:K with K <= 4, or all\.$"):
        transfer.frozen_modules(model, TINY_RESNET, "last:5")
    with pytest.raises(ValueError, match=r"Perceptron has no units below its head"):
        transfer.frozen_modules(jaxvision.get_model("perceptron"), (8, 8, 1), "last:1")


# --- labels and the optimiser ------------------------------------------------------------------------


def _three_part_params(container=dict):
    return container({
        "conv1": {"kernel": jnp.array([1.0, 2.0]), "bias": jnp.array([3.0])},
        "conv2": {"kernel": jnp.array([4.0, 5.0])},
        "head": {"kernel": jnp.array([[6.0]]), "bias": jnp.array([7.0])},
    })


@pytest.mark.parametrize("container", [dict, FrozenDict])
def test_parameter_labels_follow_the_top_level_names(container):
    labels = transfer.parameter_labels(_three_part_params(container), ("conv1", "Dropout_0"))
    assert type(labels) is container
    assert jax.tree_util.tree_leaves_with_path(labels) == jax.tree_util.tree_leaves_with_path(container({
        "conv1": {"kernel": "frozen", "bias": "frozen"}, "conv2": {"kernel": "backbone"},
        "head": {"kernel": "head", "bias": "head"}}))


def test_parameter_labels_find_the_small_models_head_and_refuse_nonsense():
    _, variables = _variables(jaxvision.get_model("mlp", hidden_sizes=(4, 3)), (2, 2, 1))
    labels = transfer.parameter_labels(variables["params"], ("Dense_0",))
    assert {name: set(jax.tree.leaves(sub)) for name, sub in labels.items()} == {
        "Dense_0": {"frozen"}, "Dense_1": {"backbone"}, "Dense_2": {"head"}}
    with pytest.raises(ValueError, match=r"No head fc among the top-level parameters \(Dense_0, Dense_1, Dense_2\)"):
        transfer.parameter_labels(variables["params"], (), head=("fc",))
    with pytest.raises(ValueError, match=r"^head is both frozen and the head"):
        transfer.parameter_labels(_three_part_params(), ("head",))


def test_finetune_optimizer_with_sgd_against_a_hand_computation():
    params = _three_part_params()
    grads1 = jax.tree.map(lambda p: jnp.full_like(p, 2.0), params)
    grads2 = jax.tree.map(lambda p: jnp.full_like(p, -1.0), params)
    tx = transfer.finetune_optimizer(optax.sgd(0.5, momentum=0.9), ("conv1",), backbone_lr_scale=0.1)
    state = tx.init(params)
    updates1, state = tx.update(grads1, state, params)
    updates2, state = tx.update(grads2, state, params)
    # Momentum traces: step 1 g1 = 2; step 2 g2 + 0.9 g1 = -1 + 1.8 = 0.8; the update is -lr * trace.
    for updates, trace in ((updates1, 2.0), (updates2, 0.8)):
        for leaf in jax.tree.leaves(updates["conv1"]):
            np.testing.assert_array_equal(leaf, 0.0)  # exactly zero, not small
        for leaf in jax.tree.leaves(updates["conv2"]):
            np.testing.assert_allclose(leaf, -0.5 * 0.1 * trace, rtol=1e-6)
        for leaf in jax.tree.leaves(updates["head"]):
            np.testing.assert_allclose(leaf, -0.5 * trace, rtol=1e-6)


def test_finetune_optimizer_keeps_no_state_for_frozen_parameters_and_adam_for_the_rest():
    params = _three_part_params()
    grads = jax.tree.map(jnp.ones_like, params)
    tx = transfer.finetune_optimizer(optax.adam(0.1), ("conv1", "conv2"))
    state = tx.init(params)
    frozen_state = state.inner_states["frozen"]
    assert not [leaf for leaf in jax.tree.leaves(frozen_state) if getattr(leaf, "size", 0) > 1]
    updates, _ = tx.update(grads, state, params)
    plain, _ = optax.adam(0.1).update(grads, optax.adam(0.1).init(params), params)
    np.testing.assert_array_equal(updates["head"]["kernel"], plain["head"]["kernel"])
    np.testing.assert_array_equal(updates["conv2"]["kernel"], 0.0)
    same = transfer.finetune_optimizer(optax.adam(0.1), ("conv1",))
    updates, _ = same.update(grads, same.init(params), params)
    np.testing.assert_allclose(updates["conv2"]["kernel"], plain["conv2"]["kernel"], rtol=1e-6)


@pytest.mark.parametrize("scale", [0, -0.5, float("nan"), float("inf"), True, "0.1"])
def test_finetune_optimizer_refuses_a_bad_scale(scale):
    with pytest.raises(ValueError, match=r"^Invalid --backbone-lr-scale .*: expected a finite number > 0"):
        transfer.finetune_optimizer(optax.sgd(0.1), (), backbone_lr_scale=scale)


# --- with_frozen_layers ------------------------------------------------------------------------------


class _OneNorm(nn.Module):
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x, *, train=False):
        return self.norm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)


@pytest.mark.parametrize("norm", [nn.BatchNorm, cpu.BatchNorm], ids=["reference", "cpu"])
def test_frozen_batch_norm_is_flax_batch_norm_with_running_averages(norm):
    x = jax.random.normal(jax.random.key(0), (4, 3, 3, 5)) * 3 + 1
    keys = jax.random.split(jax.random.key(1), 4)
    variables = {
        "params": {"bn": {"scale": jax.random.normal(keys[0], (5,)), "bias": jax.random.normal(keys[1], (5,))}},
        "batch_stats": {"bn": {"mean": jax.random.normal(keys[2], (5,)),
                               "var": jax.random.uniform(keys[3], (5,), minval=0.1, maxval=3.0)}},
    }
    frozen = transfer.with_frozen_layers(_OneNorm(norm=norm), ("bn",))
    y, updates = _apply(frozen, train=True)(variables, x)
    oracle = nn.BatchNorm(use_running_average=True, epsilon=1e-5).apply(
        {"params": variables["params"]["bn"], "batch_stats": variables["batch_stats"]["bn"]}, x)
    np.testing.assert_allclose(y, oracle, rtol=1e-6, atol=1e-6)
    for name in ("mean", "var"):
        np.testing.assert_array_equal(updates["batch_stats"]["bn"][name], variables["batch_stats"]["bn"][name])
    # Not frozen: the batch's statistics, as before.
    trained = _apply(_OneNorm(norm=norm), train=True)(variables, x)[0]
    assert float(jnp.max(jnp.abs(trained - oracle))) > 0.1


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
def test_training_mode_keeps_frozen_statistics_bitwise_and_updates_the_others(kernels):
    model = jaxvision.get_model("resnet20", num_classes=3, kernels=kernels)
    x, variables = _variables(model, TINY_RESNET, batch=4)
    frozen = transfer.frozen_modules(model, TINY_RESNET, "last:1")
    _, updates = _apply(transfer.with_frozen_layers(model, frozen), train=True)(variables, x)
    for name, stats in variables["batch_stats"].items():
        for old, new in zip(jax.tree.leaves(stats), jax.tree.leaves(updates["batch_stats"][name])):
            if name in frozen:
                np.testing.assert_array_equal(new, old)
            else:
                assert not np.array_equal(new, old), name
    assert sorted(set(variables["batch_stats"]) - set(frozen)) == list(BLOCKS20[3])


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
def test_a_fully_frozen_model_trains_as_it_evaluates(kernels):
    model = jaxvision.get_model("resnet20", num_classes=3, kernels=kernels)
    x, variables = _variables(model, TINY_RESNET, batch=4)
    frozen_model = transfer.with_frozen_layers(model, transfer.frozen_modules(model, TINY_RESNET, "linear"))
    logits, _ = _apply(frozen_model, train=True)(variables, x)
    np.testing.assert_allclose(logits, _apply(model, train=False)(variables, x), rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(logits - _apply(model, train=True)(variables, x)[0]))) > 1e-2


def _dropout_calls(model, variables, x, key):
    """Each top-level dropout's (input, output) in a training-mode forward pass."""

    calls = {}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        path = context.module.scope.path
        if path and path[0].startswith("Dropout"):
            calls[path[0]] = (np.asarray(args[0]), np.asarray(out))
        return out

    with nn.intercept_methods(record):
        model.apply(variables, x, train=True, rngs={"dropout": key})
    return calls


def test_frozen_dropout_is_the_identity_and_the_others_still_drop():
    model = jaxvision.get_model("mlp", hidden_sizes=(64, 64), dropout_rate=0.5)
    x, variables = _variables(model, (4, 4, 1), batch=8)
    frozen = transfer.frozen_modules(model, (4, 4, 1), "last:1")
    assert frozen == ("Dense_0", "Dropout_0")
    calls = _dropout_calls(transfer.with_frozen_layers(model, frozen), variables, x, jax.random.key(5))
    plain = _dropout_calls(model, variables, x, jax.random.key(5))
    before, after = calls["Dropout_0"]
    np.testing.assert_array_equal(after, before)
    before, after = calls["Dropout_1"]
    dropped = (after == 0) & (before != 0)
    assert 0.35 < dropped[before != 0].mean() < 0.65
    np.testing.assert_allclose(after[~dropped], 2 * before[~dropped], rtol=1e-6)
    # The same key drops the same units as the model without frozen layers (where both inputs are nonzero).
    both = (before != 0) & (plain["Dropout_1"][0] != 0)
    np.testing.assert_array_equal(dropped[both], (plain["Dropout_1"][1] == 0)[both])


@pytest.mark.parametrize("name, shape, kernels", [
    ("resnet20", TINY_RESNET, "reference"), ("resnet20", TINY_RESNET, "cpu"),
    ("vgg11_bn_cifar", VGG_CIFAR, "cpu"), ("lenet5", (28, 28, 1), "reference"), ("mlp", (8, 8, 1), "reference"),
])
def test_frozen_models_keep_the_variable_tree_and_compare_equal(name, shape, kernels):
    model = jaxvision.get_model(name, kernels=kernels)
    frozen = transfer.frozen_modules(model, shape, "linear")
    frozen_model = transfer.with_frozen_layers(model, frozen)
    abstract = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, *shape)), train=False), jax.random.key(0))
    frozen_abstract = jax.eval_shape(lambda k: frozen_model.init(k, jnp.zeros((1, *shape)), train=False),
                                     jax.random.key(0))
    assert jax.tree_util.tree_structure(frozen_abstract) == jax.tree_util.tree_structure(abstract)
    assert jax.tree.map(lambda a: a.shape, frozen_abstract) == jax.tree.map(lambda a: a.shape, abstract)
    again = transfer.with_frozen_layers(model, list(reversed(frozen)))
    assert again == frozen_model and hash(again) == hash(frozen_model)
    assert frozen_model != model
    assert transfer.with_frozen_layers(frozen_model, frozen) == frozen_model  # freezing twice starts from the layers
    assert transfer.with_frozen_layers(model, ()) is model


@pytest.mark.parametrize("name, shape", [
    ("mlp", (4, 4, 1)), ("lenet5", (28, 28, 1)), ("simple_cnn", (8, 8, 1)), ("mnist_cnn", (8, 8, 1)),
    ("alexnet_cifar", (32, 32, 3)), ("vgg11_cifar", (32, 32, 3)),
])
def test_every_zoo_dropout_is_off_when_its_layers_are_frozen(name, shape):
    overrides = dict(conv_dropout_rate=0.5) if name == "simple_cnn" else {}
    model = jaxvision.get_model(name, dropout_rate=0.5, kernels="reference", **overrides)
    x, variables = _variables(model, shape, batch=1)
    frozen_model = transfer.with_frozen_layers(model, transfer.frozen_modules(model, shape, "linear"))
    evaluated = model.apply(variables, x, train=False)
    trained = frozen_model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})
    np.testing.assert_array_equal(trained, evaluated)
    dropped = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})
    assert not np.allclose(dropped, evaluated)


def test_models_without_norm_or_dropout_fields_come_back_as_they_are():
    model = jaxvision.get_model("perceptron")
    assert transfer.with_frozen_layers(model, ("Dense_0",)) is model


# --- features ----------------------------------------------------------------------------------------


def _head_of(variables, name="head"):
    return lambda pooled: nn.Dense(variables["params"][name]["bias"].shape[0]).apply(
        {"params": variables["params"][name]}, pooled)


@pytest.mark.parametrize("name, shape, kernels, head", [
    ("lenet5", (28, 28, 1), "reference", "Dense_2"), ("mlp", (8, 8, 1), "reference", "Dense_2"),
])
def test_the_head_of_the_pooled_features_is_the_logits(name, shape, kernels, head):
    model = jaxvision.get_model(name, kernels=kernels)
    x, variables = _variables(model, shape)
    features = transfer.feature_extractor(model, variables)(x)
    assert list(features) == ["pooled"]
    np.testing.assert_allclose(_head_of(variables, head)(features["pooled"]), _apply(model, train=False)(variables, x),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
def test_resnet_maps_have_the_stage_shapes_and_pooled_is_their_average(kernels):
    model = jaxvision.get_model("resnet20", kernels=kernels)
    x, variables = _variables(model, TINY_RESNET, batch=3)
    layers = ("stem", "stage1", "stage2", "stage3", "stage3_block3", "stem_conv")
    features = transfer.feature_extractor(model, variables, layers=layers)(x)
    assert list(features) == ["pooled", *layers]
    assert {name: value.shape for name, value in features.items()} == {
        "pooled": (3, 64), "stem": (3, 8, 8, 16), "stage1": (3, 8, 8, 16), "stage2": (3, 4, 4, 32),
        "stage3": (3, 2, 2, 64), "stage3_block3": (3, 2, 2, 64), "stem_conv": (3, 8, 8, 16)}
    np.testing.assert_allclose(features["pooled"], features["stage3"].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_head_of(variables)(features["pooled"]), _apply(model, train=False)(variables, x),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(features["stage3"], features["stage3_block3"])
    # stem is stem_bn's output: the stem convolution's output normalised with the running statistics.
    bn = variables["batch_stats"]["stem_bn"], variables["params"]["stem_bn"]
    expected = (features["stem_conv"] - bn[0]["mean"]) / jnp.sqrt(bn[0]["var"] + 1e-5) * bn[1]["scale"] + bn[1]["bias"]
    np.testing.assert_allclose(features["stem"], expected, rtol=1e-4, atol=1e-5)


def test_vgg_pooled_is_the_last_hidden_layer_after_its_relu():
    model = jaxvision.get_model("vgg11_bn_cifar", kernels="cpu")
    x, variables = _variables(model, VGG_CIFAR)
    features = transfer.feature_extractor(model, variables, layers=("fc2", "conv8", "bn8", "head"))(x)
    np.testing.assert_array_equal(features["pooled"], jnp.maximum(features["fc2"], 0))
    np.testing.assert_allclose(_head_of(variables)(features["pooled"]), features["head"], rtol=1e-5, atol=1e-5)
    assert features["conv8"].shape == features["bn8"].shape == (2, 2, 2, 512)


def test_unknown_layers_are_listed_with_the_valid_names():
    model = jaxvision.get_model("resnet20")
    _, variables = _variables(model, TINY_RESNET)
    extract = transfer.feature_extractor(model, variables, layers=("stage9", "stage2"))
    with pytest.raises(ValueError, match=r"^Unknown layer\(s\) 'stage9' for ResNet: expected any of stem_conv, "
                                         r"stem_bn, stem, stage1_block1, .*stage3_block3, stage3, head\.$"):
        extract(jnp.zeros((1, *TINY_RESNET)))
    with pytest.raises(ValueError, match=r"Invalid layers='stage2': expected a sequence of names"):
        transfer.feature_extractor(model, variables, layers="stage2")
    assert transfer.available_layers(model, TINY_RESNET)[:3] == ["stem_conv", "stem_bn", "stem"]


# --- with_new_head -----------------------------------------------------------------------------------


def _new_head(name, shape, head):
    model = jaxvision.get_model(name, num_classes=10)
    x, variables = _variables(model, shape)
    key = jax.random.key(42)
    new_model, new_variables = transfer.with_new_head(model, variables, 3, key, shape)
    assert new_model.num_classes == 3 and new_model == model.clone(num_classes=3)
    for collection, tree in variables.items():
        for module, values in tree.items():
            if module != head:
                assert new_variables[collection][module] is values  # shared, not copied
    assert new_model.apply(new_variables, x).shape == (2, 3)
    assert variables["params"][head]["bias"].shape == (10,)  # the input is left alone
    return new_model, new_variables, key


def test_a_new_head_starts_where_a_fresh_run_would():
    new_model, new_variables, key = _new_head("mlp", (8, 8, 1), "Dense_2")
    fresh = jaxvision.create_train_state(new_model, (8, 8, 1), optax.sgd(0.1), key).params["Dense_2"]
    for leaf, expected in zip(jax.tree.leaves(new_variables["params"]["Dense_2"]), jax.tree.leaves(fresh)):
        np.testing.assert_array_equal(leaf, expected)


def test_a_new_head_keeps_the_resnet_backbone_and_its_statistics():
    _, new_variables, _ = _new_head("resnet20", TINY_RESNET, "head")
    assert new_variables["params"]["head"]["kernel"].shape == (64, 3)
    np.testing.assert_array_equal(new_variables["params"]["head"]["bias"], 0.0)  # the zoo heads' zero bias


def test_a_new_head_refuses_variables_of_another_architecture_listing_every_mismatch():
    model = jaxvision.get_model("mlp", hidden_sizes=(6, 5))
    _, variables = _variables(jaxvision.get_model("mlp", hidden_sizes=(6, 4)), (2, 2, 1))
    del variables["params"]["Dense_0"]["bias"]
    with pytest.raises(ValueError, match=r"^The variables do not fit MLP on input_shape=\(2, 2, 1\) outside its "
                                         r"head: missing params/Dense_0/bias \(6,\); params/Dense_1/bias is \(4,\), "
                                         r"expected \(5,\); params/Dense_1/kernel is \(6, 4\), expected \(6, 5\)\. "):
        transfer.with_new_head(model, variables, 3, jax.random.key(0), (2, 2, 1))
    with pytest.raises(ValueError, match=r"Invalid num_classes=0"):
        transfer.with_new_head(model, variables, 0, jax.random.key(0), (2, 2, 1))


# --- linear probe ------------------------------------------------------------------------------------


def _blobs(seed, count, centres):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centres), count)
    return (centres[labels] + rng.normal(size=(count, centres.shape[1]))).astype(np.float32), labels


def test_the_linear_probe_separates_gaussian_blobs():
    centres = 3.0 * np.random.default_rng(0).normal(size=(4, 16))
    train, validation = _blobs(1, 400, centres), _blobs(2, 200, centres)
    head, history = transfer.train_linear_probe(
        *train, num_classes=4, epochs=8, batch_size=32, optimizer=optax.adam(0.05), key=jax.random.key(3),
        validation=validation)
    assert head["kernel"].shape == (16, 4) and head["bias"].shape == (4,)
    assert [len(v) for v in history.values()] == [8] * 5
    assert history["val_accuracy"][-1] > 0.97 and history["val_accuracy"][0] < history["val_accuracy"][-1] + 1e-9
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    logits = validation[0] @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    assert np.isclose((logits.argmax(1) == validation[1]).mean(), history["val_accuracy"][-1])


def test_the_linear_probe_equals_sgd_on_the_head_through_the_frozen_model():
    shape, count, batch_size, epochs, classes = (3, 3, 2), 20, 8, 2, 3
    model = jaxvision.get_model("mlp", num_classes=classes, hidden_sizes=(12, 10), dropout_rate=0.5)
    images, variables = _variables(model, shape, batch=count)
    labels = jnp.asarray(np.random.default_rng(12).integers(0, classes, count))
    # Batches of 8 with the last one padded to 8 (mask 0), as eval batches come.
    pad = 24 - count
    padded_images = jnp.concatenate([images, jnp.zeros((pad, *shape))])
    padded_labels = jnp.concatenate([labels, jnp.zeros(pad, labels.dtype)])
    mask = jnp.concatenate([jnp.ones(count), jnp.zeros(pad)])
    batches = [Batch(padded_images[i:i + 8], padded_labels[i:i + 8], mask[i:i + 8]) for i in range(0, 24, 8)]
    features, cached_labels = transfer.cache_features(transfer.feature_extractor(model, variables), batches)
    assert features.shape == (count, 10) and features.dtype == np.float32
    np.testing.assert_array_equal(cached_labels, labels)

    key = jax.random.key(13)
    head, _ = transfer.train_linear_probe(features, cached_labels, num_classes=classes, epochs=epochs,
                                          batch_size=batch_size, optimizer=optax.sgd(0.3), key=key)

    # The independent path: the whole model in training mode (dropout drawing) with its backbone frozen,
    # plain SGD through finetune_optimizer, the probe's documented initial head and order of examples.
    init_key, shuffle_key = jax.random.split(key)
    frozen = transfer.frozen_modules(model, shape, "linear")
    frozen_model = transfer.with_frozen_layers(model, frozen)
    params = {**variables["params"], "Dense_2": nn.Dense(classes).init(init_key, jnp.zeros((1, 10)))["params"]}
    tx = transfer.finetune_optimizer(optax.sgd(0.3), frozen)
    opt_state = tx.init(params)

    def loss_fn(params, x, y, step):
        logits = frozen_model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(step)})
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grad_fn = jax.jit(jax.grad(loss_fn))
    step = 0
    for epoch in range(epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), count))
        for start in range(0, count, batch_size):
            index = order[start:start + batch_size]
            updates, opt_state = tx.update(grad_fn(params, images[index], labels[index], step), opt_state, params)
            params, step = optax.apply_updates(params, updates), step + 1
    for name in ("Dense_0", "Dense_1"):
        for new, old in zip(jax.tree.leaves(params[name]), jax.tree.leaves(variables["params"][name])):
            np.testing.assert_array_equal(new, old)
    np.testing.assert_allclose(head["kernel"], params["Dense_2"]["kernel"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head["bias"], params["Dense_2"]["bias"], rtol=1e-5, atol=1e-5)
    installed = transfer.install_head(variables, head)
    assert installed["params"]["Dense_2"] is not variables["params"]["Dense_2"]
    logits = _apply(model, train=False)
    np.testing.assert_allclose(logits(installed, images), logits({"params": params}, images), rtol=1e-5, atol=1e-5)


def test_probe_and_install_refuse_bad_input_in_one_line():
    features, labels = np.zeros((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
    kw = dict(num_classes=3, epochs=1, batch_size=2, optimizer=optax.sgd(0.1), key=jax.random.key(0))
    for bad, message in [
        (dict(labels=np.array([0, 1, 2, 0, 1, 3])), r"labels from 0 to 3: expected classes in \[0, 2\]"),
        (dict(labels=labels[:5]), r"labels of shape \(5,\)"),
        (dict(features=np.zeros(6)), r"features of shape \(6,\): expected \[N, D\]"),
        (dict(epochs=0), r"Invalid epochs=0: expected an integer >= 1"),
        (dict(validation=(np.zeros((2, 5)), np.array([0, 1]))), r"validation features of width 5: expected 4"),
    ]:
        args = {"features": features, "labels": labels, **kw, **bad}
        with pytest.raises(ValueError, match=message) as info:
            transfer.train_linear_probe(args.pop("features"), args.pop("labels"), **args)
        assert "\n" not in str(info.value)
    _, variables = _variables(jaxvision.get_model("mlp", hidden_sizes=(4,)), (2, 2, 1))
    with pytest.raises(ValueError, match=r"do not fit Dense_1"):
        transfer.install_head(variables, {"kernel": jnp.zeros((4, 3)), "bias": jnp.zeros(3)})
    with pytest.raises(ValueError, match=r"No examples to cache"):
        transfer.cache_features(lambda x: {"pooled": x}, [Batch(jnp.zeros((2, 3)), jnp.zeros(2), jnp.zeros(2))])
