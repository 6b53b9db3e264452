"""Dense-prediction models: UNet, backbone stages, BackboneUNet and CenterNet."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.backends import cpu
from jaxvision.models import (
    BackboneStages, BackboneUNet, CenterNet, UNet, UNetDecoder, detection_model, get_model, segmentation_model,
    stage_layers,
)

# XLA:CPU compiles threefry's initialisers ~10x slower than the RBG generator's; the tests only need
# some deterministic initial values, so every init here draws from RBG keys.
KEYS = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _count(params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def _init(model, x):
    """Variables and output of ``model`` on ``x``, in one compiled program (eager init dispatches op by op)."""
    output, variables = jax.jit(lambda x: model.init_with_output(KEYS, x, train=False))(x)
    return variables, output


def _numpy_init(model, x, seed=0, init=None):
    """Variables of ``model``'s shapes drawn by NumPy: LeCun-normal kernels, zero biases and means, unit
    scales and variances. Compiling a ResNet's ``init`` takes longer than the tests that use it.
    ``init`` (a thunk returning variables) replaces ``model.init(KEYS, x, train=False)``."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(init) if init is not None else _shapes(model, x)[1]

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])), jnp.float32)
        return (jnp.ones if name in ("scale", "var") else jnp.zeros)(leaf.shape, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _shapes(model, x):
    """Output shape(s) and variables' shapes: a trace, nothing computed."""
    output, variables = jax.eval_shape(lambda x: model.init_with_output(KEYS, x, train=False), x)
    return jax.tree.map(jnp.shape, output), variables


def _apply(model, variables, x):
    return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)


@pytest.fixture(scope="module")
def resnet20():
    return get_model("resnet20", num_classes=10, kernels="reference")


@pytest.fixture(scope="module")
def x16():
    return _images((2, 16, 16, 3))


# (model, variables, output on x16) for the two dense heads on resnet20, built once.
@pytest.fixture(scope="module")
def segmenter(resnet20, x16):
    model = segmentation_model(resnet20, 3, (16, 16, 3))
    variables = _numpy_init(model, x16)
    return model, variables, _apply(model, variables, x16)


@pytest.fixture(scope="module")
def detector(resnet20, x16):
    model = detection_model(resnet20, 3, (16, 16, 3))
    variables = _numpy_init(model, x16)
    return model, variables, _apply(model, variables, x16)


# --- UNet -------------------------------------------------------------------------------------------


def test_unet_maps_images_to_per_pixel_logits_with_the_hand_counted_parameters():
    model = UNet(num_classes=3, widths=(8, 16))
    x = _images((2, 32, 32, 1))
    variables = _numpy_init(model, x)
    out = _apply(model, variables, x)
    assert out.shape == (2, 32, 32, 3) and out.dtype == jnp.float32
    # down1: 3x3 1->8 and 8->8 (no bias) + 2 BN(8); bottleneck: 8->16, 16->16 + 2 BN(16);
    # up1_transpose: 2x2 16->8 + bias; up1: 3x3 (8 skip + 8 up)->8, 8->8 + 2 BN(8); head 1x1 8->3 + bias.
    expected = (72 + 16 + 576 + 16) + (1152 + 32 + 2304 + 32) + (512 + 8) + (1152 + 16 + 576 + 16) + (24 + 3)
    assert _count(variables["params"]) == expected == 6507
    # vmap over an extra batch axis gives each slice's own forward pass.
    xs = x.reshape(2, 1, 32, 32, 1)
    batched = jax.jit(jax.vmap(lambda x: model.apply(variables, x, train=False)))(xs)
    np.testing.assert_allclose(batched[:, 0], out, atol=1e-5)


def test_unet_refuses_sizes_its_pools_cannot_halve():
    model = UNet(num_classes=2, widths=(4, 8, 16))
    with pytest.raises(ValueError, match=r"divisible by 4; got 30x32"):
        _shapes(model, jnp.zeros((1, 30, 32, 1)))


def test_unet_from_the_registry():
    model = get_model("unet", num_classes=4)
    assert isinstance(model, UNet)
    out, variables = _shapes(model, jnp.zeros((1, 16, 16, 3)))
    assert out == (1, 16, 16, 4)
    assert _count(variables["params"]) == 482_788  # the default widths (16, 32, 64, 128) on RGB


def test_unet_overfits_a_toy_mask():
    # A bright square on noise: a U-Net must label its pixels almost perfectly after 100 Adam steps.
    rows, cols = np.mgrid[:16, :16]
    mask = ((rows >= 4) & (rows < 11) & (cols >= 5) & (cols < 13)).astype(np.int32)
    noise = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype(np.float32)
    images = jnp.asarray(mask[None, :, :, None] + 0.3 * noise)
    labels = jnp.asarray(np.broadcast_to(mask, (2, 16, 16)))
    model = UNet(num_classes=2, widths=(4, 8))
    variables = _numpy_init(model, images)
    optimizer = optax.adam(1e-2)

    def step(carry, _):
        params, batch_stats, opt_state = carry

        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates["batch_stats"]

        grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), None

    @jax.jit
    def fit(variables):
        params = variables["params"]
        carry = (params, variables["batch_stats"], optimizer.init(params))
        params, batch_stats, _ = jax.lax.scan(step, carry, length=100)[0]
        return model.apply({"params": params, "batch_stats": batch_stats}, images, train=False)

    assert float(jnp.mean(jnp.argmax(fit(variables), -1) == labels)) > 0.95


# --- stages -----------------------------------------------------------------------------------------


def test_stage_layers_of_resnet20_are_the_last_block_of_each_stage(resnet20):
    # CIFAR ResNet-20 at 32x32: the stem and stage 1 at 32x32 (stage1_block3 last), stage 2 at 16x16,
    # stage 3 at 8x8; the head's output is 2-D and is not a stage.
    layers = stage_layers(resnet20, (32, 32, 3))
    assert layers == ("stage1_block3", "stage2_block3", "stage3_block3")
    shapes, _ = _shapes(BackboneStages(resnet20, layers), jnp.zeros((2, 32, 32, 3)))
    assert shapes == ((2, 32, 32, 16), (2, 16, 16, 32), (2, 8, 8, 64))


def test_captured_stage_is_the_tensor_the_backbone_computes(resnet20, segmenter, x16):
    # An independent route to the deepest stage: ResNet's logits are dense(mean(stage3_block3)).
    variables = segmenter[1]
    backbone = {name: tree["backbone"] for name, tree in variables.items()}
    stages = BackboneStages(resnet20, ("stage3_block3",))

    @jax.jit
    def stage_and_logits(x):
        (stage,) = stages.apply({k: {"backbone": v} for k, v in backbone.items()}, x, train=False)
        return stage, resnet20.apply(backbone, x, train=False)

    stage, logits = stage_and_logits(x16)
    head = backbone["params"]["head"]
    np.testing.assert_allclose(jnp.mean(stage, axis=(1, 2)) @ head["kernel"] + head["bias"], logits, atol=1e-5)


def test_stage_layers_take_the_module_before_each_pool():
    # simple_cnn at 28x28: Conv_0 26x26, Conv_1 24x24, max pool (a function) then Dropout_0 12x12.
    assert stage_layers(get_model("simple_cnn", kernels="reference"), (28, 28, 1)) == ("Conv_0", "Conv_1", "Dropout_0")
    # vgg11_bn_cifar at 32x32: each resolution ends with its last batch norm (pre-ReLU); 1x1 is dropped.
    assert stage_layers(get_model("vgg11_bn_cifar", kernels="reference"), (32, 32, 3)) == (
        "bn1", "bn2", "bn4", "bn6", "bn8"
    )


class _StridedConvs(nn.Module):
    """A conv at full resolution, then ``depth`` convs of stride 2 (64x64 down to 1x1 with depth 6)."""

    depth: int = 6

    @nn.compact
    def __call__(self, x, *, train):
        x = nn.Conv(2, (3, 3), name="full")(x)
        for index in range(self.depth):
            x = nn.Conv(2, (3, 3), strides=(2, 2), name=f"down{index}")(x)
        return x


def test_stage_layers_keep_the_five_deepest_resolutions_of_at_least_2x2():
    # 64, 32, 16, 8, 4, 2, 1: 1x1 goes (nothing to decode), then 64x64 as the sixth.
    assert stage_layers(_StridedConvs(), (64, 64, 1)) == ("down0", "down1", "down2", "down3", "down4")


def test_backbone_stages_name_unknown_layers(resnet20):
    with pytest.raises(ValueError, match=r"Unknown layer\(s\) 'stage9'"):
        _shapes(BackboneStages(resnet20, ("stage9",)), jnp.zeros((1, 8, 8, 3)))


def test_decoder_sees_stages_through_a_relu():
    # Captured norm outputs are pre-activation: the decoder must not see a stage's negative part.
    decoder = UNetDecoder(width=4)
    shallow, deep = _images((1, 8, 8, 3), seed=1), _images((1, 4, 4, 5), seed=2)
    variables = _numpy_init(decoder, None, init=lambda: decoder.init(KEYS, (shallow, deep), (8, 8), train=False))
    apply = jax.jit(lambda stages: decoder.apply(variables, stages, (8, 8), train=False))
    np.testing.assert_allclose(apply((-jnp.abs(shallow), deep)), apply((jnp.zeros_like(shallow), deep)), atol=1e-6)
    np.testing.assert_allclose(apply((shallow, -jnp.abs(deep))), apply((shallow, jnp.zeros_like(deep))), atol=1e-6)
    assert not np.allclose(apply((shallow, deep)), apply((jnp.zeros_like(shallow), deep)))


# --- BackboneUNet and CenterNet ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet20", "simple_cnn"])
def test_dense_heads_have_the_asked_shapes(name):
    backbone = get_model(name, num_classes=10, kernels="reference")
    x = jnp.zeros((2, 32, 32, 3))
    segmenter = segmentation_model(backbone, 5, (32, 32, 3))
    shape, variables = _shapes(segmenter, x)
    assert shape == (2, 32, 32, 5)
    # The backbone's variables are exactly the classifier's, so its weights load unchanged.
    assert jax.tree.map(jnp.shape, variables["params"]["backbone"]) == jax.tree.map(
        jnp.shape, _shapes(backbone, x)[1]["params"]
    )
    assert _shapes(detection_model(backbone, 3, (32, 32, 3)), x)[0] == (2, 8, 8, 3 + 4)
    assert _shapes(BackboneUNet(backbone, segmenter.layers, 5, output_stride=2), x)[0] == (2, 16, 16, 5)


def test_cpu_kernels_match_the_reference(segmenter, detector, x16):
    fast_backbone = get_model("resnet20", num_classes=10, kernels="cpu")
    for build, (_, variables, expected) in ((segmentation_model, segmenter), (detection_model, detector)):
        fast = build(fast_backbone, 3, (16, 16, 3))
        assert fast.conv is cpu.LAYERS["conv"] and fast.norm is cpu.LAYERS["norm"]  # decoder follows the backbone
        np.testing.assert_allclose(_apply(fast, variables, x16), expected, atol=1e-4)


def _train_grads(model, variables, x):
    """Gradients of sum(out ** 2) in training mode, and the batch statistics that step leaves."""

    def loss_fn(params):
        out, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(out**2), updates["batch_stats"]

    return jax.jit(jax.grad(loss_fn, has_aux=True))(variables["params"])


@pytest.fixture(scope="module")
def resnet8():
    # ResNet-20's code with one block per stage: the same layers and paths, a third of the ops, so
    # that compiling its gradient stays within a fast test.
    return get_model("resnet20", num_classes=10, kernels="reference", stage_sizes=(1, 1, 1))


@pytest.fixture(scope="module")
def small_segmenter(resnet8, x16):
    model = segmentation_model(resnet8, 3, (16, 16, 3))
    return model, _numpy_init(model, x16)


@pytest.fixture(scope="module")
def segmenter_step(small_segmenter, x16):
    return _train_grads(*small_segmenter, x16)


def _assert_gradients_reach_every_layer_but_the_backbone_head(grads):
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    norms = {jax.tree_util.keystr(path): float(jnp.abs(g).sum()) for path, g in leaves}
    head = {path: norm for path, norm in norms.items() if path.startswith("['backbone']['head']")}
    # The classifier's logits are discarded, so its head gets exactly nothing.
    assert head and all(norm == 0.0 for norm in head.values())
    rest = {path: norm for path, norm in norms.items() if path not in head}
    assert any(path.startswith("['decoder']") for path in rest) and any("stem_conv" in path for path in rest)
    assert all(norm > 0 for norm in rest.values()), [path for path, norm in rest.items() if norm == 0]


def test_segmenter_gradients_reach_backbone_and_decoder(segmenter_step):
    _assert_gradients_reach_every_layer_but_the_backbone_head(segmenter_step[0])


def test_detector_gradients_reach_backbone_decoder_and_heads(resnet8, x16):
    model = detection_model(resnet8, 3, (16, 16, 3))
    grads, _ = _train_grads(model, _numpy_init(model, x16), x16)
    _assert_gradients_reach_every_layer_but_the_backbone_head(grads)
    assert {"heatmap", "size", "offset"} <= set(grads)


def test_training_updates_backbone_and_decoder_batch_stats(small_segmenter, segmenter_step, x16):
    old, new = small_segmenter[1]["batch_stats"], segmenter_step[1]
    # BatchNorm(momentum=0.9) from mean 0: the new running mean is 0.1 * the batch mean of its input.
    stem = _apply_stem(small_segmenter[1], x16)
    np.testing.assert_allclose(
        new["backbone"]["stem_bn"]["mean"], 0.1 * stem.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6
    )
    assert not np.allclose(new["decoder"]["merge1_bn"]["var"], old["decoder"]["merge1_bn"]["var"])


def _apply_stem(variables, x):
    """ResNet-20's stem convolution (no bias) by hand from its kernel: the stem BN's input."""
    kernel = variables["params"]["backbone"]["stem_conv"]["kernel"]
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_centernet_heatmap_starts_at_the_prior_and_channels_come_in_order(x16):
    # flax's own init (not _numpy_init), on a tiny backbone so that compiling it stays cheap.
    backbone = _StridedConvs(depth=2)
    model = CenterNet(backbone, stage_layers(backbone, (16, 16, 3)), 3, decoder_width=4, head_width=4)
    variables, _ = _init(model, x16)
    params = dict(variables["params"])
    np.testing.assert_allclose(params["heatmap"]["bias"], np.log(0.1 / 0.9), atol=1e-6)  # -2.197
    np.testing.assert_allclose(params["size"]["bias"], 0.0)
    # Zero the 1x1 kernels: each head's channels are then its bias, which shows where they land.
    for name, bias in (("heatmap", -2.0), ("size", 5.0), ("offset", 7.0)):
        kernel, old_bias = params[name]["kernel"], params[name]["bias"]
        params[name] = {"kernel": jnp.zeros_like(kernel), "bias": jnp.full_like(old_bias, bias)}
    out = _apply(model, {**variables, "params": params}, x16)
    assert out.shape == (2, 4, 4, 7)
    np.testing.assert_allclose(out[..., :3], -2.0)
    np.testing.assert_allclose(out[..., 3:5], 5.0)
    np.testing.assert_allclose(out[..., 5:], 7.0)


def test_dense_heads_refuse_an_output_stride_that_does_not_divide_the_input(resnet20):
    model = BackboneUNet(resnet20, ("stage3_block3",), 2, output_stride=3)
    with pytest.raises(ValueError, match=r"output_stride=3 needs height and width divisible by 3; got 16x16"):
        _shapes(model, jnp.zeros((1, 16, 16, 3)))
