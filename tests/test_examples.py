"""The examples in examples/, each run small, checked against the seed lectures' numbers and hand computations."""

import doctest
import importlib.util
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import jaxvision
from jaxvision.cli.main import main as cli_main
from jaxvision.models import conv_output_size

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def example(name):
    """The example script ``name`` as a module (not run as __main__), for its functions and doctests."""
    spec = importlib.util.spec_from_file_location(f"example_{name.removesuffix('.py')}", os.path.join(EXAMPLES, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path, *, min_width=300):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width, (image.format, image.size)


# Seed numbers that are not an example's: the arithmetic itself.


def test_seed_output_size_32_minus_5_over_1_plus_1_is_28():
    assert conv_output_size(32, 5, stride=1) == (32 - 5) // 1 + 1 == 28


def test_seed_mlp_3_4_2_has_26_parameters_and_3_4_4_1_has_41():
    def count(model):
        return sum(leaf.size for leaf in jax.tree.leaves(model.init(jax.random.key(0), jnp.zeros((1, 3)))))

    # (3*4 + 4) + (4*2 + 2) = 26; (3*4 + 4) + (4*4 + 4) + (4*1 + 1) = 41.
    assert count(jaxvision.get_model("mlp", num_classes=2, hidden_sizes=(4,))) == 26
    assert count(jaxvision.get_model("mlp", num_classes=1, hidden_sizes=(4, 4))) == 41


# gradient_descent.py


def test_gradient_descent_doctest_seed_update_minus_2_minus_0_01_times_minus_36_is_minus_1_64():
    module = example("gradient_descent.py")
    failed, attempted = doctest.testmod(module)
    assert attempted >= 2 and failed == 0
    assert module.update(-2.0, -36.0, learning_rate=0.01) == pytest.approx(-1.64)


def test_gradient_descent_learning_rates_too_small_right_too_large(capsys):
    module = example("gradient_descent.py")
    results = module.main(steps=8)
    answer = 1 / 1.609344
    too_small, right, too_large = (results[rate] for rate in module.LEARNING_RATES)
    assert len(right) == 9 and right[0] == 0.5
    assert abs(right[-1] - answer) < 1e-4
    assert 0.05 < abs(too_small[-1] - answer) < abs(too_small[0] - answer)  # still crawling towards it
    errors = [abs(guess - answer) for guess in too_large]
    assert all(later > earlier for earlier, later in zip(errors, errors[1:]))  # overshoots further every step
    assert np.sign(too_large[1] - answer) != np.sign(too_large[2] - answer)
    out = capsys.readouterr().out
    assert "(too small" in out and "(right" in out and "(too large" in out and "diverged" in out


# xor_mlp.py


def test_xor_example_draws_the_surfaces_it_learned(tmp_path):
    module = example("xor_mlp.py")
    output = tmp_path / "surfaces" / "xor.png"
    results = module.main(steps=400, output=str(output))
    assert results["perceptron"] <= 0.75 and results["mlp 2-8-2 relu"] == 1.0
    assert_png(output, min_width=800)
    # The surface drawn is the MLP's own: above 0.5 exactly at XOR's class-1 points.
    _, state = module.train("mlp", "cross_entropy", num_classes=2, steps=400, hidden_sizes=(8,))
    np.testing.assert_array_equal(module.class_one_probability(state, module.INPUTS) > 0.5, module.LABELS == 1)


# softmax_cross_entropy.py


def test_softmax_example_negative_logs_and_gradient_formula():
    results = example("softmax_cross_entropy.py").main()
    values = results["negative_log"]
    # -log p for p = 0, 0.1, 0.9, 1: inf, 2.3, 0.1, 0.
    assert values[0.0] == math.inf
    assert values[0.1] == pytest.approx(2.3026, abs=1e-4) and round(values[0.1], 1) == 2.3
    assert values[0.9] == pytest.approx(0.1054, abs=1e-4) and round(values[0.9], 1) == 0.1
    assert values[1.0] == 0.0
    assert results["max_abs_difference"] < 1e-5
    assert results["nll"] == pytest.approx(results["cross_entropy"], rel=1e-6)


def test_softmax_example_analytic_gradient_is_softmax_minus_one_hot_times_x_by_hand():
    module = example("softmax_cross_entropy.py")
    # W = 0: softmax is uniform (1/2, 1/2), so with label 0 the gradient is (1/2 - 1, 1/2)^T x^T.
    gradient = module.analytic_gradient(np.zeros((2, 3)), np.array([1.0, 2.0, -1.0]), 0)
    np.testing.assert_allclose(gradient, [[-0.5, -1.0, 0.5], [0.5, 1.0, -0.5]])


# linear_classifier.py


def test_linear_classifier_on_digits_reports_per_class_accuracy_and_templates(tmp_path, capsys):
    module = example("linear_classifier.py")
    output = tmp_path / "templates.png"
    results = module.main("digits", epochs=3, output=str(output))
    assert results["test_accuracy"] > 0.85
    per_class = results["per_class_accuracy"]
    assert len(per_class) == 10
    assert per_class[results["best_class"]] == max(per_class.values())
    assert per_class[results["worst_class"]] == min(per_class.values()) < max(per_class.values())
    # 360 test images, at least 35 per class: the per-class accuracies average to the overall one within a few %.
    assert np.mean(list(per_class.values())) == pytest.approx(results["test_accuracy"], abs=0.03)
    assert_png(output, min_width=1000)
    out = capsys.readouterr().out
    assert "W is 10 x 64" in out and f"worst class: {results['worst_class']}" in out


def test_linear_classifier_templates_are_the_weights_reshaped():
    module = example("linear_classifier.py")

    class FakeState:  # only the parameters are read
        params = {"Dense_0": {"kernel": np.arange(2 * 4 * 3, dtype=np.float32).reshape(2 * 4, 3) - 10}}

    templates = module.class_templates(FakeState(), (2, 4, 1))
    assert templates.shape == (3, 2, 4, 1)
    weights = FakeState.params["Dense_0"]["kernel"]
    np.testing.assert_allclose(templates[1, ..., 0], weights[:, 1].reshape(2, 4) / np.abs(weights[:, 1]).max())


def test_linear_classifier_skips_an_unprepared_dataset_in_one_line(tmp_path):
    environment = {**os.environ, "TFDS_DATA_DIR": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "linear_classifier.py"), "--dataset", "cifar10", "--output", str(tmp_path / "t.png")],
        capture_output=True, text=True, timeout=300, env=environment,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipping cifar10: Dataset 'cifar10' is not prepared"), result.stdout
    assert not (tmp_path / "t.png").exists()


@pytest.mark.slow
def test_linear_classifier_on_real_mnist_passes_90_percent(mnist_dir):
    results = example("linear_classifier.py").main("mnist", epochs=1, data_dir=mnist_dir)
    assert results["test_accuracy"] > 0.90


# activation_functions.py


def test_activations_example_values_and_derivatives_by_hand(tmp_path):
    module = example("activation_functions.py")
    output = tmp_path / "activations.png"
    table = module.main(output=str(output), num_points=61)
    x = np.array(module.POINTS)
    sigmoid = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(table["sigmoid"]["derivative"], sigmoid * (1 - sigmoid), rtol=1e-5)
    np.testing.assert_allclose(table["tanh"]["derivative"], 1 - np.tanh(x) ** 2, rtol=1e-5)
    np.testing.assert_allclose(table["relu"]["derivative"], (x > 0).astype(float))
    np.testing.assert_allclose(table["leaky_relu"]["value"], np.where(x > 0, x, 0.1 * x), rtol=1e-6)
    np.testing.assert_allclose(table["leaky_relu"]["derivative"], np.where(x > 0, 1.0, 0.1), rtol=1e-6)
    # ELU(-1) = e^-1 - 1 = -0.632, ELU'(-1) = e^-1 = 0.368.
    minus_one = module.POINTS.index(-1.0)
    assert table["elu"]["value"][minus_one] == pytest.approx(math.exp(-1) - 1, rel=1e-5)
    assert table["elu"]["derivative"][minus_one] == pytest.approx(math.exp(-1), rel=1e-5)
    pieces = np.outer(x, module.MAXOUT_SLOPES) + np.array(module.MAXOUT_OFFSETS)
    np.testing.assert_allclose(table["maxout"]["value"], pieces.max(-1), rtol=1e-6)
    np.testing.assert_allclose(table["maxout"]["derivative"], np.array(module.MAXOUT_SLOPES)[pieces.argmax(-1)])
    assert_png(output, min_width=1000)


def test_mlp_activation_maxout_is_two_linear_pieces_per_hidden_unit():
    model = jaxvision.get_model("mlp", num_classes=2, hidden_sizes=(4,), activation="maxout")
    x = jax.random.normal(jax.random.key(1), (5, 3))
    params = model.init(jax.random.key(0), x)["params"]
    # (3*8 + 8) for 4 units of 2 pieces, + (4*2 + 2) for the head = 42, against 26 with an elementwise activation.
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 42
    hidden = params["Maxout_0"]["Dense_0"]
    pieces = (np.asarray(x) @ np.asarray(hidden["kernel"]) + np.asarray(hidden["bias"])).reshape(5, 4, 2)
    expected = pieces.max(-1) @ np.asarray(params["Dense_0"]["kernel"]) + np.asarray(params["Dense_0"]["bias"])
    np.testing.assert_allclose(model.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-5)


def test_train_command_accepts_activation_maxout(tmp_path, capsys):
    status = cli_main(["train", "--activation", "maxout", "--epochs", "1", "--no-progress", "--output-dir", str(tmp_path)])
    assert status == 0
    accuracy = float(capsys.readouterr().out.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.5  # one epoch on digits; 10% is chance


# overfitting.py


def test_overfitting_example_curves_dropout_and_early_stopping(tmp_path):
    module = example("overfitting.py")
    output = tmp_path / "curves.png"
    results = module.main(epochs=13, output=str(output))
    plain = results["too large, no regularisation"]
    dropout = results["dropout 0.5"]
    early = results["early stopping (patience 5)"]
    both = results["dropout 0.5 + early stopping"]
    # Overfitting: the training loss goes to ~0 while the validation loss rises again after its minimum.
    assert plain.history["train_loss"][-1] < 0.01
    assert plain.history["val_loss"][-1] > min(plain.history["val_loss"]) + 0.02
    assert not plain.stopped_early and len(plain.history["val_loss"]) == 13
    # Dropout is on in training: the same seed's training loss stays higher than without it.
    assert dropout.history["train_loss"][4] > plain.history["train_loss"][4]
    for stopped in (early, both):
        losses = stopped.history["val_loss"]
        assert stopped.stopped_early and len(losses) == stopped.best_epoch + 1 + 5 < 13
        assert losses[stopped.best_epoch] == min(losses)
    assert min(both.history["val_loss"]) < min(plain.history["val_loss"])
    assert_png(output, min_width=800)


# cnn_arithmetic.py


def test_cnn_arithmetic_example_seed_numbers(capsys):
    results = example("cnn_arithmetic.py").main()
    # 5x5x3 filters on 32x32x3 at stride 1: (32 - 5)/1 + 1 = 28, 28x28 per filter; 5*5*3 + 1 = 76 parameters each.
    assert results["size_32_5"] == 28 and results["volume_32_5"] == (28, 28, 6)
    assert results["parameters_per_filter"] == 76 and results["parameters_conv"] == 6 * 76
    # Padding (F - 1)/2 keeps 32; a 7x7 input with a 3x3 kernel at stride 1 gives 5x5 (stride 2: 3x3).
    assert results["padded_sizes"] == {3: 32, 5: 32, 7: 32}
    assert results["sizes_7_3"][1] == 5 and results["sizes_7_3"][2] == 3
    assert results["mlp_3_4_2"] == 26 and results["mlp_3_4_4_1"] == 41
    assert "does not fit" in capsys.readouterr().out


def test_examples_readme_has_every_example_with_its_command():
    readme = open(os.path.join(EXAMPLES, "README.md")).read()
    for name in sorted(os.listdir(EXAMPLES)):
        if name.endswith(".py"):
            assert f"python examples/{name}" in readme, f"examples/README.md does not show how to run {name}"


# transfer_mnist_to_digits.py


def test_transfer_mnist_to_digits_quick_table_matches_json_and_the_installed_probe(tmp_path):
    import json
    import re

    import optax

    from jaxvision.fit import evaluate
    from jaxvision.run_record import read_run_file
    from jaxvision.train import state_from_variables

    # A stand-in for the MNIST pretraining (offline and fast): one epoch of mnist_cnn on digits at 28x28.
    pretrained = str(tmp_path / "pretrained")
    command = ["train", "--model", "mnist_cnn", "--dataset", "digits", "--image-size", "28", "--epochs", "1",
               "--no-progress", "--output-dir", pretrained]
    assert cli_main(command) == 0
    output = tmp_path / "results"
    result = example("transfer_mnist_to_digits.py").main(pretrained, quick=True, output=str(output), progress=False)
    record = json.loads((output / "results.json").read_text())
    table = (output / "results.md").read_text()

    assert list(record["methods"]) == ["linear_probe", "last_block", "all", "scratch"]
    assert record["per_class"] == [10] and record["seeds"] == [0] and record["recipe"]["steps"] == 20
    rows = {cells[0]: cells[1:] for cells in
            ([cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| "))}
    assert rows.pop("method") == ["10 per class"]
    assert list(rows) == list(record["methods"].values())
    runs = {run["method"]: run for run in record["runs"]}
    assert len(record["runs"]) == len(record["summary"]) == 4
    for cell in record["summary"]:
        accuracy = cell["test_accuracy_mean"]
        # One seed: the mean is that run's accuracy, a count of right answers out of digits' 360 test images.
        assert accuracy == runs[cell["method"]]["test_accuracy"] and cell["test_accuracy_std"] is None
        assert math.isfinite(accuracy) and 0 <= accuracy <= 1 and abs(accuracy * 360 - round(accuracy * 360)) < 1e-6
        match = re.fullmatch(r"(\d+\.\d) % \((\d+\.\d) s\)", rows[record["methods"][cell["method"]]][0])
        assert match, rows
        assert abs(float(match[1]) - 100 * accuracy) <= 0.05 + 1e-9
        assert abs(float(match[2]) - cell["seconds_mean"]) <= 0.05 + 1e-9 and cell["seconds_mean"] > 0
    # 10 per class is 100 images in batches of 32: exactly 20 steps through fit; the probe's epochs of 4 batches
    # (the last of 4 images) reach 20 in 5 epochs; the frozen fit drops that last batch: 5 x 3 steps.
    assert [runs[method]["steps"] for method in record["methods"]] == [20, 20, 20, 20]
    [speedup] = record["probe_speedup"]  # --quick: at the table's epochs only
    assert speedup["epochs"] == 5 and speedup["frozen_fit"]["steps"] == 15
    assert speedup["cached"]["seconds"] == runs["linear_probe"]["seconds"]
    assert speedup["speedup"] == pytest.approx(speedup["frozen_fit"]["seconds"] / speedup["cached"]["seconds"])
    assert f"{speedup['speedup']:.1f}x faster" in table

    # The probe's accuracy, computed on cached features, is the whole network's with the trained head installed.
    detail = {run.method: run for run in result["runs_detail"]}
    normalization = read_run_file(pretrained)["normalization"]
    splits = jaxvision.data.load_splits("digits", image_size=28, mean=normalization["mean"], std=normalization["std"])
    probe = detail["linear_probe"]
    test = evaluate(state_from_variables(probe.model, probe.variables, optax.identity()), splits.eval_batches("test"))
    assert test["count"] == 360 and test["accuracy"] == runs["linear_probe"]["test_accuracy"]

    # What trained: the probe and last:1 keep the convolutions bit for bit; full fine-tuning and scratch do not.
    start = jaxvision.load_run(pretrained).variables["params"]
    params = {method: run.variables["params"] for method, run in detail.items()}
    for name in ("Conv_0", "Conv_1"):
        for kept in ("linear_probe", "last_block"):
            np.testing.assert_array_equal(params[kept][name]["kernel"], start[name]["kernel"])
        for moved in ("all", "scratch"):
            assert not np.array_equal(params[moved][name]["kernel"], start[name]["kernel"])
    np.testing.assert_array_equal(params["linear_probe"]["Dense_0"]["kernel"], start["Dense_0"]["kernel"])
    assert not np.array_equal(params["last_block"]["Dense_0"]["kernel"], start["Dense_0"]["kernel"])
    # 20 small steps keep full fine-tuning near the pretrained filters; scratch's come from a fresh draw.
    def correlation(method):
        return np.corrcoef(np.ravel(params[method]["Conv_0"]["kernel"]), np.ravel(start["Conv_0"]["kernel"]))[0, 1]

    assert correlation("all") > 0.9 and abs(correlation("scratch")) < 0.5
