"""The smallest input a model accepts (traced from the model), its one-line check, and the boundary
checks of ``get_model(num_classes=...)`` and ``jaxvision summary --input-shape``."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvision
from jaxvision.cli import main as cli_main
from jaxvision import input_size
from jaxvision.models import MLP, get_model
from jaxvision.input_size import check_input_size, minimum_input_size
from jaxvision.models.registry import default_num_classes
from jaxvision.models.summary import summary

# --- an independent oracle: (W - F + 2P) / S + 1, layer by layer ---------------------------------


def _output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size - kernel + 2 * padding) // stride + 1


def _smallest_fitting_size(layers: list[tuple[int, ...]]) -> int:
    """The smallest W whose every map along the stack is >= 1, by trying W = 1, 2, ..."""
    for size in range(1, 1025):
        width = size
        for layer in layers:
            width = _output_size(width, *layer)
            if width < 1:
                break
        else:
            return size
    raise AssertionError("no size up to 1024 fits")


# (kernel, stride, padding) along one axis, read off the model files. "SAME" with stride 1 is
# padding (F - 1) / 2; a 2x2/2 max pool is (2, 2); flatten, dense layers, global or adaptive average
# pools (which accept any map of at least 1x1) add nothing.
_POOL = (2, 2)
_CONV3_SAME = (3, 1, 1)
_VGG_A = [_CONV3_SAME, _POOL, _CONV3_SAME, _POOL] + [_CONV3_SAME, _CONV3_SAME, _POOL] * 3
_ARCHITECTURES = {
    # lenet.py: conv 5x5 pad 2, pool 2, conv 5x5 VALID, pool 2.
    "lenet5": [(5, 1, 2), _POOL, (5, 1, 0), _POOL],
    # mnist_cnn.py: conv 5x5 SAME, pool 2, conv 3x3 SAME, pool 2.
    "mnist_cnn": [(5, 1, 2), _POOL, _CONV3_SAME, _POOL],
    # simple_cnn.py: conv 3x3 VALID, conv 3x3 VALID, pool 2.
    "simple_cnn": [(3, 1, 0), (3, 1, 0), _POOL],
    # mlp.py: flatten and dense layers only.
    "mlp": [],
    # resnet.py, CIFAR: stem conv 3x3 pad 1; three stages of basic blocks (3x3 pad 1 convs), the
    # first conv of stages 2 and 3 with stride 2; the zero-pad shortcut x[::2] keeps ceil(W / 2).
    "resnet20": [_CONV3_SAME] * 7 + [(3, 2, 1)] + [_CONV3_SAME] * 5 + [(3, 2, 1)] + [_CONV3_SAME] * 5,
    # vgg.py, configuration A: 3x3 pad 1 convs and five 2x2/2 pools; the CIFAR head flattens.
    "vgg11_cifar": _VGG_A,
    # The ImageNet head's adaptive average pool to 7x7 accepts any map of at least 1x1.
    "vgg11": _VGG_A,
    # alexnet.py: conv 11x11/4 pad 2, pool 3x3/2, conv 5x5 pad 2, pool 3x3/2, three 3x3 pad 1 convs,
    # pool 3x3/2, adaptive average pool to 6x6.
    "alexnet": [(11, 4, 2), (3, 2), (5, 1, 2), (3, 2), _CONV3_SAME, _CONV3_SAME, _CONV3_SAME, (3, 2)],
    # alexnet.py, small input: conv 3x3 pad 1, 2x2 pools.
    "alexnet_cifar": [_CONV3_SAME, _POOL, (5, 1, 2), _POOL, _CONV3_SAME, _CONV3_SAME, _CONV3_SAME, _POOL],
    # resnet.py, ImageNet: stem conv 7x7/2 pad 3, max pool 3x3/2 pad 1, then 3x3 pad 1 convs (stride 2
    # first in stages 2-4) beside 1x1/2 projection shortcuts.
    "resnet18": [(7, 2, 3), (3, 2, 1)] + [_CONV3_SAME] * 4 + ([(3, 2, 1)] + [_CONV3_SAME] * 3) * 3,
}


def test_oracle_agrees_with_the_model_files_at_their_documented_sizes():
    # The docstrings' maps: LeNet-5 on 28x28 ends 5x5, AlexNet on 224 ends 6x6, VGG on 32 ends 1x1.
    def final(layers, size):
        for layer in layers:
            size = _output_size(size, *layer)
        return size

    assert final(_ARCHITECTURES["lenet5"], 28) == 5
    assert final(_ARCHITECTURES["alexnet"], 224) == 6
    assert final(_ARCHITECTURES["vgg11"], 32) == 1
    assert final(_ARCHITECTURES["resnet18"], 224) == 7


@pytest.mark.parametrize("name", sorted(_ARCHITECTURES))
def test_minimum_input_size_equals_the_hand_computation(name):
    channels = 1 if name in ("lenet5", "mnist_cnn", "simple_cnn", "mlp") else 3
    expected = _smallest_fitting_size(_ARCHITECTURES[name])
    model = get_model(name, num_classes=default_num_classes(name))
    assert minimum_input_size(model, channels) == (expected, expected)


def test_hand_computed_minimums_are_the_known_ones():
    # So that a wrong architecture list above cannot make both sides agree on nonsense.
    assert {name: _smallest_fitting_size(layers) for name, layers in _ARCHITECTURES.items()} == {
        "lenet5": 12, "mnist_cnn": 4, "simple_cnn": 6, "mlp": 1, "resnet20": 1, "vgg11_cifar": 32,
        "vgg11": 32, "alexnet": 63, "alexnet_cifar": 8, "resnet18": 1,
    }


def test_every_registry_model_has_a_sensible_minimum():
    found = {
        name: minimum_input_size(get_model(name, num_classes=default_num_classes(name)), 3)[0]
        for name in jaxvision.list_models()
    }
    families = {
        name: 32 if name.startswith("vgg") else 1 if name.startswith(("resnet", "mlp", "perceptron")) else None
        for name in found
    }
    for name, size in found.items():
        if families[name] is not None:
            assert size == families[name], name
    assert (found["alexnet"], found["alexnet_2012"], found["alexnet_cifar"]) == (63, 63, 8)


def test_the_collapse_is_found_without_any_exception():
    # VGG-11 at 16x16: the fifth pool makes 1x1 maps 0x0 and the adaptive pool averages them into
    # NaNs; tracing raises nothing, so only the empty intermediate tells.
    model = get_model("vgg11", num_classes=10, hidden_size=8)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    image = jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(keys, x, train=False), image)
    assert shapes["params"]["fc1"]["kernel"].shape == (7 * 7 * 512, 8)
    assert input_size._probe(model, 16, 16, 1) is not None
    assert input_size._probe(model, 32, 32, 1) is None
    assert minimum_input_size(model, 1) == (32, 32)


def test_cpu_kernels_give_the_same_minimum_traced_as_they_are():
    # minimum_input_size traces flax's layers in place of the CPU ones; the CPU ones, traced
    # themselves, must agree for that to be right.
    for name, channels, expected in (("lenet5", 1, 12), ("simple_cnn", 1, 6)):
        model = get_model(name, kernels="cpu")
        assert input_size._with_reference_layers(model) != model
        assert input_size._search(model, channels) == expected


def test_minimum_is_memoised_per_model_and_channels(monkeypatch):
    model = get_model("mnist_cnn", num_classes=5)
    minimum_input_size(model, 2)
    probes = []
    original = input_size._probe
    monkeypatch.setattr(input_size, "_probe", lambda *args: probes.append(args) or original(*args))
    assert minimum_input_size(get_model("mnist_cnn", num_classes=5), 2) == (4, 4)
    assert probes == []
    minimum_input_size(model, 4)  # another channel count is another search
    assert probes


def test_a_model_that_cannot_be_hashed_is_searched_without_memoising():
    assert minimum_input_size(MLP(hidden_sizes=[4]), 1) == (1, 1)


def test_a_model_that_fits_no_size_is_reported_in_one_line():
    class Broken(nn.Module):
        @nn.compact
        def __call__(self, x, *, train=False):
            return nn.Dense(3)(x.reshape(x.shape[0], 7, -1))  # fails at every size

    with pytest.raises(ValueError, match=r"^Broken accepts no square input up to 1024x1024x1: .*\.$") as error:
        minimum_input_size(Broken(), 1)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("channels", [0, -1, 2.5, True])
def test_minimum_input_size_rejects_bad_channels(channels):
    with pytest.raises(ValueError, match=r"Invalid channels="):
        minimum_input_size(get_model("lenet5"), channels)


# --- check_input_size ----------------------------------------------------------------------------


def test_lenet5_on_8x8_digits_says_what_it_needs():
    with pytest.raises(ValueError) as error:
        check_input_size(get_model("lenet5"), "lenet5", (8, 8, 1))
    assert str(error.value) == "lenet5 needs inputs of at least 12x12; got 8x8. Pass --image-size 12 to resize."


def test_check_suggests_growing_only_the_short_side():
    with pytest.raises(ValueError, match=r"got 8x100\. Pass --image-size 12,100 to resize\.$"):
        check_input_size(get_model("lenet5"), "lenet5", (8, 100, 1))
    with pytest.raises(ValueError, match=r"got 100x11\. Pass --image-size 100,12 to resize\.$"):
        check_input_size(get_model("lenet5"), "lenet5", (100, 11, 1))
    with pytest.raises(ValueError, match=r"^vgg11 needs inputs of at least 32x32; got 31x31\. Use 32x32x3\.$"):
        check_input_size(get_model("vgg11"), "vgg11", (31, 31, 3), fix="Use {height}x{width}x{channels}.")


def test_check_accepts_the_minimum_and_numpy_sizes():
    check_input_size(get_model("lenet5"), "lenet5", (12, 12, 1))
    check_input_size(get_model("lenet5"), "lenet5", (np.int64(12), np.int64(12), np.int64(1)))
    check_input_size(get_model("mlp"), "mlp", (1, 1, 1))


@pytest.mark.parametrize("image_shape", [(8, 8), (8, 8, 1, 1), (8, 0, 1), (8.0, 8, 1), (True, 8, 1), "8,8,1"])
def test_check_rejects_a_malformed_image_shape(image_shape):
    with pytest.raises(ValueError, match=r"^Invalid image_shape=.*expected \(height, width, channels\)"):
        check_input_size(get_model("lenet5"), "lenet5", image_shape)


@pytest.fixture
def compilations():
    """Names of the compile events JAX records while the test runs."""
    events = []

    def listen(event, duration, **kwargs):
        if event.startswith("/jax/core/compile/") and "trace" not in event:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield events
    jax.monitoring.unregister_event_duration_listener(listen)


def test_check_compiles_nothing(compilations):
    # Models and channel counts no other test uses, so no cache can hide a compile.
    with pytest.raises(ValueError, match="needs inputs of at least 12x12"):
        check_input_size(get_model("lenet5", num_classes=7), "lenet5", (8, 8, 5))
    with pytest.raises(ValueError, match="needs inputs of at least 32x32"):
        check_input_size(get_model("vgg11_cifar", num_classes=7), "vgg11_cifar", (8, 8, 5))
    check_input_size(get_model("resnet18", num_classes=7), "resnet18", (8, 8, 5))
    assert compilations == []


def test_compilations_fixture_sees_a_compile(compilations):
    # The fixture above must be able to see what it guards against.
    jax.jit(lambda x: x * 3 + 1)(jnp.zeros((3, 7, 5)))
    assert compilations


# --- get_model(num_classes=...) ------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, 10.0, True, "10", None])
def test_get_model_rejects_a_bad_num_classes_in_one_line(num_classes):
    one_line = r"^Invalid num_classes=.*expected a positive integer.*num_classes=10\.$"
    with pytest.raises(ValueError, match=one_line) as error:
        get_model("lenet5", num_classes=num_classes)
    assert "\n" not in str(error.value)


def test_get_model_accepts_a_numpy_num_classes_as_an_int():
    model = get_model("lenet5", num_classes=np.int64(3))
    assert model.num_classes == 3 and type(model.num_classes) is int


# --- jaxvision summary ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "input_shape, message",
    [
        ("224,224", "error: Invalid --input-shape 224,224: expected H,W,C (3 sizes, got 2), e.g. 224,224,3."),
        ("224,224,3,1", "error: Invalid --input-shape 224,224,3,1: expected H,W,C (3 sizes, got 4), e.g. 224,224,3."),
        ("5,5,1", "error: vgg16 needs inputs of at least 32x32; got 5x5. Pass --input-shape 32,32,1 or larger."),
        ("31,64,3", "error: vgg16 needs inputs of at least 32x32; got 31x64. Pass --input-shape 32,64,3 or larger."),
    ],
)
def test_cli_summary_refuses_bad_shapes_in_one_line(capsys, input_shape, message):
    assert cli_main.main(["summary", "--model", "vgg16", "--input-shape", input_shape]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"jaxvision summary: {message}\n"


def test_cli_summary_refuses_lenet5_on_digits_and_runs_at_its_minimum(capsys):
    assert cli_main.main(["summary", "--model", "lenet5", "--input-shape", "8,8,1"]) == 2
    assert capsys.readouterr().err == (
        "jaxvision summary: error: lenet5 needs inputs of at least 12x12; got 8x8. "
        "Pass --input-shape 12,12,1 or larger.\n"
    )
    assert cli_main.main(["summary", "--model", "lenet5", "--input-shape", "12,12,1"]) == 0
    assert "(1, 2, 2, 16)" in capsys.readouterr().out  # Conv_1 on the 6x6 pooled map: 6 - 5 + 1


def test_summary_function_refuses_a_collapsing_image():
    message = r"^VGG needs inputs of at least 32x32; got 16x16\. Pass an input_shape of at least \(32, 32, 3\)\.$"
    with pytest.raises(ValueError, match=message):
        summary(get_model("vgg11"), (16, 16, 3))
    assert summary(get_model("mlp"), (784,)).output_shape == (1, 10)  # not an image: traced as it is
