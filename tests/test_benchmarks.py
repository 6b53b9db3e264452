"""Smoke tests of the benchmark harness and its experiments on tiny configurations; the real figures
come from ``python -m benchmarks.run`` (benchmarks/README.md), never from unit tests."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import gpu_check, jax_bench, report, run, timing
from jaxvision.backends import kernels_of
from jaxvision.backends.compile import LEGACY_CPU_EMITTERS, step_compiler_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed (pip install -e '.[compare]')")


def test_time_function_reports_the_median_min_and_max_of_the_timed_calls_only(monkeypatch):
    # A fake clock that each call moves on by its own duration: the durations are then the samples.
    # Binary fractions, so the sums are exact; an even count, so the median (0.3125) is neither a
    # sample nor the mean (0.4375). The two warm-up calls take 4 s each and must not be counted.
    durations = [0.375, 0.125, 0.25, 1.0]
    calls = iter([4.0, 4.0, *durations])
    clock = [0.0]
    synced = []

    class Result:
        def block_until_ready(self):
            synced.append(clock[0])
            return self

    def function():
        clock[0] += next(calls)
        return Result()

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    result = timing.time_function(function, repeats=4, warmup=2)
    assert (result.median, result.min, result.max, result.repeats) == (np.median(durations), 0.125, 1.0, 4)
    assert len(synced) == 6  # every call, warm-up included, waited for its result


def test_timed_calls_run_on_until_the_time_budget_and_stop_at_the_cap(monkeypatch):
    import time as clock

    calls = timing.timed_calls(lambda: clock.sleep(0.004), repeats=2, min_seconds=0.04)
    # 4 ms sleeps until 40 ms are timed, and not one call more.
    assert len(calls) > 2 and sum(calls) >= 0.04 > sum(calls[:-1])
    assert len(timing.timed_calls(lambda: None, repeats=3)) == 3  # no budget: exactly the repeats
    monkeypatch.setattr(timing, "MAX_TIMED_CALLS", 5)
    assert len(timing.timed_calls(lambda: clock.sleep(0.001), repeats=2, min_seconds=10.0)) == 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="getrusage counts minor page faults on Linux")
def test_page_faults_count_the_fresh_memory_a_loop_touches():
    # 64 MiB is over glibc's largest mmap threshold (32 MiB), so every array is newly mapped memory
    # that faults in when np.ones writes it: 4 KiB at a time, or 2 MiB with huge pages.
    size, arrays = 64 * 2**20, 4
    with timing.PageFaults() as faults:
        for _ in range(arrays):
            np.ones(size, np.uint8)
    assert faults.count >= arrays * size // (2 * 2**20)


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


def test_run_takes_kernels_and_writes_outside_the_source_tree(capsys):
    reference, default = run.parse_args(["--kernels", "reference"]), run.parse_args([])
    assert reference.kernels == "reference" and default.kernels == "auto"
    # As in `jaxvision train`: the reference layers get no XLA:CPU flag and no huge-page restart.
    assert (reference.xla_cpu, reference.malloc) == ("default", "default")
    assert (default.xla_cpu, default.malloc) == ("no-ynn", "huge-pages")
    assert run.parse_args(["--output", "elsewhere"]).output == "elsewhere"
    assert report.RESULTS_DIR == os.path.join("runs", "benchmarks")
    with pytest.raises(SystemExit):
        run.parse_args(["--kernels", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("kernels, options", [("cpu", LEGACY_CPU_EMITTERS), ("reference", {})])
def test_rows_build_the_kernels_asked_for_and_their_compile_options(kernels, options):
    model, state, batch, _ = jax_bench.build(jax_bench.MODELS_BY_NAME["lenet5"], 2, "float32", kernels=kernels)
    assert kernels_of(model) == kernels and batch.images.shape == (2, 28, 28, 1)
    assert step_compiler_options(state) == options


@pytest.fixture(scope="module")
def mlp_row():
    return jax_bench.bench_jax(jax_bench.MODELS_BY_NAME["mlp"], 4, "float32", repeats=1, warmup=1)


def test_bench_jax_row_on_a_tiny_batch(mlp_row):
    assert mlp_row["parameters"] == 235_146 and mlp_row["train_images_per_s"] > 0 and mlp_row["train_flops_per_step"] > 0
    assert mlp_row["train_temp_bytes"] > 0 and mlp_row["kernels"] == "cpu"
    # The MLP has no layer to inject, so it compiles with the platform's options, as fit would.
    from jaxvision.backends.compile import LEGACY_CPU_EMITTERS
    assert mlp_row["compiler_options"] == (LEGACY_CPU_EMITTERS if jax.default_backend() == "cpu" else {})
    table = report.throughput_table([mlp_row])
    assert "| mlp" in table and table.count("\n") == 2


def test_record_is_written_as_json_and_never_overwritten(tmp_path):
    record = {"machine": {"backend": "cpu", "git_commit": "abc"}, "throughput": []}
    first, second = report.write_record(record, str(tmp_path)), report.write_record(record, str(tmp_path))
    assert first != second and json.load(open(first))["machine"]["git_commit"] == "abc"


@needs_torch
@pytest.mark.parametrize("name", [s.name for s in jax_bench.MODELS])
def test_torch_twins_have_the_jaxvision_parameter_counts(name):
    from benchmarks.torch_models import build_torch_model, parameter_count

    spec = jax_bench.MODELS_BY_NAME[name]
    state = jax.eval_shape(lambda: jax_bench.build(spec, 1, "float32")[1])
    expected = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state.params))
    assert parameter_count(build_torch_model(name, spec.num_classes)) == expected


@needs_torch
def test_torch_row_and_ratio_in_the_table(mlp_row):
    from benchmarks.torch_models import bench_torch

    torch_row = bench_torch("mlp", (28, 28, 1), 10, 4, repeats=1, warmup=1)
    assert torch_row["parameters"] == mlp_row["parameters"]
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
    assert row["kernels"] == "cpu" and row["compiler_options"] == LEGACY_CPU_EMITTERS
    with pytest.raises(ValueError, match="does not divide the 200 test examples"):
        tta.run_jax(data, recipe, seed=0, target=0.99, eval_batch_size=300)


def test_mnist_archive_is_normalised_with_its_training_statistics(tmp_path, monkeypatch):
    from benchmarks import time_to_accuracy as tta

    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    arrays = {"train_images": rng.integers(0, 256, (12, 28, 28, 1), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 12, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, 5, dtype=np.uint8)}
    np.savez(path, **arrays)
    monkeypatch.setattr(tta, "MNIST_TRAIN_EXAMPLES", 10)  # MNIST's is 59,994 of 60,000
    data = tta.load_mnist(str(path))
    pixels = arrays["train_images"][:10] / 255.0
    np.testing.assert_allclose(data["train_x"], (pixels - pixels.mean()) / pixels.std(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data["test_x"], (arrays["test_images"] / 255.0 - pixels.mean()) / pixels.std(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data["train_y"], arrays["train_labels"][:10])
    assert data["train_x"].dtype == np.float32 and data["test_y"].dtype == np.int32


@pytest.mark.slow
def test_mnist_archive_gives_what_tensorflow_datasets_gives(mnist_dir, monkeypatch, tmp_path):
    from benchmarks import time_to_accuracy as tta

    monkeypatch.setenv("TFDS_DATA_DIR", mnist_dir)
    archive = tta.export_mnist_npz(str(tmp_path / "mnist.npz"))
    from_tfds, from_archive = tta.load_mnist(), tta.load_mnist(archive)
    for name, array in from_tfds.items():
        np.testing.assert_array_equal(from_archive[name], array, err_msg=name)


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


def test_without_tensorflow_inputs_are_noise_and_mnist_says_why(monkeypatch):
    from benchmarks import inputs

    for name in ("tensorflow", "tensorflow_datasets"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    assert not inputs.tensorflow_available() and not inputs.mnist_available()
    assert inputs.resolve_source("auto", (28, 28, 1)) == "synthetic"
    with pytest.raises(ValueError, match="tensorflow-datasets, which is not installed here"):
        inputs.resolve_source("mnist", (28, 28, 1))


# The GPU check.


def test_gpu_check_dry_run_without_tensorflow_lists_its_steps(tmp_path):
    # In a process of its own: --without-tensorflow blocks TensorFlow's import there, so a benchmark
    # module that imported it at module level would fail the dry run.
    absent = tmp_path / "absent.npz"
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--without-tensorflow", "--output",
               str(tmp_path), "--tests", "tests/test_models.py,tests/test_pipeline.py", "--mnist-npz", str(absent)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for row in ("resnet20 float32 batch 128", "resnet20 bfloat16 batch 128", "resnet50 bfloat16 batch 256"):
        assert f"{row} (up to" in out
    assert out.count("; synthetic inputs):") == 3 and "--kernels auto" in out and "--no-torch" in out
    assert "time to accuracy skipped: no MNIST here" in out
    assert "tests/test_pipeline.py left out: needs TensorFlow" in out
    assert "-m 'not cpu_kernels and not slow'" in out and "-p benchmarks._without_tensorflow" in out
    (path,) = tmp_path.glob("gpu-check-*.json")
    record = json.loads(path.read_text())
    check = record["gpu_check"]
    assert check["dry_run"] and not check["tensorflow"] and check["tensorflow_loaded"] == []
    assert [name for name in record["steps"] if name.startswith("row-")] == [
        "row-resnet20-float32-128", "row-resnet20-bfloat16-128", "row-resnet50-bfloat16-256"]
    assert record["steps"]["tests"]["files"] == ["tests/test_models.py"]
    assert record["steps"]["time_to_accuracy"]["skipped"].startswith("skipped: no MNIST")
    assert record["throughput"] == [] and not list(tmp_path.glob("gpu_check_logs/*"))  # nothing ran


def test_gpu_check_finds_test_modules_that_import_tensorflow(tmp_path):
    (tmp_path / "helper.py").write_text("try:\n    from jaxvision.data import load\nexcept ImportError:\n    pass\n")
    (tmp_path / "test_direct.py").write_text("import tensorflow_datasets as tfds\n")
    (tmp_path / "test_indirect.py").write_text("import numpy\nfrom helper import load\n")
    (tmp_path / "test_lazy.py").write_text("def test_it():\n    import tensorflow\n")
    assert gpu_check.tensorflow_import(str(tmp_path / "test_direct.py")) == "imports tensorflow_datasets at module level"
    assert gpu_check.tensorflow_import(str(tmp_path / "test_indirect.py")) == (
        "via helper.py: imports jaxvision.data at module level")
    assert gpu_check.tensorflow_import(str(tmp_path / "test_lazy.py")) is None


def test_gpu_check_reads_mnist_from_the_carried_archive(tmp_path):
    archive = tmp_path / "mnist.npz"
    args = gpu_check.parse_args(["--mnist-npz", str(archive)])
    assert gpu_check.mnist_source(args, tensorflow=False)[0] is None
    np.savez(archive, train_images=np.zeros((1, 28, 28, 1), np.uint8))
    assert gpu_check.mnist_source(args, tensorflow=False) == ("npz", f"MNIST from {archive}")
    command = gpu_check.time_to_accuracy_command(args, str(archive), "rows.json")
    assert command[-2:] == ["--mnist-npz", str(archive)] and "--no-torch" in command


def test_gpu_check_summarises_pytest_junit_reports(tmp_path):
    report_xml = tmp_path / "junit.xml"
    report_xml.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1" time="2.5">'
        '<testcase classname="tests.test_models" name="test_a"/>'
        '<testcase classname="tests.test_models" name="test_b"><failure message="assert 1 == 2&#10;more"/></testcase>'
        '<testcase classname="tests.test_train" name="test_c"><skipped/></testcase>'
        '<testcase classname="tests.test_train" name="test_d"/></testsuite></testsuites>')
    summary = gpu_check.junit_summary(str(report_xml))
    assert {k: summary[k] for k in ("tests", "passed", "failures", "errors", "skipped")} == {
        "tests": 4, "passed": 2, "failures": 1, "errors": 0, "skipped": 1}
    assert summary["problems"] == [{"test": "tests.test_models::test_b", "kind": "failure", "message": "assert 1 == 2"}]
    assert gpu_check.junit_summary(str(tmp_path / "never_written.xml")) == {}


def test_gpu_check_rows_and_errors():
    assert gpu_check.parse_rows("resnet20:bfloat16:128") == [gpu_check.Row("resnet20", "bfloat16", 128)]
    with pytest.raises(ValueError, match="expected model:dtype:batch"):
        gpu_check.parse_rows("resnet20:float16:128")


# The experiments (benchmarks/experiments/).


def test_batch_norm_benchmark_compares_two_different_programs(capsys):
    # The flax BatchNorm step must be a different program from the CPU kernels' one, or both timings
    # would be of the same code.
    from benchmarks.experiments import batch_norm as batch_norm_bench

    batch_norm_bench.train_steps("resnet20", batch_size=2, rounds=1, repeats=1)
    assert "speed-up" in capsys.readouterr().out


def test_page_faults_child_times_steps_and_rows_parse():
    from benchmarks.experiments import page_faults, parse_rows

    assert parse_rows("lenet5:512,mlp:4") == [("lenet5", 512), ("mlp", 4)]
    with pytest.raises(ValueError, match="expected model:batch"):
        parse_rows("lenet5")
    result = page_faults.child("mlp", 4, steps=2)
    assert result["step_s"] > 0 and result["temp_bytes"] > 0


def test_emitters_times_both_compiles_of_a_step_and_marks_the_chosen_one():
    from benchmarks.experiments import emitters

    results = emitters.compare("lenet5", 2, rounds=2, steps=2, kernels="cpu")
    assert list(results) == ["default", "legacy"]
    for result in results.values():
        assert result["compile_s"] > 0 and len(result["step_s"]) == 2 and min(result["step_s"]) > 0
    # LeNet-5 on the CPU kernels has no batch norm: jaxvision.backends.compile picks the legacy emitters.
    assert results["legacy"]["chosen"] and not results["default"]["chosen"]


def test_pool_first_times_four_variants_and_puts_the_library_back():
    import jaxvision.train
    from benchmarks.experiments import pool_first
    from jaxvision import backends
    from jaxvision.backends.cpu import pooling

    maxima = pooling._maxima_and_first
    results = pool_first.compare("lenet5", 2, rounds=2, steps=1)
    assert list(results) == list(pool_first.VARIANTS)
    assert all(len(seconds) == 2 and min(seconds) > 0 for seconds in results.values())
    assert jaxvision.train.training_forward is backends.training_forward and pooling._maxima_and_first is maxima


def test_population_vs_loop_times_every_strategy():
    from benchmarks.experiments import population_vs_loop

    seconds = population_vs_loop.measure("mlp", 2, batch_size=4, steps=1, repeats=1, lax_map=True)
    assert set(seconds) == {"vmap", "map", "python"} and min(seconds.values()) > 0


def test_data_parallel_measures_a_step_on_this_process_devices():
    from benchmarks.experiments import data_parallel

    row = data_parallel._measure("mlp", 4, 1)
    assert row["devices"] == jax.device_count() and row["train_images_per_s"] > 0


def test_augment_throughput_times_the_pipeline_and_both_steps(capsys):
    from benchmarks.experiments import augment_throughput

    augment_throughput.main(["--model", "mlp", "--image-shape", "28,28,1", "--batch-size", "4", "--repeats", "1",
                             "--warmup", "1", "--augment", "flip"])
    out = capsys.readouterr().out
    assert "train step + augmentation (mlp)" in out and "augmentation costs" in out


def test_conv_passes_reads_resnet20s_convolutions_off_its_forward_pass():
    from benchmarks.experiments.conv_passes import ConvShape, network_convolutions

    found = network_convolutions("resnet20", 2, kernels="cpu")
    # By hand: stage 1 has 3 blocks of two 3x3 16->16 convolutions at 32x32; stages 2 and 3 open
    # with a stride-2 convolution, then 5 more at the new width. The 3-channel stem takes the CPU
    # kernels' few-channel path (jaxvision.backends.cpu.conv), which is not XLA's convolution: left out.
    counts = {str(shape): count for shape, count in found.items()}
    assert counts == {"3x3 32x32x16->16": 6, "3x3 32x32x16->32 /2": 1, "3x3 16x16x32->32": 5,
                      "3x3 16x16x32->64 /2": 1, "3x3 8x8x64->64": 5}
    assert all(shape.input_shape[0] == 2 for shape in found)
    # With flax's layers every convolution is XLA's, the stem too.
    reference = network_convolutions("resnet20", 2, kernels="reference")
    assert reference - found == {ConvShape((2, 32, 32, 3), (3, 3, 3, 16), (1, 1), ((1, 1), (1, 1))): 1}
    # LeNet-5's 1->6 and 6->16 layers both take the few-channel path.
    assert network_convolutions("lenet5", 2, kernels="cpu") == {}


@needs_torch
@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_conv_passes_time_the_same_computation_in_both_frameworks(strides):
    from benchmarks.experiments.conv_passes import ConvShape, compare, jax_passes, table, torch_passes

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


@needs_torch
def test_forward_backward_splits_both_frameworks_steps():
    from benchmarks.experiments.forward_backward import compare, table

    figures = compare("mlp", 4, rounds=1, seconds=0.0)
    assert set(figures) == {"jaxvision", "pytorch"}
    for by_program in figures.values():
        assert set(by_program) == {"eval", "forward", "step", "backward"}
        assert by_program["backward"] == pytest.approx(by_program["step"] - by_program["forward"])
        assert by_program["eval"] > 0 and by_program["step"] > 0
    assert "| mlp | 4 |" in table([("mlp", 4, figures)])


@needs_torch
def test_side_by_side_scripts_print_their_tables(capsys):
    from benchmarks.experiments import conv_passes, forward_backward

    forward_backward.main(["--rows", "mlp:4", "--rounds", "1", "--seconds", "0"])
    conv_passes.main(["--model", "mnist_cnn", "--batch-size", "2", "--rounds", "1", "--seconds", "0"])
    conv_passes.main(["--model", "lenet5", "--batch-size", "2", "--rounds", "1", "--seconds", "0"])
    out = capsys.readouterr().out
    assert "| mlp | 4 |" in out and "| 3x3 14x14x24->32 | 1 |" in out
    assert "lenet5 has no convolutions that XLA runs as convolutions" in out
    with pytest.raises(ValueError, match="Unknown benchmark model"):
        conv_passes.main(["--model", "lenet", "--rounds", "1"])
