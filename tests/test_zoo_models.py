"""The model zoo (AlexNet, VGG, ResNet): golden parameter counts, shapes, jit/vmap, batch norm, dtypes."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from numpy_weights import numpy_variables
from jaxvision.models import AlexNet, ResNet, VGG, get_model, list_models
from jaxvision.models.resnet import cifar_resnet
from jaxvision.train import Batch, TrainState, create_train_state, train_step



@pytest.fixture(autouse=True)
def _strict_rank_promotion():
    """Implicit rank promotion (broadcasting [n] against [n, 1]) is an error in these tests."""
    with jax.numpy_rank_promotion("raise"):
        yield

ZOO = [name for name in list_models() if name.startswith(("alexnet", "vgg", "resnet"))]
CIFAR = {"alexnet_cifar", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"} | {
    name for name in ZOO if name.endswith("_cifar")
}


def _param_count(model, input_shape):
    """Counts parameters from abstract shapes: nothing is allocated, so 138M parameters cost nothing."""
    variables = jax.eval_shape(
        lambda x: model.init(jax.random.key(0), x), jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    )
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))


# Golden counts from the papers / torchvision's model cards (torchvision.models.*.meta["num_params"]),
# 1000 classes, 224x224x3. VGG-16 (configuration D) by hand:
#   convs, (3*3*C_in + 1) * C_out: 1,792 + 36,928 + 73,856 + 147,584 + 295,168 + 2 * 590,080
#     + 1,180,160 + 5 * 2,359,808 = 14,714,688
#   dense: (7*7*512 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000
#     = 102,764,544 + 16,781,312 + 4,097,000 = 123,642,856;       total 138,357,544.
# ResNet-18: stem 7*7*3*64 + BN 128 = 9,536; per stage (3x3 convs without bias, BN 2*C each, a 1x1
# projection + BN where the shape changes): 147,968 + 525,568 + 2,099,712 + 8,393,728; head
# 512*1000 + 1000 = 513,000; total 11,689,512.
# AlexNet (torchvision layout 64-192-384-256-256): convs 23,296 + 307,392 + 663,936 + 884,992 + 590,080
# = 2,469,696; dense 37,752,832 + 16,781,312 + 4,097,000 = 58,631,144; total 61,100,840.
# AlexNet 2012 (96-256-384-384-256, conv2/4/5 in two groups): convs 34,944 + (5*5*48*256 + 256 = 307,456)
# + 885,120 + (3*3*192*384 + 384 = 663,936) + (3*3*192*256 + 256 = 442,624) = 2,334,080; same dense
# 58,631,144; total 60,965,224 (the "60 million parameters" of the paper).
GOLDEN_IMAGENET = {
    "vgg11": 132_863_336,
    "vgg11_lrn": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    # C = B + 1x1 convs (256*256 + 256) + 2 * (512*512 + 512) = 133,047,848 + 591,104.
    "vgg16_c": 133_638_952,
    # torchvision vgg*_bn: + 2 per conv channel (scale, bias) on top of the plain counts.
    "vgg16_bn": 138_365_992,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "alexnet": 61_100_840,
    "alexnet_2012": 60_965_224,
}


@pytest.mark.parametrize("name", sorted(GOLDEN_IMAGENET))
def test_zoo_golden_parameter_count(name):
    assert _param_count(get_model(name, num_classes=1000), (224, 224, 3)) == GOLDEN_IMAGENET[name]


def test_zoo_cifar_resnet20_parameter_count_matches_paper():
    # conv 3*3*3*16 + BN 32; stage 1: 6 convs of 2,304 + BN 32; stage 2: 4,608 + 64 then 5 * (9,216 + 64);
    # stage 3: 18,432 + 128 then 5 * (36,864 + 128); zero-padding shortcuts are free; head 64*10 + 10.
    assert _param_count(get_model("resnet20", num_classes=10), (32, 32, 3)) == 269_722


@pytest.mark.parametrize("name", ZOO)
def test_zoo_every_model_builds_from_registry_with_expected_output_shape(name):
    model = get_model(name, num_classes=7)
    # ImageNet models at 64x64: tracing costs the same at any size, and the adaptive/global pooling
    # makes the head independent of it.
    shape = (3, 32, 32, 3) if name in CIFAR else (3, 64, 64, 3)
    logits = jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x)[0], jax.ShapeDtypeStruct(shape, jnp.float32)
    )
    assert logits.shape == (3, 7)


def test_zoo_imagenet_models_map_224_inputs_to_1000_logits():
    for name in ("alexnet", "vgg16_bn", "resnet50"):
        model = get_model(name, num_classes=1000)
        logits = jax.eval_shape(
            lambda x: model.init_with_output(jax.random.key(0), x)[0],
            jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32),
        )
        assert logits.shape == (2, 1000)


# Small members of every family (and every code path: LRN, groups, batch norm, bottleneck, both
# shortcuts, both stems) that compile in seconds on CPU; resnet20 itself trains in the trace-once test.
SMALL = {
    "alexnet_cifar": lambda: get_model("alexnet_cifar"),
    "alexnet_2012_tiny": lambda: AlexNet(
        num_classes=10, widths=(16, 32, 32, 32, 16), hidden_size=32, small_input=True, local_response_norm=True, groups=2
    ),
    "vgg11_bn_cifar": lambda: get_model("vgg11_bn_cifar"),
    "resnet_cifar_tiny": lambda: ResNet(
        num_classes=10, stage_sizes=(1, 1), widths=(8, 16), small_input=True, shortcut="zero_pad"
    ),
    "resnet_bottleneck_tiny": lambda: ResNet(num_classes=10, stage_sizes=(1, 1), block="bottleneck", widths=(8, 16)),
}


def _key(seed):
    # XLA:CPU takes seconds to compile each threefry call site (one per parameter in ``init``); the
    # rng-bit-generator implementation compiles in milliseconds and is as good for tests.
    return jax.random.key(seed, impl="unsafe_rbg")


def _images(batch=4, size=32, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, size, size, 3)), jnp.float32)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zoo_one_train_step_is_finite_and_per_example_eval_matches_batched(name):
    model = SMALL[name]()
    variables = numpy_variables(model, (32, 32, 3))
    state = TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=optax.sgd(0.01, momentum=0.9),
        batch_stats=variables.get("batch_stats", {}),
    )
    images = _images()
    new_state, metrics = train_step(state, Batch.of(images, jnp.array([0, 1, 2, 3])), _key(1))
    assert np.isfinite(float(metrics["loss"]))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(new_state.params))
    assert int(new_state.step) == 1
    if state.batch_stats:  # batch norm: every running statistic moved towards this batch's
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.batch_stats, new_state.batch_stats)
        assert all(jax.tree.leaves(changed))
    # jit + vmap: eval of each example alone (vmapped over the batch) equals eval of the batch.
    variables = new_state.variables
    batched = jax.jit(lambda x: model.apply(variables, x))(images)
    per_example = jax.jit(jax.vmap(lambda x: model.apply(variables, x[None])[0]))(images)
    assert batched.shape == (4, 10)
    np.testing.assert_allclose(per_example, batched, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(batched))))


def test_zoo_create_train_state_and_train_step_trace_once_for_batch_norm_model():
    state = create_train_state(get_model("resnet20"), (32, 32, 3), optax.sgd(0.1), _key(0))
    assert set(state.batch_stats) >= {"stem_bn", "stage1_block1"}
    step = jax.jit(chex.assert_max_traces(train_step.unjitted, n=1))
    batch = Batch.of(_images(), jnp.array([0, 1, 2, 3]))
    for _ in range(3):
        state, metrics = step(state, batch, _key(1))
    assert int(state.step) == 3 and np.isfinite(float(metrics["loss"]))


# --- batch norm in a functional setting -------------------------------------------------------


def test_zoo_batch_norm_train_and_eval_outputs_differ_and_eval_is_deterministic():
    model = SMALL["resnet_cifar_tiny"]()
    images = _images(batch=8)
    variables = numpy_variables(model, (32, 32, 3))
    train_logits, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
    eval_logits = model.apply(variables, images, train=False)
    # Train mode normalises with this batch's statistics, eval mode with the running ones, so they
    # differ; eval does not touch batch_stats (they are not mutable there: flax would raise).
    assert float(jnp.max(jnp.abs(train_logits - eval_logits))) > 1e-3
    np.testing.assert_array_equal(eval_logits, model.apply(variables, images, train=False))
    # Eval of two examples does not depend on the other six; train mode does.
    np.testing.assert_allclose(model.apply(variables, images[:2]), eval_logits[:2], rtol=1e-5, atol=1e-5)
    train_pair, _ = model.apply(variables, images[:2], train=True, mutable=["batch_stats"])
    assert float(jnp.max(jnp.abs(train_pair - train_logits[:2]))) > 1e-3


def test_zoo_batch_norm_running_statistics_move_by_torch_momentum_0_1():
    model = SMALL["resnet_cifar_tiny"]()
    images = _images(batch=8)
    variables = numpy_variables(model, (32, 32, 3))
    _, state = model.apply(
        variables, images, train=True, mutable=["batch_stats", "intermediates"],
        capture_intermediates=lambda module, method: module.name == "stem_conv",
    )
    conv_out = np.asarray(state["intermediates"]["stem_conv"]["__call__"][0])
    old, new = variables["batch_stats"]["stem_bn"], state["batch_stats"]["stem_bn"]
    # Flax momentum 0.9 is PyTorch momentum 0.1: new = 0.9 * old + 0.1 * this batch's statistic
    # (flax keeps the biased variance).
    np.testing.assert_allclose(new["mean"], 0.9 * old["mean"] + 0.1 * conv_out.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["var"], 0.9 * old["var"] + 0.1 * conv_out.var(axis=(0, 1, 2)), rtol=1e-5)


def test_zoo_resnet_zero_init_residual_starts_last_batch_norm_scale_at_zero():
    model = ResNet(num_classes=2, stage_sizes=(1,), widths=(4,), small_input=True, zero_init_residual=True)
    params = model.init(_key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    assert not np.any(params["stage1_block1"]["bn2"]["scale"])
    assert np.all(params["stage1_block1"]["bn1"]["scale"] == 1)


# --- dtypes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alexnet_cifar", "vgg11_bn_cifar", "resnet20"])
def test_zoo_bfloat16_compute_keeps_float32_params(name):
    images = _images()
    model32 = get_model(name)
    model16 = get_model(name, dtype=jnp.bfloat16)
    abstract = jax.eval_shape(lambda x: model16.init(jax.random.key(0), x), images[:1])
    assert {leaf.dtype for leaf in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}
    variables = numpy_variables(model32, (32, 32, 3))
    logits16 = jax.jit(model16.apply)(variables, images)
    assert logits16.dtype == jnp.bfloat16
    logits32 = jax.jit(model32.apply)(variables, images)
    scale = float(jnp.max(jnp.abs(logits32)))
    np.testing.assert_allclose(logits16.astype(jnp.float32), logits32, atol=0.1 * scale)


# --- errors ---------------------------------------------------------------------------------------


def test_zoo_bad_configurations_say_how_to_fix():
    x = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="Unknown VGG config 'F'"):
        VGG(config="F").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="Unknown ResNet block"):
        ResNet(block="wide").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="one width per stage"):
        ResNet(stage_sizes=(1, 1), widths=(8,)).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(21)
    with pytest.raises(ValueError, match="no field"):
        get_model("vgg16", depth=16)
