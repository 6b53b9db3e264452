"""Smoke test of the benchmark harness on tiny configurations; the real figures come from
``python -m benchmarks.run`` (benchmarks/README.md), never from unit tests."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import jax_bench, report, timing
from benchmarks.fast_conv import conv_general_dilated


def test_timing_reports_median_min_max_over_the_repeats():
    result = timing.time_function(lambda: jnp.ones(3) * 2, repeats=3, warmup=1)
    assert result.repeats == 3 and result.min <= result.median <= result.max


def test_timed_calls_run_on_until_the_time_budget_and_stop_at_the_cap(monkeypatch):
    import time as clock

    calls = timing.timed_calls(lambda: clock.sleep(0.004), repeats=2, min_seconds=0.04)
    # 4 ms sleeps until 40 ms are timed, and not one call more.
    assert len(calls) > 2 and sum(calls) >= 0.04 > sum(calls[:-1])
    assert len(timing.timed_calls(lambda: None, repeats=3)) == 3  # no budget: exactly the repeats
    monkeypatch.setattr(timing, "MAX_TIMED_CALLS", 5)
    assert len(timing.timed_calls(lambda: clock.sleep(0.001), repeats=2, min_seconds=10.0)) == 5


def test_xla_flops_counts_a_matmul():
    compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((8, 16)), jnp.ones((16, 4))).compile()
    assert timing.xla_flops(compiled) == pytest.approx(2 * 8 * 16 * 4, rel=0.1)


def test_peak_flops_is_measured_on_cpu_and_says_so():
    peak, source = timing.peak_flops("float32", size=64, repeats=1)
    assert peak > 0 and source.startswith("measured")


def test_unknown_model_names_the_runnable_ones():
    with pytest.raises(ValueError, match=r"Unknown benchmark model\(s\) lenet6.*lenet5"):
        jax_bench.available_models(["lenet6"], "cpu")


def test_imagenet_models_are_off_by_default_on_cpu_only():
    cpu = {s.name for s in jax_bench.available_models(None, "cpu")}
    gpu = {s.name for s in jax_bench.available_models(None, "gpu")}
    assert "resnet50" not in cpu and "lenet5" in cpu and cpu <= gpu


@pytest.fixture(scope="module")
def mlp_row():
    return jax_bench.bench_jax(jax_bench.MODELS_BY_NAME["mlp"], 4, "float32", repeats=1, warmup=1)


def test_bench_jax_row_on_a_tiny_batch(mlp_row):
    assert mlp_row["parameters"] == 235_146 and mlp_row["train_images_per_s"] > 0 and mlp_row["train_flops_per_step"] > 0
    # The XLA temporaries of a step and the page faults per step, which huge pages cut (README item 11).
    assert mlp_row["train_temp_bytes"] > 0 and mlp_row["train_page_faults_per_step"] >= 0
    # Compiled as jaxvision.fit compiles it: on CPU, without batch norm, XLA's legacy emitters (item 12).
    assert mlp_row["compiler_options"] == {"xla_cpu_use_fusion_emitters": False}
    table = report.throughput_table([mlp_row])
    assert "| mlp" in table and table.count("\n") == 2


@pytest.mark.parametrize(
    "strides, padding, dilation",
    [((1, 1), "VALID", (1, 1)), ((2, 2), "SAME", (1, 1)), ((1, 1), ((2, 1), (0, 2)), (2, 2))],
)
def test_fast_conv_matches_lax_values_and_gradients(strides, padding, dilation):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 9, 9, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 16, 5)), jnp.float32)
    kwargs = dict(window_strides=strides, padding=padding, rhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def loss(conv):
        return jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w, **kwargs))), argnums=(0, 1)))(x, w)

    for got, want in zip(jax.tree.leaves(loss(conv_general_dilated)), jax.tree.leaves(loss(jax.lax.conv_general_dilated))):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_record_is_written_as_json_and_never_overwritten(tmp_path):
    record = {"machine": {"backend": "cpu", "git_commit": "abc"}, "throughput": []}
    first, second = report.write_record(record, str(tmp_path)), report.write_record(record, str(tmp_path))
    assert first != second and json.load(open(first))["machine"]["git_commit"] == "abc"


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", [s.name for s in jax_bench.MODELS])
def test_torch_twins_have_the_jaxvision_parameter_counts(name):
    from benchmarks.torch_models import build_torch_model, parameter_count

    spec = jax_bench.MODELS_BY_NAME[name]
    state = jax.eval_shape(lambda: jax_bench.build(spec, 1, "float32")[1])
    expected = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state.params))
    assert parameter_count(build_torch_model(name, spec.num_classes)) == expected


def test_torch_row_and_ratio_in_the_table(mlp_row):
    from benchmarks.torch_models import bench_torch

    torch_row = bench_torch("mlp", (28, 28, 1), 10, 4, repeats=1, warmup=1)
    assert torch_row["parameters"] == mlp_row["parameters"] and torch_row["train_page_faults_per_step"] >= 0
    assert "x |" in report.throughput_table([mlp_row, torch_row])


def test_time_to_accuracy_loop_learns_a_separable_toy_problem():
    from benchmarks import time_to_accuracy as tta

    # Class = which half of the image is bright: learnable in a few steps, so the loop must stop early.
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 2, n).astype(np.int32)
        images = rng.normal(size=(n, 28, 28, 1)).astype(np.float32) * 0.1
        images[labels == 1, :14] += 1.0
        images[labels == 0, 14:] += 1.0
        return images, labels

    (train_x, train_y), (test_x, test_y) = split(512), split(200)
    data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    recipe = tta.Recipe("mnist_cnn", batch_size=64, learning_rate=3e-3, epochs=3)
    row = tta.run_jax(data, recipe, seed=0, target=0.99, eval_batch_size=100)
    assert row["reached_target"] and row["epochs_run"] < 3 and row["test_accuracy"] >= 0.99
    assert row["compiler_options"] == {"xla_cpu_use_fusion_emitters": False}
    with pytest.raises(ValueError, match="does not divide the 200 test examples"):
        tta.run_jax(data, recipe, seed=0, target=0.99, eval_batch_size=300)


def test_mnist_inputs_are_the_first_training_digits_normalised(mnist_dir, monkeypatch):
    import tensorflow_datasets as tfds

    from benchmarks import inputs

    monkeypatch.setenv("TFDS_DATA_DIR", mnist_dir)
    images, labels, source = inputs.benchmark_inputs((28, 28, 1), 10, 6, "mnist", mnist_pool=4)
    raw = tfds.as_numpy(tfds.load("mnist", split="train[:4]", batch_size=-1, data_dir=mnist_dir))
    pixels = raw["image"].astype(np.float64) / 255.0
    expected = (pixels - pixels.mean()) / pixels.std()
    assert source == "mnist" and images.shape == (6, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images[:4], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, np.concatenate([raw["label"], raw["label"][:2]]))
    # "auto" takes MNIST for 28x28x1 and noise for other shapes.
    assert inputs.resolve_source("auto", (28, 28, 1)) == "mnist"
    noise, noise_labels, source = inputs.benchmark_inputs((32, 32, 3), 10, 5, "auto")
    assert source == "synthetic" and noise.shape == (5, 32, 32, 3) and set(noise_labels) <= set(range(10))


def test_input_source_errors_say_what_to_pass():
    from benchmarks import inputs

    with pytest.raises(ValueError, match="expected one of auto, mnist, synthetic"):
        inputs.resolve_source("cifar", (32, 32, 3))
    with pytest.raises(ValueError, match="use --images auto"):
        inputs.resolve_source("mnist", (32, 32, 3))


def test_batch_norm_benchmark_compares_two_different_programs(capsys):
    # benchmarks/batch_norm.py patches flax's BatchNorm into the ResNet for one of the two steps; if
    # JAX's trace cache handed back the first program, both timings would be of the same code.
    from benchmarks import batch_norm as batch_norm_bench

    batch_norm_bench.train_steps("resnet20", batch_size=2, rounds=1, repeats=1)
    assert "speed-up" in capsys.readouterr().out


def test_page_faults_child_times_steps_and_rows_parse():
    from benchmarks import page_faults

    assert page_faults.parse_rows("lenet5:512,mlp:4") == [("lenet5", 512), ("mlp", 4)]
    with pytest.raises(ValueError, match="expected model:batch"):
        page_faults.parse_rows("lenet5")
    result = page_faults.child("mlp", 4, steps=2)
    assert result["step_s"] > 0 and result["faults_per_step"] >= 0 and result["temp_bytes"] > 0


def test_emitters_times_both_compiles_of_a_step_and_marks_the_chosen_one():
    from benchmarks import emitters

    results = emitters.compare("mlp", 4, rounds=2, steps=2)
    assert list(results) == ["default", "legacy"]
    for result in results.values():
        assert result["compile_s"] > 0 and len(result["step_s"]) == 2 and min(result["step_s"]) > 0
    # The MLP has no batch norm, so steps_for picks the legacy emitters on CPU.
    assert results["legacy"]["chosen"] and not results["default"]["chosen"]


def test_pooling_benchmark_times_three_different_programs_of_lenet5():
    from benchmarks import pooling

    results = pooling.compare("lenet5", 2, pairs=2)
    assert list(results) == ["before", "pool-first", "now"]
    # Each setting traced its own code path: three different optimised programs.
    assert len({result["program_hash"] for result in results.values()}) == 3
    for result in results.values():
        assert len(result["wall_s"]) == len(result["cpu_s"]) == 2 and min(result["wall_s"]) > 0


def test_conv_passes_reads_resnet20s_convolutions_off_its_forward_pass():
    from benchmarks.conv_passes import network_convolutions

    found = network_convolutions("resnet20", 2)
    # By hand: stage 1 has 3 blocks of two 3x3 16->16 convolutions at 32x32; stages 2 and 3 open
    # with a stride-2 convolution, then 5 more at the new width. The 3-channel stem takes the
    # few-channel path (jaxvision.models.conv), which is not XLA's convolution: left out.
    counts = {str(shape): count for shape, count in found.items()}
    assert counts == {"3x3 32x32x16->16": 6, "3x3 32x32x16->32 /2": 1, "3x3 16x16x32->32": 5,
                      "3x3 16x16x32->64 /2": 1, "3x3 8x8x64->64": 5}
    assert all(shape.input_shape[0] == 2 for shape in found)
    # LeNet-5's 1->6 and 6->16 layers both take the few-channel path (its forward is XLA's
    # convolution inside a custom VJP for 6 channels, but its input gradient is not).
    assert network_convolutions("lenet5", 2) == {}


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_conv_passes_time_the_same_computation_in_both_frameworks(strides):
    from benchmarks.conv_passes import ConvShape, compare, jax_passes, table, torch_passes

    shape = ConvShape((2, 9, 9, 5), (3, 3, 5, 4), strides, ((1, 1), (1, 1)))
    ours, theirs = jax_passes(shape), torch_passes(shape)
    np.testing.assert_allclose(ours["forward"](), theirs["forward"]().permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours["dgrad"](), theirs["dgrad"]().permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours["wgrad"](), theirs["wgrad"]().permute(2, 3, 1, 0).numpy(), rtol=1e-4, atol=1e-4)
    figures = compare(shape, rounds=1, seconds=0.0)
    assert set(figures) == {"jaxvision", "pytorch"}
    assert all(v > 0 for f in figures.values() for v in f.values())
    markdown = table([(shape, 3, figures)])
    assert f"| {shape} | 3 |" in markdown and "| **network** | 3 |" in markdown


def test_forward_backward_splits_both_frameworks_steps():
    from benchmarks.forward_backward import compare, table

    figures = compare("mlp", 4, rounds=1, seconds=0.0)
    assert set(figures) == {"jaxvision", "pytorch"}
    for by_program in figures.values():
        assert set(by_program) == {"eval", "forward", "step", "backward"}
        assert by_program["backward"] == pytest.approx(by_program["step"] - by_program["forward"])
        assert by_program["eval"] > 0 and by_program["step"] > 0
    assert "| mlp | 4 |" in table([("mlp", 4, figures)])


def test_side_by_side_scripts_print_their_tables(capsys):
    from benchmarks import conv_passes, forward_backward

    forward_backward.main(["--rows", "mlp:4", "--rounds", "1", "--seconds", "0"])
    conv_passes.main(["--model", "mnist_cnn", "--batch-size", "2", "--rounds", "1", "--seconds", "0"])
    conv_passes.main(["--model", "lenet5", "--batch-size", "2", "--rounds", "1", "--seconds", "0"])
    out = capsys.readouterr().out
    assert "| mlp | 4 |" in out and "| 3x3 14x14x24->32 | 1 |" in out
    assert "lenet5 has no convolutions that XLA runs as convolutions" in out
    with pytest.raises(ValueError, match="Unknown benchmark model"):
        conv_passes.main(["--model", "lenet", "--rounds", "1"])
