"""``jaxvision train/predict/evaluate --task binary|regress|segment|detect`` on the generated ``shapes/small``."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxvision.cli.main import main
from jaxvision.tasks import HEADLINES


def run_cli(argv):
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


SMALL = {"binary": ["--model", "convnet"], "regress": ["--model", "convnet"],
         "segment": ["--model", "unet_small"], "detect": ["--model", "convnet"]}


@pytest.fixture(scope="module", params=sorted(SMALL))
def task_run(request, tmp_path_factory):
    task = request.param
    path = str(tmp_path_factory.mktemp(task) / "run")
    status = run_cli(["train", "--task", task, "--dataset", "shapes/small", "--epochs", "1", "--batch-size", "32",
                      "--no-progress", "--output-dir", path, *SMALL[task]])
    assert status == 0
    return task, path


def test_train_writes_the_task_metrics(task_run):
    task, path = task_run
    with open(os.path.join(path, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["task"] == task and metrics["test_examples"] == 200
    for name in HEADLINES[task]:
        value = metrics[f"test_{name}"]
        assert value is None or np.isfinite(value)
    with open(os.path.join(path, "run.json")) as f:
        record = json.load(f)
    assert record["status"] == "complete" and record["task"]["name"] == task
    if task in ("segment", "detect"):
        assert os.path.getsize(os.path.join(path, "predictions.png")) > 1000
        with open(os.path.join(path, "per_class.txt")) as f:
            table = f.read()
        assert "circle" in table and "mean" in table


def _test_pngs(tmp_path, count=3):
    import tensorflow_datasets as tfds

    from jaxvision.data import pipeline

    dataset = pipeline.builder("shapes/small").as_dataset(split=f"test[:{count}]", shuffle_files=False)
    paths = []
    for i, example in enumerate(tfds.as_numpy(dataset)):
        paths.append(str(tmp_path / f"scene{i}.png"))
        Image.fromarray(example["image"]).save(paths[-1])
    return paths


def test_predict_prints_one_line_per_image_and_writes_masks(task_run, tmp_path, capsys):
    task, path = task_run
    paths = _test_pngs(tmp_path)
    out = str(tmp_path / "out")
    capsys.readouterr()
    assert run_cli(["predict", path, *paths, "--output-dir", out, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == paths
    if task == "binary":
        assert all(0 <= r["probability"] <= 1 for r in results)
    elif task == "regress":
        assert all(np.isfinite(r["area_fraction"]) for r in results)
    elif task == "segment":
        mask = np.asarray(Image.open(os.path.join(out, "scene0_mask.png")))
        assert mask.shape == (32, 32) and mask.max() <= 3
        assert abs(sum(results[0]["fractions"].values()) - 1) < 1e-6
    else:
        assert all(isinstance(r["objects"], list) for r in results)
    if task in ("segment", "detect"):
        assert os.path.getsize(os.path.join(out, "predictions.png")) > 1000


def test_evaluate_gives_the_figures_train_wrote(task_run, tmp_path, capsys):
    task, path = task_run
    out = str(tmp_path / "evaluation")
    assert run_cli(["evaluate", path, "--output-dir", out, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["metrics"]
    with open(os.path.join(path, "metrics.json")) as f:
        metrics = json.load(f)
    headline = HEADLINES[task][0]
    if metrics[f"test_{headline}"] is not None:
        assert figures[headline] == pytest.approx(metrics[f"test_{headline}"], abs=1e-5)


def test_python_api_predicts_by_task(task_run):
    from jaxvision.run_record import load_run

    task, path = task_run
    run = load_run(path)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    predictions = run.predict(images)
    if task == "binary":
        assert predictions.shape == (2,)
    elif task == "regress":
        assert predictions.shape == (2, 1)
    elif task == "segment":
        assert predictions.shape == (2, 32, 32)
    else:
        assert len(predictions) == 2 and set(predictions[0]) == {"boxes", "scores", "classes"}


@pytest.mark.parametrize("argv, message", [
    (["--task", "regress", "--augment", "rotate:10"], "Invalid --augment item 'rotate' for --task regress"),
    (["--task", "detect", "--augment", "flip,mixup"], "mixup mixes class labels"),
    (["--task", "detect", "--model", "unet"], "Invalid --model unet for --task detect"),
    (["--model", "unet_small"], "Invalid --model unet_small for --task classify"),
    (["--task", "binary", "--label-smoothing", "0.1"], "--label-smoothing 0.1 with --task binary"),
    (["--task", "segment", "--dataset", "digits"], "has no segmentation mask"),
    (["--task", "segment", "--dataset", "shapes/small", "--target", "label"],
     "Feature 'label' of shapes is not a mask (shape (), expected [height, width] or [height, width, 1]): "
     "pass --target with one of mask"),
    (["--task", "regress", "--dataset", "shapes/small", "--target", "colour"], "no numeric target 'colour'"),
])
def test_bad_task_options_get_one_line(argv, message, tmp_path, capsys):
    output = str(tmp_path / "run")
    assert run_cli(["train", "--epochs", "1", "--output-dir", output, "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and len([line for line in err if "error" in line]) == 1
    assert not os.path.exists(os.path.join(output, "run.json"))


def test_predict_refuses_another_task(task_run, tmp_path, capsys):
    task, path = task_run
    other = "binary" if task != "binary" else "segment"
    assert run_cli(["predict", path, str(tmp_path), "--task", other]) == 2
    assert f"trained for --task {task}" in capsys.readouterr().err
