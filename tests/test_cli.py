"""The command line: error paths (one line, non-zero exit) and a short real run."""

import json
import os
import subprocess
import sys

import pytest

from jaxvision.cli.main import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "nosuch"], "Unknown model 'nosuch'"),
        (["train", "--model", "lenet"], "Did you mean 'lenet5'"),
        (["train", "--dataset", "mnsit"], "Did you mean 'mnist'"),
        (["train", "--learning-rate", "-1"], "expected a finite positive number"),
        (["train", "--learning-rate", "inf"], "invalid value 'inf': expected a finite positive number"),
        (["train", "--learning-rate", "nan"], "invalid value 'nan': expected a finite positive number"),
        (["train", "--weight-decay", "nan"], "invalid value 'nan': expected a finite number >= 0"),
        (["train", "--weight-decay", "inf"], "invalid value 'inf': expected a finite number >= 0"),
        (["train", "--momentum", "nan"], "invalid value 'nan': expected a finite number >= 0"),
        (["train", "--momentum=-inf"], "invalid value '-inf': expected a finite number >= 0"),
        (["train", "--dropout-rate", "nan"], "invalid value 'nan': expected a number in [0, 1)"),
        (["train", "--dropout-rate", "inf"], "invalid value 'inf': expected a number in [0, 1)"),
        (["train", "--validation-fraction", "nan"], "invalid value 'nan': expected a number in (0, 1)"),
        (["sweep", "--learning-rates", "1e-3,inf"], "invalid value 'inf': expected a finite positive number"),
        (["train", "--batch-size", "0"], "expected a positive integer"),
        (["train", "--validation-fraction", "1.5"], "expected a number in (0, 1)"),
        (["train", "--validation-fraction", "0"], "expected a number in (0, 1)"),
        (["train", "--dropout-rate", "1"], "expected a number in [0, 1)"),
        (["train", "--optimizer", "adm"], "invalid choice"),
    ],
)
def test_invalid_values_exit_non_zero_with_one_line(argv, message, capsys):
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def run_cli(argv):
    """The exit status of ``jaxvision ARGV``, whether argparse exits or ``main`` returns."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def test_console_script_reports_unknown_model_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "jaxvision.cli.main", "train", "--model", "nosuch"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert lines == [f"jaxvision train: error: {lines[0].split('error: ', 1)[1]}"] and "Traceback" not in result.stderr


def test_train_writes_history_and_metrics(tmp_path, capsys):
    status = main(["train", "--epochs", "2", "--no-progress", "--output-dir", str(tmp_path), "--patience", "5"])
    assert status == 0
    history = json.loads((tmp_path / "history.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(history["val_loss"]) == 2 and len(history["train_accuracy"]) == 2
    # Seeded; 2 epochs of the MLP on digits measured 0.93 (chance is 0.1).
    assert metrics["test_examples"] == 360 and metrics["test_accuracy"] > 0.8
    assert os.path.isfile(tmp_path / "history.png")
    assert f"test accuracy: {metrics['test_accuracy']:.4f}" in capsys.readouterr().out


def test_train_with_augmentation_and_tta_reports_both(tmp_path, capsys):
    status = main(["train", "--epochs", "1", "--no-progress", "--output-dir", str(tmp_path), "--augment", "rotate:10,translate:0.1", "--tta", "crops:5"])
    assert status == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # Seeded; measured 0.85 test and 0.74 with five crops after 1 epoch (chance is 0.1).
    assert metrics["augment"].startswith("rotate:10") and metrics["test_accuracy"] > 0.6 and metrics["tta_test_accuracy"] > 0.5
    assert "test-time augmentation (crops:5)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["--augment", "rotat:10"], "Did you mean 'rotate'"), (["--augment", "rotate:400"], "Invalid magnitude for rotate")])
def test_bad_augmentation_specs_are_one_line_errors(argv, message, capsys):
    assert run_cli(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


class _Restarted(Exception):
    pass


def _refuse_restart():
    raise _Restarted


def test_only_the_processs_own_training_command_line_on_cpu_restarts_with_huge_pages(monkeypatch):
    from jaxvision.backends import process
    from jaxvision.cli import main as cli_main

    flags = []
    monkeypatch.setattr(process, "restart_with_huge_pages", _refuse_restart)
    monkeypatch.setattr(process, "use_fast_cpu_training_flags", lambda: flags.append("set"))
    monkeypatch.setattr(process, "platform_is_cpu", lambda: True)
    # The jaxvision script (argv from sys.argv), a training command: XLA:CPU's flag, then the restart,
    # before any work.
    for command in (["train", "--model", "nosuch"], ["sweep", "--model", "nosuch"]):
        monkeypatch.setattr(sys, "argv", ["jaxvision", *command])
        with pytest.raises(_Restarted):
            cli_main.main()
    assert flags == ["set", "set"]
    # Not a training command, or --kernels reference: the process is left as it is.
    for command in (["summary", "--model", "nosuch", "--input-shape", "28,28,1"], ["train", "--model", "nosuch", "--kernels", "reference"]):
        monkeypatch.setattr(sys, "argv", ["jaxvision", *command])
        assert cli_main.main() == 2
    assert flags == ["set", "set"]
    # argv passed by a caller: never restarted.
    assert cli_main.main(["train", "--model", "nosuch"]) == 2
    # Off CPU (a GPU or TPU platform) nothing is touched.
    monkeypatch.setattr(process, "platform_is_cpu", lambda: False)
    flags.clear()
    monkeypatch.setattr(sys, "argv", ["jaxvision", "train", "--model", "nosuch"])
    assert cli_main.main() == 2 and flags == []


def test_the_platform_is_read_from_jax_platforms_without_starting_jax(monkeypatch):
    from jaxvision.backends import process

    for value, is_cpu in (("cpu", True), ("CPU", True), ("cuda", False), ("tpu,cpu", False), ("cpu,cuda", True)):
        monkeypatch.setenv("JAX_PLATFORMS", value)
        assert process.platform_is_cpu() is is_cpu, value
    monkeypatch.setenv("JAX_PLATFORMS", "")
    monkeypatch.setenv("JAX_PLATFORM_NAME", "gpu")
    assert process.platform_is_cpu() is False
