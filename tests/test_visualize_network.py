"""Pictures of what a network learned: filters, feature maps, saliency, Grad-CAM, curves, misclassified grids."""

import json
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import jaxvision
from jaxvision import visualize
from jaxvision.cli.main import main
from jaxvision.training_log import TrainingLog
from jaxvision.visualize import curves as curves_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class TinyCNN(nn.Module):
    """4x4xC -> conv1 3x3 SAME (2) -> relu -> avg pool 2 -> conv2 1x1 (3) -> flatten -> head (4 classes).

    conv2 has no activation after it, so the head's gradient with respect to its output is the head's
    weights, and Grad-CAM on it has a closed form a NumPy oracle can follow.
    """

    first_name: str = "conv1"

    @nn.compact
    def __call__(self, x, *, train=False):
        del train
        x = nn.relu(nn.Conv(2, (3, 3), padding="SAME", name=self.first_name)(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = nn.Conv(3, (1, 1), name="a_conv2")(x)  # named to sort before the first: order must come from calls
        return nn.Dense(4, name="head")(x.reshape(x.shape[0], -1))


def _tiny_cnn(channels=1, *, seed=0, first_name="conv1"):
    """The model and hand-set variables drawn from NumPy (not flax's initialisers)."""
    rng = np.random.default_rng(seed)

    def draw(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    params = {
        first_name: {"kernel": draw(3, 3, channels, 2), "bias": draw(2) * 0.1},
        "a_conv2": {"kernel": draw(1, 1, 2, 3), "bias": draw(3) * 0.1},
        "head": {"kernel": draw(12, 4), "bias": draw(4) * 0.1},
    }
    return TinyCNN(first_name=first_name), {"params": params}


def _numpy_conv_same_3x3(image, kernel, bias):
    """Cross-correlation (deep learning's convolution), zero padding 1: [H, W, C] -> [H, W, K]."""
    height, width, _ = image.shape
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((height, width, kernel.shape[-1]))
    for i in range(height):
        for j in range(width):
            out[i, j] = np.einsum("abc,abck->k", padded[i:i + 3, j:j + 3], kernel)
    return out + bias


def _numpy_forward(params, image):
    """TinyCNN in NumPy: (conv1 output, conv2 output, logits)."""
    p = {name: {key: np.asarray(value, np.float64) for key, value in layer.items()} for name, layer in params.items()}
    first = next(name for name in p if name not in ("a_conv2", "head"))
    a1 = _numpy_conv_same_3x3(np.asarray(image, np.float64), p[first]["kernel"], p[first]["bias"])
    r1 = np.maximum(a1, 0)
    pooled = r1.reshape(2, 2, 2, 2, -1).mean(axis=(1, 3))  # [2, 2, 2]: 2x2 windows of the 4x4 map
    a2 = pooled @ p["a_conv2"]["kernel"][0, 0] + p["a_conv2"]["bias"]
    logits = a2.reshape(-1) @ p["head"]["kernel"] + p["head"]["bias"]
    return a1, a2, logits


def _numpy_bilinear(values, size):
    """Bilinear resize with half-pixel centres and clamped edges (torch's align_corners=False), by hand."""
    def weights(out_size, in_size):
        position = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        matrix = np.zeros((out_size, in_size))
        matrix[np.arange(out_size), low] += 1 - (position - low)
        matrix[np.arange(out_size), high] += position - low
        return matrix

    return weights(size[0], values.shape[0]) @ values @ weights(size[1], values.shape[1]).T


def _cam_from(activation, gradient):
    # Grad-CAM's feature maps are rectified (relu(z)); the channel weights are the mean gradient at z.
    cam = np.maximum(np.tensordot(np.maximum(activation, 0), gradient.mean(axis=(0, 1)), axes=([-1], [0])), 0)
    return cam


def _png_pixels(path):
    """The PNG at ``path`` as a float array (checking it is a PNG)."""
    with open(path, "rb") as file:
        assert file.read(8) == PNG_MAGIC
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Filters


def test_conv_filters_are_the_first_called_convolution_kernel_transposed():
    # "z_first" sorts after "a_conv2": the first layer must be found by call order, not by name.
    model, variables = _tiny_cnn(channels=3, first_name="z_first")
    filters = visualize.first_layer_filters(model, variables, input_shape=(4, 4, 3))
    kernel = np.asarray(variables["params"]["z_first"]["kernel"])  # HWIO [3, 3, 3, 2]
    assert filters.shape == (2, 3, 3, 3)
    for k in range(2):
        for i, j, c in np.ndindex(3, 3, 3):
            assert filters[k, i, j, c] == kernel[i, j, c, k]


@pytest.fixture(scope="module")
def lenet_variables():
    """LeNet-5's initial variables; the CPU kernels' model has the same parameters."""
    model = jaxvision.get_model("lenet5", num_classes=10)
    return jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))))()


def test_lenet5_filters_on_reference_and_cpu_kernels(lenet_variables):
    variables = lenet_variables
    for kernels in ("reference", "cpu"):
        model = jaxvision.get_model("lenet5", num_classes=10, kernels=kernels)
        filters = visualize.first_layer_filters(model, variables, input_shape=(28, 28, 1))
        np.testing.assert_array_equal(filters, np.moveaxis(np.asarray(variables["params"]["Conv_0"]["kernel"]), -1, 0))


def test_perceptron_templates_are_its_weights_and_score_like_the_model():
    model = jaxvision.get_model("perceptron", num_classes=3)
    shape = (4, 5, 2)
    variables = model.init(jax.random.key(1), jnp.zeros((1, *shape)))
    templates = visualize.first_layer_filters(model, variables, input_shape=shape)
    weights = np.asarray(variables["params"]["Dense_0"]["kernel"])  # [40, 3]
    assert templates.shape == (3, *shape)
    for c in range(3):
        for h, w, ch in np.ndindex(*shape):
            assert templates[c, h, w, ch] == weights[np.ravel_multi_index((h, w, ch), shape), c]
    # What a template means: the class score is the image's dot product with it, plus the bias.
    image = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    scores = np.asarray(model.apply(variables, image[None]))[0]
    bias = np.asarray(variables["params"]["Dense_0"]["bias"])
    np.testing.assert_allclose((templates * image).sum(axis=(1, 2, 3)) + bias, scores, rtol=1e-5, atol=1e-5)


def test_mlp_filters_are_the_hidden_units_weights():
    model = jaxvision.get_model("mlp", num_classes=10, hidden_sizes=(7, 5))
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    units = visualize.first_layer_filters(model, variables, input_shape=(8, 8, 1))
    assert units.shape == (7, 8, 8, 1)
    np.testing.assert_array_equal(units[3].reshape(-1), np.asarray(variables["params"]["Dense_0"]["kernel"])[:, 3])


def test_plot_filters_scales_each_filter_to_unit_range(tmp_path):
    filters = np.random.default_rng(3).normal(size=(5, 3, 3, 3)).astype(np.float32) * np.arange(1, 6)[:, None, None, None]
    shown = visualize.plot_filters(filters, str(tmp_path / "filters.png"))
    for k in range(5):
        low, high = filters[k].min(), filters[k].max()
        np.testing.assert_allclose(shown[k], (filters[k] - low) / (high - low), rtol=1e-6, atol=1e-6)
    assert _png_pixels(tmp_path / "filters.png").std() > 10


# ---------------------------------------------------------------------------------------------------------------
# Feature maps


def test_feature_maps_equal_a_manual_convolution_in_call_order(lenet_variables):
    image = jnp.asarray(np.random.default_rng(4).normal(size=(28, 28, 1)), jnp.float32)
    variables = lenet_variables
    for kernels in ("reference", "cpu"):
        model = jaxvision.get_model("lenet5", num_classes=10, kernels=kernels)
        maps = visualize.feature_maps(model, variables, image)
        assert list(maps) == ["Conv_0", "Conv_1"]
        assert maps["Conv_0"].shape == (28, 28, 6) and maps["Conv_1"].shape == (10, 10, 16)
        manual = nn.Conv(6, (5, 5), padding=2).apply({"params": variables["params"]["Conv_0"]}, image[None])[0]
        np.testing.assert_allclose(maps["Conv_0"], manual, rtol=1e-5, atol=1e-5)


def test_feature_maps_of_a_tiny_cnn_equal_numpy():
    model, variables = _tiny_cnn()
    image = np.random.default_rng(5).normal(size=(4, 4, 1)).astype(np.float32)
    maps = visualize.feature_maps(model, variables, image)
    assert list(maps) == ["conv1", "a_conv2"]
    a1, a2, _ = _numpy_forward(variables["params"], image)
    np.testing.assert_allclose(maps["conv1"], a1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(maps["a_conv2"], a2, rtol=1e-5, atol=1e-5)


def test_feature_maps_selects_layers_and_names_the_valid_ones():
    model, variables = _tiny_cnn()
    image = np.zeros((4, 4, 1), np.float32)
    assert list(visualize.feature_maps(model, variables, image, layers=["a_conv2"])) == ["a_conv2"]
    with pytest.raises(ValueError, match=r"Unknown layer 'conv9'.*one of conv1, a_conv2") as error:
        visualize.feature_maps(model, variables, image, layers=["conv9"])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="expected one \\[height, width, channels\\] image"):
        visualize.feature_maps(model, variables, image[None])


class HandConv(nn.Module):
    """A convolution that is not ``nn.Conv``: found by its rank-4 ``kernel``, as a backend's own would be."""

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], 2))
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


class HandConvNet(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.relu(HandConv(name="hand")(x))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_feature_maps_find_any_module_with_a_rank_4_kernel():
    model = HandConvNet()
    image = jnp.asarray(np.random.default_rng(15).normal(size=(5, 5, 2)), jnp.float32)
    variables = model.init(jax.random.key(0), image[None])
    maps = visualize.feature_maps(model, variables, image)
    assert list(maps) == ["hand"]
    np.testing.assert_allclose(maps["hand"], HandConv().apply({"params": variables["params"]["hand"]}, image[None])[0],
                               rtol=1e-6)
    assert visualize.first_layer_filters(model, variables, input_shape=(5, 5, 2)).shape == (2, 3, 3, 2)


def test_plot_feature_maps_writes_one_section_per_layer(tmp_path):
    model, variables = _tiny_cnn()
    maps = visualize.feature_maps(model, variables, np.random.default_rng(6).normal(size=(4, 4, 1)))
    visualize.plot_feature_maps(maps, str(tmp_path / "features.png"))
    assert _png_pixels(tmp_path / "features.png").std() > 10


# ---------------------------------------------------------------------------------------------------------------
# Saliency and Grad-CAM


def _lax_logits(params, images):
    """TinyCNN written again with lax, independent of the module."""
    dimensions = ("NHWC", "HWIO", "NHWC")
    x = jax.lax.conv_general_dilated(images, params["conv1"]["kernel"], (1, 1), "SAME", dimension_numbers=dimensions)
    x = jax.nn.relu(x + params["conv1"]["bias"])
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))
    x = jnp.einsum("nhwc,ck->nhwk", x, params["a_conv2"]["kernel"][0, 0]) + params["a_conv2"]["bias"]
    return x.reshape(batch, -1) @ params["head"]["kernel"] + params["head"]["bias"]


def test_saliency_equals_the_input_gradient_of_the_logit():
    model, variables = _tiny_cnn(channels=3, seed=7)
    image = jnp.asarray(np.random.default_rng(8).normal(size=(4, 4, 3)), jnp.float32)
    logits = _lax_logits(variables["params"], image[None])[0]
    for target in (None, 0, 3):
        expected_target = int(jnp.argmax(logits)) if target is None else target
        gradient = jax.grad(lambda x: _lax_logits(variables["params"], x[None])[0, expected_target])(image)
        expected = np.abs(np.asarray(gradient)).max(axis=-1)
        result = visualize.saliency(model, variables, image, target=target)
        assert result.shape == (4, 4) and result.max() == pytest.approx(1.0)
        np.testing.assert_allclose(result, expected / expected.max(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"Invalid target 4: expected a class index in \[0, 4\)"):
        visualize.saliency(model, variables, image, target=4)


def test_grad_cam_on_the_last_convolution_equals_numpy():
    model, variables = _tiny_cnn(seed=9)
    head = np.asarray(variables["params"]["head"]["kernel"], np.float64)
    checked = 0
    for seed in range(10, 30):  # images until a few (image, class) pairs have positive evidence
        image = np.random.default_rng(seed).normal(size=(4, 4, 1)).astype(np.float32)
        _, a2, logits = _numpy_forward(variables["params"], image)
        for target in range(4):
            # No activation after conv2: d logit / d A2 is the head's column, laid out as the flatten did.
            cam = _cam_from(a2, head[:, target].reshape(2, 2, 3))
            if cam.max() <= 0:
                continue  # all negative evidence: the map is zeros (checked below)
            expected = _numpy_bilinear(cam, (4, 4))
            result = visualize.grad_cam(model, variables, image, target=target)  # default layer: the last called
            assert result.shape == (4, 4)
            np.testing.assert_allclose(result, expected / expected.max(), rtol=1e-5, atol=1e-6)
            checked += 1
        if checked >= 3:
            break
    assert checked >= 3
    predicted = int(np.argmax(logits))
    np.testing.assert_array_equal(visualize.grad_cam(model, variables, image),
                                  visualize.grad_cam(model, variables, image, target=predicted))


def test_grad_cam_on_the_first_convolution_equals_numpy_backpropagation():
    model, variables = _tiny_cnn(seed=11)
    image = np.random.default_rng(12).normal(size=(4, 4, 1)).astype(np.float32)
    a1, _, _ = _numpy_forward(variables["params"], image)
    head = np.asarray(variables["params"]["head"]["kernel"], np.float64)
    conv2 = np.asarray(variables["params"]["a_conv2"]["kernel"], np.float64)[0, 0]  # [2, 3]
    checked = 0
    for target in range(4):
        pooled_gradient = head[:, target].reshape(2, 2, 3) @ conv2.T  # [2, 2, 2]
        # Average pooling spreads each gradient over its 2x2 window, a quarter each; relu passes it where a1 > 0.
        gradient = np.repeat(np.repeat(pooled_gradient, 2, axis=0), 2, axis=1) / 4 * (a1 > 0)
        cam = _cam_from(a1, gradient)
        if cam.max() <= 0:
            continue
        result = visualize.grad_cam(model, variables, image, target=target, layer="conv1")
        np.testing.assert_allclose(result, cam / cam.max(), rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked >= 1


def test_grad_cam_rejects_unknown_layers_and_models_without_convolutions():
    model, variables = _tiny_cnn()
    image = np.zeros((4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"Unknown layer 'fc'.*one of conv1, a_conv2"):
        visualize.grad_cam(model, variables, image, layer="fc")
    mlp = jaxvision.get_model("mlp", num_classes=3, hidden_sizes=(4,))
    mlp_variables = mlp.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="no convolution layers"):
        visualize.grad_cam(mlp, mlp_variables, image)


def test_plot_saliency_writes_three_panels(tmp_path):
    image = (np.random.default_rng(13).random((4, 4, 1)) * 255).astype(np.uint8)
    ramp = np.linspace(0, 1, 16).reshape(4, 4)
    visualize.plot_saliency(image, ramp, ramp[::-1], str(tmp_path / "saliency.png"), label="cat (0.90)")
    pixels = _png_pixels(tmp_path / "saliency.png")
    assert pixels.shape[1] > 2 * pixels.shape[0] and pixels.std() > 10
    with pytest.raises(ValueError, match="Invalid cam of shape \\(2, 2\\)"):
        visualize.plot_saliency(image, ramp, np.zeros((2, 2)), str(tmp_path / "bad.png"), label="x")
    assert not (tmp_path / "bad.png").exists()


# ---------------------------------------------------------------------------------------------------------------
# Learning curves


def _write_log(directory, *, steps_per_epoch=4, epochs=3):
    with TrainingLog(str(directory), tensorboard=False) as log:
        for epoch in range(1, epochs + 1):
            for step in range((epoch - 1) * steps_per_epoch + 2, epoch * steps_per_epoch + 1, 2):
                log.write({"step": step, "epoch": epoch, "loss": 1.0 / step, "accuracy": step / 20})
            log.write({"step": epoch * steps_per_epoch, "epoch": epoch, "train_loss": 1.0 / epoch,
                       "train_accuracy": 0.5 + epoch / 10, "val_loss": float("nan") if epoch == 2 else 1.5 / epoch,
                       "val_accuracy": 0.4 + epoch / 10, "seconds": 1.0}, kind="epoch")


def test_learning_curves_put_steps_on_the_epoch_axis(tmp_path):
    _write_log(tmp_path)
    curves = visualize.learning_curves(str(tmp_path))
    np.testing.assert_array_equal(curves["epoch"], [1, 2, 3])
    np.testing.assert_array_equal(curves["step"], [2, 4, 6, 8, 10, 12])
    np.testing.assert_allclose(curves["step_epoch"], [0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    np.testing.assert_allclose(curves["step_loss"], 1.0 / curves["step"])
    np.testing.assert_allclose(curves["train_accuracy"], [0.6, 0.7, 0.8])
    assert np.isnan(curves["val_loss"][1]) and curves["val_loss"][2] == pytest.approx(0.5)


def test_learning_curves_fall_back_to_history_json(tmp_path):
    history = {"train_loss": [2.0, 1.0], "train_accuracy": [0.5, 0.7], "val_loss": [2.5, None], "val_accuracy": [0.4, 0.6]}
    (tmp_path / "history.json").write_text(json.dumps(history))
    curves = visualize.learning_curves(str(tmp_path))
    np.testing.assert_array_equal(curves["epoch"], [1, 2])
    assert curves["val_loss"][0] == 2.5 and np.isnan(curves["val_loss"][1]) and curves["step"].size == 0
    with pytest.raises(ValueError, match="has no metrics.jsonl nor history.json"):
        visualize.learning_curves(str(tmp_path / "elsewhere"))


@pytest.mark.parametrize("epochs, steps_per_epoch", [(3, 4), (1, 40)])
def test_learning_curve_ticks_are_whole_epochs(tmp_path, monkeypatch, epochs, steps_per_epoch):
    # One epoch of many steps is the case where matplotlib's integer locator gives up and shows 0.15, 0.30, ...
    _write_log(tmp_path, epochs=epochs, steps_per_epoch=steps_per_epoch)
    figures = []
    original = curves_module.save_figure
    monkeypatch.setattr(curves_module, "save_figure", lambda figure, path: (figures.append(figure), original(figure, path)))
    visualize.plot_learning_curves(str(tmp_path), str(tmp_path / "curves.png"))
    for axis in figures[0].axes:
        low, high = axis.get_xlim()
        ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks), ticks
        assert axis.get_xlabel() == "epoch"
    assert _png_pixels(tmp_path / "curves.png").std() > 10


# ---------------------------------------------------------------------------------------------------------------
# Misclassified grid


def test_plot_misclassified_titles_each_image(tmp_path):
    images = (np.random.default_rng(14).random((3, 8, 8, 3)) * 255).astype(np.uint8)
    titles = visualize.plot_misclassified(images, ["cat", "dog", "3"], ["dog", "cat", "8"], [0.974, 0.5, 0.123],
                                          str(tmp_path / "wrong.png"), columns=2)
    assert titles == ["cat -> dog (0.97)", "dog -> cat (0.50)", "3 -> 8 (0.12)"]
    assert _png_pixels(tmp_path / "wrong.png").std() > 10
    visualize.plot_misclassified(images[:0], [], [], [], str(tmp_path / "none.png"))
    assert (tmp_path / "none.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match=r"Invalid probabilities of length 2: expected one per image \(3\)"):
        visualize.plot_misclassified(images, ["a"] * 3, ["b"] * 3, [0.5, 0.5], str(tmp_path / "bad.png"))
    with pytest.raises(ValueError, match="expected \\[0, 1\\]"):
        visualize.plot_misclassified(images.astype(np.float32), ["a"] * 3, ["b"] * 3, [0.5] * 3, str(tmp_path / "bad.png"))
    assert not (tmp_path / "bad.png").exists()


# ---------------------------------------------------------------------------------------------------------------
# Writing


def test_a_failed_save_leaves_no_file_and_keeps_the_old_one(tmp_path):
    from jaxvision.visualize.grids import pyplot, save_figure

    path = tmp_path / "picture.png"
    path.write_bytes(b"old")
    figure = pyplot().figure()

    def half_then_fail(name, **kwargs):
        with open(name, "wb") as file:
            file.write(PNG_MAGIC)  # the start of a picture, as a kill mid-write would leave it
        raise OSError("disk full")

    figure.savefig = half_then_fail
    with pytest.raises(OSError, match="disk full"):
        save_figure(figure, str(path))
    assert path.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["picture.png"]


# ---------------------------------------------------------------------------------------------------------------
# Command line


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """A LeNet-5 trained for one epoch on scikit-learn's digits at 28x28, and a digit PNG."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("visualize_cli")
    run_dir = root / "run"
    assert main(["train", "--model", "lenet5", "--dataset", "digits", "--image-size", "28", "--epochs", "1",
                 "--log-every", "5", "--kernels", "reference", "--no-progress", "--output-dir", str(run_dir)]) == 0
    digit = (load_digits().images[0] * 255 / 16).astype(np.uint8)
    Image.fromarray(digit).save(root / "digit.png")
    return run_dir, root / "digit.png"


def test_cli_writes_each_picture_and_prints_its_path(lenet_run, capsys):
    run_dir, digit = lenet_run
    for picture, extra in (("filters", []), ("features", [str(digit)]), ("saliency", [str(digit), "--target", "3"]),
                           ("curves", [])):
        assert main(["visualize", str(run_dir), picture, *extra]) == 0
        path = os.path.join(str(run_dir), "visualize", f"{picture}.png")
        assert capsys.readouterr().out.strip() == f"wrote {path}"
        assert _png_pixels(path).std() > 10
    output = lenet_run[1].parent / "mine.png"
    assert main(["visualize", str(run_dir), "features", str(digit), "--layers", "Conv_1", "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("argv, message", [
    (["{missing}", "filters"], "is not a jaxvision run"),
    (["{missing}", "curves"], "is not a jaxvision run"),
    (["{run}", "features", "{text}"], "Cannot decode image .*notes.png"),
    (["{run}", "saliency", "{nowhere}"], "does not exist"),
    (["{run}", "features", "{digit}", "--layers", "Conv_0,conv9"], "Unknown layer 'conv9'.*Conv_0, Conv_1"),
    (["{run}", "saliency", "{digit}", "--layer", "head"], "Unknown layer 'head'"),
    (["{run}", "saliency", "{digit}", "--target", "cat"], "Unknown --target class 'cat'"),
    (["{run}", "filters", "--output", "{root}/filters.jpg"], "expected a .png file name"),
])
def test_cli_bad_input_is_one_line_exit_2_and_no_picture(lenet_run, capsys, tmp_path, argv, message):
    run_dir, digit = lenet_run
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    names = {"missing": str(tmp_path / "no_run"), "run": str(run_dir), "text": str(text), "digit": str(digit),
             "nowhere": str(tmp_path / "gone.png"), "root": str(tmp_path)}
    pictures = run_dir / "visualize"

    def written():  # name -> modification time: a picture rewritten in place counts too
        return {path.name: path.stat().st_mtime_ns for path in pictures.iterdir()} if pictures.exists() else {}

    before = written()
    assert main(["visualize", *[part.format(**names) for part in argv]]) == 2
    error = capsys.readouterr().err
    assert error.startswith("jaxvision visualize: error: ") and error.count("\n") == 1
    assert re.search(message, error)
    assert written() == before
    assert not list(tmp_path.glob("*.jpg")) and not list(tmp_path.glob(".*tmp"))


def test_cli_checks_names_before_running_the_model(lenet_run, capsys, monkeypatch):
    from jaxvision.run_record import Run

    def ran(*args, **kwargs):
        raise AssertionError("the model ran before the arguments were checked")

    monkeypatch.setattr(Run, "predict", ran)
    monkeypatch.setattr(Run, "logits", ran)
    run_dir, digit = lenet_run
    for extra in (["--layer", "Dense_0"], ["--target", "ten"]):
        assert main(["visualize", str(run_dir), "saliency", str(digit), *extra]) == 2
        assert "error: Unknown" in capsys.readouterr().err
