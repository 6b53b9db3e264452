"""``jaxvision predict`` and ``jaxvision evaluate``: probabilities of image files, metrics against scikit-learn."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as sk

from jaxvision.cli.main import main

FOLDER_CLASSES = ("one", "seven", "zero")  # sorted, as the class folders are read
FOLDER_DIGITS = {"one": 1, "seven": 7, "zero": 0}


def run_cli(argv):
    """The exit status of ``jaxvision ARGV``, whether argparse exits or ``main`` returns."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def digit_pixels(count, *, digit=None, offset=0):
    """scikit-learn's 8x8 digits as uint8 [count, 8, 8, 1] (0-16 scaled to 0-255, as jaxvision's digits)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    chosen = np.flatnonzero(bunch.target == digit) if digit is not None else np.arange(len(bunch.target))
    chosen = chosen[offset:offset + count]
    images = np.round(bunch.images[chosen] * 255.0 / 16.0).astype(np.uint8)[..., None]
    return images, bunch.target[chosen]


def save_pngs(folder, images, names):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for image, name in zip(images, names):
        paths.append(os.path.join(folder, name))
        Image.fromarray(image[..., 0]).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("digits") / "run")
    assert run_cli(["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--no-progress",
                    "--output-dir", path]) == 0
    return path


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """An MLP trained 1 epoch on a flat image folder of three digit classes (8x8 grey PNGs)."""
    root = tmp_path_factory.mktemp("folder") / "digits_folder"
    for name, digit in FOLDER_DIGITS.items():
        images, _ = digit_pixels(40, digit=digit)
        save_pngs(str(root / name), images, [f"{i:03d}.png" for i in range(len(images))])
    path = str(tmp_path_factory.mktemp("folder_run") / "run")
    assert run_cli(["train", "--model", "mlp", "--dataset", str(root), "--epochs", "1", "--no-progress",
                    "--output-dir", path]) == 0
    return path, str(root)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six digit PNGs (two in a subfolder), a text file and a hidden folder's image; and their pixels."""
    folder = tmp_path_factory.mktemp("photos")
    images, labels = digit_pixels(6, offset=100)
    paths = save_pngs(str(folder), images[:4], [f"p{i}.png" for i in range(4)])
    paths += save_pngs(str(folder / "sub"), images[4:], ["q4.png", "q5.png"])
    (folder / "notes.txt").write_text("not an image")
    save_pngs(str(folder / ".hidden"), images[:1], ["h.png"])
    return str(folder), paths, images, labels


# ---------------------------------------------------------------------------------------------------------------
# Reading image files.


def test_list_images_walks_folders_sorted_and_keeps_only_images(photos):
    from jaxvision.image_files import list_images

    folder, paths, _, _ = photos
    assert list_images([folder]) == paths  # p0..p3, then sub/q4, sub/q5; no notes.txt, no .hidden/
    assert list_images([paths[5], folder]) == [paths[5], *paths]  # files as given, in the order given


def test_read_images_decodes_pngs_to_their_pixels_in_chunks(photos, digits_run):
    from jaxvision.image_files import iter_image_chunks, read_images

    _, paths, images, _ = photos
    metadata = json.load(open(os.path.join(digits_run, "run.json")))
    np.testing.assert_array_equal(read_images(paths, metadata), images)
    chunks = list(iter_image_chunks(paths, metadata, chunk_size=4))
    assert [len(images) for _, images in chunks] == [4, 2]
    assert [list(indices) for indices, _ in chunks] == [[0, 1, 2, 3], [4, 5]]


def test_read_images_stretches_and_converts_colour_as_pillow_does(tmp_path, digits_run):
    from jaxvision.image_files import read_images

    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (20, 12, 3), np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    expected = np.asarray(Image.fromarray(colour).convert("L").resize((8, 8), Image.Resampling.BILINEAR))
    metadata = json.load(open(os.path.join(digits_run, "run.json")))
    np.testing.assert_array_equal(read_images([str(tmp_path / "colour.png")], metadata)[0, ..., 0], expected)


# ---------------------------------------------------------------------------------------------------------------
# jaxvision predict.


def predict_json(argv, capsys):
    assert run_cli(["predict", *argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert "images/s" in captured.err
    return json.loads(captured.out)


def test_predict_json_has_every_class_summing_to_one_and_equal_to_load_run_predict(digits_run, photos, capsys):
    from jaxvision import load_run

    folder, paths, images, _ = photos
    results = predict_json([digits_run, folder, "--top-k", "10"], capsys)
    assert [result["image"] for result in results] == paths
    expected = load_run(digits_run).predict(images)
    for result, row in zip(results, expected):
        got = {p["class"]: p["probability"] for p in result["predictions"]}
        assert sorted(got) == [str(i) for i in range(10)]
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose([got[str(i)] for i in range(10)], row, rtol=0, atol=1e-6)


def test_predict_shows_the_top_k_most_probable_first_as_json_and_as_lines(digits_run, photos, capsys):
    from jaxvision import load_run

    folder, paths, images, _ = photos
    expected = load_run(digits_run).predict(images)
    results = predict_json([digits_run, folder, "--top-k", "3", "--batch-size", "4"], capsys)
    assert run_cli(["predict", digits_run, folder, "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(paths)
    for result, line, row, path in zip(results, lines, expected, paths):
        best = np.argsort(-row)[:3]
        assert [p["class"] for p in result["predictions"]] == [str(i) for i in best]
        probabilities = [p["probability"] for p in result["predictions"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert line == f"{path}: " + ", ".join(f"{i} {row[i]:.3f}" for i in best)


def test_predict_with_flip_tta_averages_the_image_and_its_mirror(digits_run, photos, capsys):
    from jaxvision import load_run

    folder, _, images, _ = photos
    run = load_run(digits_run)
    expected = (run.predict(images) + run.predict(images[:, :, ::-1])) / 2
    results = predict_json([digits_run, folder, "--top-k", "10", "--tta", "flip"], capsys)
    for result, row in zip(results, expected):
        got = {p["class"]: p["probability"] for p in result["predictions"]}
        np.testing.assert_allclose([got[str(i)] for i in range(10)], row, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Metrics against scikit-learn.


def random_predictions(num_classes=7, count=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, count)
    logits = rng.normal(size=(count, num_classes)) + 2.0 * np.eye(num_classes)[labels]
    logits[:, 3] -= 8.0  # class 3 is never predicted: its precision is 0/0
    return logits.astype(np.float32), labels


def test_classification_metrics_equal_scikit_learns():
    from scipy.special import log_softmax, softmax

    from jaxvision.evaluation import classification_metrics

    logits, labels = random_predictions()
    names = [f"c{i}" for i in range(7)]
    evaluation = classification_metrics(log_softmax(logits.astype(np.float64), axis=1), labels, names)
    probabilities, predicted = softmax(logits.astype(np.float64), axis=1), np.argmax(logits, axis=1)
    precision, recall, f1, support = sk.precision_recall_fscore_support(labels, predicted, labels=range(7), zero_division=0)
    np.testing.assert_array_equal(evaluation.confusion_matrix, sk.confusion_matrix(labels, predicted, labels=range(7)))
    np.testing.assert_allclose(evaluation.precision, precision, rtol=1e-12)
    np.testing.assert_allclose(evaluation.recall, recall, rtol=1e-12)
    np.testing.assert_allclose(evaluation.f1, f1, rtol=1e-12)
    np.testing.assert_array_equal(evaluation.support, support)
    assert evaluation.precision[3] == 0 and evaluation.support[3] > 0
    assert evaluation.accuracy == pytest.approx(sk.accuracy_score(labels, predicted), abs=1e-12)
    assert evaluation.top5_accuracy == pytest.approx(sk.top_k_accuracy_score(labels, probabilities, k=5, labels=range(7)))
    assert evaluation.loss == pytest.approx(sk.log_loss(labels, probabilities, labels=range(7)), rel=1e-9)
    macro = sk.precision_recall_fscore_support(labels, predicted, labels=range(7), average="macro", zero_division=0)
    assert tuple(evaluation.macro_average().values()) == pytest.approx(macro[:3], rel=1e-12)
    assert [row["accuracy"] for row in evaluation.per_class()] == list(recall)


def test_top_5_accuracy_is_left_out_for_five_classes_or_fewer():
    from jaxvision.evaluation import classification_metrics

    logits, labels = random_predictions(num_classes=5)
    assert classification_metrics(logits, labels, list("abcde")).top5_accuracy is None


def test_write_evaluation_writes_the_per_class_table_and_the_confusion_matrix(tmp_path):
    from jaxvision.evaluation import write_evaluation

    logits, labels = random_predictions()
    names = [f"class {i}" for i in range(7)]
    from scipy.special import softmax

    evaluation = write_evaluation(logits, labels, names, str(tmp_path / "out"))
    assert evaluation.loss == pytest.approx(sk.log_loss(labels, softmax(logits.astype(np.float64), axis=1)), rel=1e-5)
    assert sorted(os.listdir(tmp_path / "out")) == ["confusion_matrix.png", "per_class.json", "per_class.txt"]
    saved = json.load(open(tmp_path / "out" / "per_class.json"))
    recall = sk.recall_score(labels, np.argmax(logits, axis=1), labels=range(7), average=None)
    assert [row["class"] for row in saved["per_class"]] == names
    np.testing.assert_allclose([row["recall"] for row in saved["per_class"]], recall, rtol=1e-12)
    table = open(tmp_path / "out" / "per_class.txt").read().splitlines()
    assert table[0].split() == ["class", "support", "precision", "recall", "accuracy", "f1"]
    assert table[1].split()[2:4] == [str(int(evaluation.support[0])), f"{evaluation.precision[0]:.4f}"]
    with Image.open(tmp_path / "out" / "confusion_matrix.png") as picture:
        assert picture.format == "PNG" and min(picture.size) > 100


# ---------------------------------------------------------------------------------------------------------------
# jaxvision evaluate.


def test_evaluate_on_digits_equals_scikit_learn_on_load_run_predict_and_the_runs_test_figures(digits_run, tmp_path,
                                                                                              capsys):
    from jaxvision import load_run

    assert run_cli(["evaluate", digits_run, "--output-dir", str(tmp_path / "ev"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(os.listdir(tmp_path / "ev")) == ["confusion_matrix.png", "evaluation.json", "misclassified.png",
                                                   "per_class.json", "per_class.txt"]
    assert json.load(open(tmp_path / "ev" / "evaluation.json")) == report
    run_json = json.load(open(os.path.join(digits_run, "run.json")))
    # The run's own test evaluation, same batches and normalisation.
    assert report["accuracy"] == run_json["result"]["test_accuracy"]
    assert report["loss"] == pytest.approx(run_json["result"]["test_loss"], rel=1e-5)

    images, labels = digits_test_split()
    probabilities = load_run(digits_run).predict(images)
    predicted = np.argmax(probabilities, axis=1)
    assert report["count"] == len(labels) == 360
    # A near-tie may round apart between the two paths (TF's normalisation and NumPy's).
    assert abs(report["accuracy"] - sk.accuracy_score(labels, predicted)) <= 1 / 360 + 1e-12
    assert report["top5_accuracy"] == pytest.approx(sk.top_k_accuracy_score(labels, probabilities, k=5), abs=1 / 360 + 1e-12)
    assert report["loss"] == pytest.approx(sk.log_loss(labels, probabilities, labels=range(10)), rel=1e-4)
    matrix = np.asarray(report["confusion_matrix"]["counts"])
    assert np.abs(matrix - sk.confusion_matrix(labels, predicted)).sum() <= 2
    precision, recall, f1, support = sk.precision_recall_fscore_support(labels, predicted, zero_division=0)
    rows = report["per_class"]
    np.testing.assert_array_equal([row["support"] for row in rows], support)
    np.testing.assert_allclose([row["recall"] for row in rows], recall, atol=1 / 35 + 1e-9)
    np.testing.assert_allclose([row["accuracy"] for row in rows], [row["recall"] for row in rows], rtol=0)
    np.testing.assert_allclose([row["precision"] for row in rows], precision, atol=0.05)
    # The most confidently wrong images, most confident first, each wrong, at its index in the split.
    wrong = report["misclassified"]
    assert len(wrong) == 16
    confidences = [row["probability"] for row in wrong]
    assert confidences == sorted(confidences, reverse=True)
    order = np.argsort(-np.where(predicted != labels, probabilities.max(axis=1), -1.0), kind="stable")[:16]
    assert [row["index"] for row in wrong] == order.tolist()
    np.testing.assert_allclose(confidences, probabilities.max(axis=1)[order], atol=1e-5)
    assert [row["true"] for row in wrong] == [str(labels[i]) for i in order]


def test_evaluate_prints_the_headline_and_the_per_class_table(digits_run, tmp_path, capsys):
    assert run_cli(["evaluate", digits_run, "--output-dir", str(tmp_path / "ev"), "--misclassified", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    report = json.load(open(tmp_path / "ev" / "evaluation.json"))
    assert out[0] == (f"digits test: loss {report['loss']:.4f} | accuracy {report['accuracy']:.4f} (360 images) | "
                      f"top-5 accuracy {report['top5_accuracy']:.4f}")
    assert out[1].split() == ["class", "support", "precision", "recall", "accuracy", "f1"]
    assert [line.split()[0] for line in out[2:12]] == [str(i) for i in range(10)]
    assert "recall" in out[-1] and "accuracy" in out[-1]
    assert "misclassified.png" not in os.listdir(tmp_path / "ev")


def digits_test_split():
    from jaxvision import data

    dataset, _ = data.load("digits", "test")
    pairs = list(dataset.as_numpy_iterator())
    return np.stack([image for image, _ in pairs]), np.asarray([label for _, label in pairs])


def test_evaluate_with_flip_tta_averages_each_test_image_and_its_mirror(digits_run):
    from jaxvision import load_run
    from jaxvision.evaluation import evaluate_run

    run = load_run(digits_run)
    evaluation = evaluate_run(run, tta="flip", misclassified=0)
    images, labels = digits_test_split()
    probabilities = (run.predict(images) + run.predict(images[:, :, ::-1])) / 2
    assert abs(evaluation.accuracy - sk.accuracy_score(labels, np.argmax(probabilities, axis=1))) <= 1 / 360 + 1e-12
    assert evaluation.loss == pytest.approx(sk.log_loss(labels, probabilities, labels=range(10)), rel=1e-4)
    assert evaluation.about["tta"] == "flip"
    # Mirrored digits are not digits: the views must have changed the figures.
    assert evaluation.loss > run.metadata["result"]["test_loss"] + 0.05


def test_evaluate_on_an_image_folder_uses_the_runs_test_split_and_names_the_wrong_files(folder_run, capsys):
    from jaxvision import load_run
    from jaxvision.evaluation import evaluate_run

    run_dir, root = folder_run
    run = load_run(run_dir)
    evaluation = evaluate_run(run, misclassified=100)
    assert evaluation.count == run.metadata["dataset"]["test"] == 24  # 20% of 3 x 40
    assert evaluation.top5_accuracy is None and evaluation.class_names == list(FOLDER_CLASSES)
    # Independently: the test files are those not used for training; their class is their folder's name.
    from jaxvision.data.image_folder import scan_image_folder

    files = scan_image_folder(root, validation_fraction=0.1, seed=0).files["test"]
    labels = np.asarray([FOLDER_CLASSES.index(os.path.basename(os.path.dirname(f))) for f in files])
    images = np.stack([np.asarray(Image.open(f))[..., None] for f in files])
    probabilities = run.predict(images)
    predicted = np.argmax(probabilities, axis=1)
    assert evaluation.accuracy == pytest.approx(sk.accuracy_score(labels, predicted), abs=1e-12)
    assert evaluation.loss == pytest.approx(sk.log_loss(labels, probabilities, labels=range(3)), rel=1e-4)
    np.testing.assert_array_equal(evaluation.confusion_matrix, sk.confusion_matrix(labels, predicted))
    wrong = np.flatnonzero(predicted != labels)
    assert sorted(row["image"] for row in evaluation.misclassified) == sorted(files[i] for i in wrong)
    for row, pixels in zip(evaluation.misclassified, evaluation.misclassified_images):
        np.testing.assert_array_equal(pixels[..., 0], np.asarray(Image.open(row["image"])))
        assert row["true"] == os.path.basename(os.path.dirname(row["image"]))
    assert run_cli(["evaluate", run_dir]) == 0
    assert capsys.readouterr().out.startswith(f"{root} test: loss ")
    assert os.path.isfile(os.path.join(run_dir, "evaluation", "misclassified.png"))


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, before the model is loaded.


@pytest.fixture
def no_model(monkeypatch):
    """Loading a run's model fails loudly (not a ValueError), so a check that comes after it shows."""
    import jaxvision.run_record

    def refuse(*args, **kwargs):
        raise AssertionError("load_run was called: the check must come first")

    monkeypatch.setattr(jaxvision.run_record, "load_run", refuse)


def bad_inputs(tmp_path, digits_run, photos):
    folder = photos[0]
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    return {
        "missing run": (["predict", str(tmp_path / "nosuch"), folder], "is not a jaxvision run", True),
        "not an image": (["predict", digits_run, str(tmp_path / "notes.txt")], "notes.txt is not an image", True),
        "missing image": (["predict", digits_run, str(tmp_path / "gone.png")], "gone.png does not exist", True),
        "no images": (["predict", digits_run, str(tmp_path / "empty")], "has no images", True),
        "top-k 0": (["predict", digits_run, folder, "--top-k", "0"], "Invalid --top-k 0: expected an integer in [1, 10]", True),
        "top-k 11": (["predict", digits_run, folder, "--top-k", "11"], "Invalid --top-k 11", True),
        "bad tta": (["predict", digits_run, folder, "--tta", "flop"], "Invalid test-time view 'flop'", True),
        "broken image": (["predict", digits_run, str(tmp_path / "broken.png")], "Cannot decode image", False),
        "unknown split": (["evaluate", digits_run, "--split", "tset"], "Unknown split 'tset'", True),
        "missing run (evaluate)": (["evaluate", str(tmp_path / "nosuch")], "is not a jaxvision run", True),
        "output dir is a file": (["evaluate", digits_run, "--output-dir", str(tmp_path / "notes.txt")], "it is a file",
                                 True),
    }


@pytest.mark.parametrize("case", ["missing run", "not an image", "missing image", "no images", "top-k 0", "top-k 11",
                                  "bad tta", "broken image", "unknown split", "missing run (evaluate)",
                                  "output dir is a file"])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, digits_run, photos, capsys, request):
    argv, message, before_loading = bad_inputs(tmp_path, digits_run, photos)[case]
    if before_loading:
        request.getfixturevalue("no_model")
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"jaxvision {argv[0]}: error: ") and message in err, err
    if case == "broken image":
        assert str(tmp_path / "broken.png") in err


def test_evaluating_on_a_dataset_of_other_classes_is_one_line(folder_run, capsys):
    run_dir, _ = folder_run
    assert run_cli(["evaluate", run_dir, "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Pass a dataset of the run's classes" in err, err


def test_a_run_whose_image_folder_moved_is_evaluated_with_dataset(folder_run, tmp_path, capsys):
    import shutil

    run_dir, root = folder_run
    moved = str(tmp_path / "run")
    shutil.copytree(run_dir, moved)
    record = json.load(open(os.path.join(moved, "run.json")))
    record["settings"]["dataset"] = record["dataset"]["name"] = str(tmp_path / "gone")
    json.dump(record, open(os.path.join(moved, "run.json"), "w"))
    assert run_cli(["evaluate", moved]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{tmp_path / 'gone'}" in err and "pass --dataset" in err, err
    assert run_cli(["evaluate", moved, "--dataset", root, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 24
