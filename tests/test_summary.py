"""Model summaries (per-layer table, totals, FLOPs), conv arithmetic and ``jaxvision summary``."""

import pytest

from jaxvision.cli import main as cli_main
from jaxvision.cli import summary as summary_command
from jaxvision.models import get_model
from jaxvision.models.conv_arithmetic import LayerSpec, conv_output_size, output_size, receptive_field
from jaxvision.models.summary import summary, xla_flops

# --- conv arithmetic: (W - F + 2P) / S + 1 --------------------------------------------------------


def test_zoo_conv_output_size_matches_hand_computations():
    assert conv_output_size(32, 5) == 28  # CS231n: 32x32x3 input, 5x5 filters, stride 1, no padding.
    assert conv_output_size(7, 3) == 5
    assert conv_output_size(7, 3, padding=1) == 7  # "same" padding for a 3x3 filter.
    assert conv_output_size(7, 3, stride=2) == 3
    assert conv_output_size(7, 3, stride=3) == 2  # (7 - 3) / 3 + 1 is not whole: the floor.
    assert conv_output_size(7, 3, dilation=2) == 3  # a dilated 3x3 spans 5 inputs.
    assert conv_output_size(224, 11, stride=4, padding=2) == 55  # AlexNet's conv1.
    assert conv_output_size(224, 7, stride=2, padding=3) == 112  # ResNet's stem.


def test_zoo_output_size_of_alexnet_features_is_6():
    alexnet = [(11, 4, 2), (3, 2), (5, 1, 2), (3, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2)]
    assert output_size(224, alexnet) == 6


def test_zoo_receptive_field_of_stacks():
    assert receptive_field([(3, 1)] * 2) == 5  # two 3x3 convs see as far as one 5x5 (VGG, Sec. 2.3)
    assert receptive_field([(3, 1)] * 3) == 7
    assert receptive_field([(11, 4), (3, 2)]) == 19  # AlexNet conv1 + pool: 11 + (3 - 1) * 4
    assert receptive_field([LayerSpec(3, dilation=2)]) == 5
    assert receptive_field([(2, 2)] * 3) == 8  # three non-overlapping 2x2 pools
    assert receptive_field([]) == 1


def test_zoo_conv_arithmetic_errors_say_how_to_fix():
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match="stride=0"):
        conv_output_size(8, 3, stride=0)
    with pytest.raises(ValueError, match="kernel_size"):
        receptive_field([(3, 1, 0, 1, 9)])


# --- summary -------------------------------------------------------------------------------------

GOLDEN = {
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "alexnet": 61_100_840,
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_zoo_summary_totals_equal_golden_parameter_counts(name):
    result = summary(get_model(name, num_classes=1000), (224, 224, 3))
    assert result.total_parameters == GOLDEN[name]
    assert sum(row.parameters for row in result.layers) == GOLDEN[name]
    assert result.output_shape == (1, 1000)
    assert f"Total parameters: {GOLDEN[name]:,}" in str(result)


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
def test_zoo_summary_rows_of_lenet5_by_hand(kernels):
    result = summary(get_model("lenet5", kernels=kernels), (28, 28, 1), batch_size=2)
    rows = {row.name: row for row in result.layers}
    assert rows["Conv_0"].output_shape == (2, 28, 28, 6)  # the convolution's own map; ReLU and pooling follow it
    assert rows["Conv_0"].parameters == 5 * 5 * 1 * 6 + 6
    assert rows["Conv_0"].flops == 2 * 28 * 28 * 6 * 5 * 5 * 1
    assert rows["Conv_1"].output_shape == (2, 10, 10, 16)  # on the pooled 14x14 map
    assert rows["Conv_1"].flops == 2 * 10 * 10 * 16 * 5 * 5 * 6
    assert rows["Dense_0"].flops == 2 * 400 * 120
    assert result.total_parameters == 61_706
    assert result.non_trainable == {}


def test_zoo_summary_shapes_agree_with_conv_arithmetic():
    rows = {row.name: row for row in summary(get_model("alexnet", num_classes=1000), (224, 224, 3)).layers}
    assert rows["conv1"].output_shape == (1, 55, 55, 64)
    assert rows["conv2"].output_shape[1] == output_size(224, [(11, 4, 2), (3, 2), (5, 1, 2)]) == 27
    assert rows["conv3"].output_shape[1] == 13


def test_zoo_summary_flops_match_the_resnet_paper():
    # He et al. (2016), Table 1, in multiply-adds: ResNet-18 1.8e9, ResNet-34 3.6e9, VGG-19 19.6e9.
    for name, multiply_adds in (("resnet18", 1.8e9), ("resnet34", 3.6e9), ("vgg19", 19.6e9)):
        flops = summary(get_model(name, num_classes=1000), (224, 224, 3)).total_flops
        assert flops / 2 == pytest.approx(multiply_adds, rel=0.03), name


def test_zoo_summary_lists_batch_norm_statistics_as_non_trainable():
    result = summary(get_model("resnet20"), (32, 32, 3))
    assert result.total_parameters == 269_722
    assert result.non_trainable["batch_stats"] == 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    assert "Non-trainable batch_stats: 1,376" in str(result)


@pytest.mark.parametrize("name, input_shape", [("lenet5", (28, 28, 1)), ("resnet20", (32, 32, 3))])
def test_zoo_summary_flops_agree_with_xla_cost_analysis(name, input_shape):
    ours = summary(get_model(name), input_shape).total_flops
    theirs = xla_flops(get_model(name), input_shape)
    # XLA also counts element-wise work, and may skip multiplications by padding zeros.
    assert 0.5 < ours / theirs < 2.0


def test_zoo_summary_rejects_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        summary(get_model("lenet5"), (28, 0, 1))


# --- jaxvision summary ---------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    if summary_command not in cli_main._COMMANDS:  # until cli/main.py registers it
        monkeypatch.setattr(cli_main, "_COMMANDS", (*cli_main._COMMANDS, summary_command))
    return cli_main.main


def test_zoo_cli_summary_vgg16_prints_golden_parameter_count(cli, capsys):
    assert cli(["summary", "--model", "vgg16", "--input-shape", "224,224,3"]) == 0
    out = capsys.readouterr().out
    assert "Total parameters: 138,357,544" in out
    assert "conv13" in out and "(1, 1000)" in out


def test_zoo_cli_summary_num_classes_and_errors(cli, capsys):
    assert cli(["summary", "--model", "resnet20", "--input-shape", "32,32,3", "--num-classes", "100"]) == 0
    assert "Total parameters: 275,572" in capsys.readouterr().out  # 269,722 + 64 * 90 + 90
    assert cli(["summary", "--model", "resnet19", "--input-shape", "32,32,3"]) == 2
    assert "Unknown model 'resnet19'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        cli(["summary", "--model", "vgg16", "--input-shape", "224,x,3"])
    assert error.value.code == 2
