"""Tests of jaxvision.training_log: metrics.jsonl and TensorBoard event files of a run directory."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from jaxvision.training_log import METRICS_FILE, TrainingLog, read_metrics, read_tensorboard_scalars, truncate_metrics

STEPS = [
    {"step": 1, "epoch": 0, "loss": 2.25, "accuracy": 0.125, "learning_rate": 1e-3, "images_per_second": 900.5},
    {"step": 2, "epoch": 0, "loss": 1.9, "accuracy": 0.25, "learning_rate": 1e-3, "images_per_second": 1000.0},
    {"step": 3, "epoch": 0, "loss": 1.3, "accuracy": 0.5, "learning_rate": 1e-3, "images_per_second": 1100.0},
]
EPOCH = {"step": 3, "epoch": 0, "train_loss": 1.8, "val_loss": 1.6, "val_accuracy": 0.4}


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-strict JSON constant {name}")


def _strict_lines(directory) -> list[dict]:
    with open(os.path.join(directory, METRICS_FILE), encoding="utf-8") as file:
        return [json.loads(line, parse_constant=_reject_constant) for line in file]


def _write_run(directory, **kwargs) -> None:
    with TrainingLog(str(directory), **kwargs) as log:
        for record in STEPS:
            log.write(record)
        log.write(EPOCH, kind="epoch")


def test_read_metrics_gives_records_in_order_with_kind(tmp_path):
    _write_run(tmp_path / "run")
    records = read_metrics(str(tmp_path / "run"))
    assert records == [{"kind": "step", **r} for r in STEPS] + [{"kind": "epoch", **EPOCH}]


def test_non_finite_values_become_null_in_strict_json(tmp_path):
    with TrainingLog(str(tmp_path), tensorboard=False) as log:
        log.write({"step": np.int64(1), "epoch": 0, "loss": float("nan"), "accuracy": np.float32(0.5)})
        log.write({"step": 2, "epoch": 0, "loss": np.float32("inf"), "grad_norm": -np.inf, "accuracy": np.float64(0.75)})
    lines = _strict_lines(tmp_path)
    assert lines == [
        {"kind": "step", "step": 1, "epoch": 0, "loss": None, "accuracy": 0.5},
        {"kind": "step", "step": 2, "epoch": 0, "loss": None, "grad_norm": None, "accuracy": 0.75},
    ]


def test_tensorboard_scalars_round_trip_and_skip_nan(tmp_path):
    with TrainingLog(str(tmp_path)) as log:
        for record in STEPS:
            log.write(record)
        log.write({"step": 4, "epoch": 0, "loss": float("nan"), "accuracy": 0.5})
        log.write(EPOCH, kind="epoch")
    scalars = read_tensorboard_scalars(str(tmp_path))
    expected = [(r["step"], float(np.float32(r["loss"]))) for r in STEPS]
    assert scalars["step/loss"] == expected  # step 4's NaN is not among them.
    assert [step for step, _ in scalars["step/accuracy"]] == [1, 2, 3, 4]
    assert scalars["epoch/val_accuracy"] == [(3, float(np.float32(0.4)))]
    assert not any(tag.endswith(("/step", "/epoch")) for tag in scalars)


def test_truncate_metrics_keeps_early_steps_and_drops_half_written_line(tmp_path):
    _write_run(tmp_path)
    with open(tmp_path / METRICS_FILE, "a", encoding="utf-8") as file:
        file.write('{"kind": "step", "step": 1, "epo')  # a kill mid-write: no closing brace, no newline.
    truncate_metrics(str(tmp_path), 2)
    assert [(r["kind"], r["step"]) for r in _strict_lines(tmp_path)] == [("step", 1), ("step", 2)]
    assert not glob.glob(str(tmp_path / f".{METRICS_FILE}.*"))  # no temporary file left behind.


def test_read_metrics_skips_incomplete_last_line(tmp_path):
    _write_run(tmp_path, tensorboard=False)
    with open(tmp_path / METRICS_FILE, "a", encoding="utf-8") as file:
        file.write('{"kind": "step", "st')
    assert len(read_metrics(str(tmp_path))) == len(STEPS) + 1


def test_truncate_after_then_write_appends_to_new_file(tmp_path):
    _write_run(tmp_path, tensorboard=False)
    with TrainingLog(str(tmp_path), tensorboard=False) as log:
        log.truncate_after(1)
        log.write({"step": 2, "epoch": 0, "loss": 0.5})
    assert [(r["step"], r.get("loss")) for r in read_metrics(str(tmp_path))] == [(1, 2.25), (2, 0.5)]


def test_reopening_appends_and_keeps_old_lines(tmp_path):
    _write_run(tmp_path, tensorboard=False)
    with TrainingLog(str(tmp_path), tensorboard=False) as log:
        log.write({"step": 4, "epoch": 1, "loss": 1.0})
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [1, 2, 3, 3, 4]


def test_tensorboard_false_writes_no_event_file(tmp_path):
    _write_run(tmp_path, tensorboard=False)
    assert os.listdir(tmp_path) == [METRICS_FILE]


def test_close_twice_and_write_after_close(tmp_path):
    log = TrainingLog(str(tmp_path / "new" / "run"))  # the directory is created.
    log.close()
    log.close()
    with pytest.raises(ValueError, match="TrainingLog of .* is closed"):
        log.write({"step": 1, "epoch": 0})


def test_record_without_step_is_rejected(tmp_path):
    with TrainingLog(str(tmp_path), tensorboard=False) as log:
        with pytest.raises(KeyError, match="has no 'step'"):
            log.write({"epoch": 0, "loss": 1.0})
        with pytest.raises(TypeError, match="int"):
            log.write({"step": 1.5, "epoch": 0})


def test_read_tensorboard_scalars_tolerates_event_file_cut_short(tmp_path):
    _write_run(tmp_path)
    (path,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    with open(path, "rb+") as file:
        file.truncate(os.path.getsize(path) - 3)  # a kill mid-write: the last record (epoch scalars) cut short.
    scalars = read_tensorboard_scalars(str(tmp_path))
    assert [step for step, _ in scalars["step/loss"]] == [1, 2, 3]
