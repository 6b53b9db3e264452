"""The bad-input catalogue (issue 19, item 8): every bad input to the CLI and the Python API is refused at the
boundary with one line, no traceback, and nothing left behind.

CLI cases run ``jaxvision.cli.main.main(argv)`` in-process, in a fresh ``tmp_path`` that is also the working
directory (so the default ``runs/`` lands there), and assert: exit status 2, exactly one non-empty line on stderr,
``jaxvision <command>: error: ...`` (``jaxvision: error:`` for what the top-level parser refuses), a fragment that
names the bad value, nothing on stdout, no "Traceback", and the same files and folders (paths and contents) under
``tmp_path`` before and after. (capsys sees Python's streams; TensorFlow's C++ log lines on fd 2 are not the
library's messages.) A case's setup (image folders, a copy of a finished run, a held lock) runs before the first snapshot.

API cases call the function with a bad argument and assert a one-line ValueError matching a fragment, with nothing
left behind either. The cases that need a finished run share one run trained for one epoch per module.

A case that fails because of a library bug stays in the catalogue as a strict xfail whose reason says what happens.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from jaxvision.cli.main import main

# --- shared helpers ---------------------------------------------------------------------------------------------


def _snapshot(root) -> dict[str, str]:
    """Every folder and file under ``root``: relative path -> "dir" or the file's sha256."""
    found = {}
    for directory, folders, files in os.walk(root):
        for name in folders:
            found[os.path.relpath(os.path.join(directory, name), root) + "/"] = "dir"
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


def _changes(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    return {
        "new": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(p for p in set(before) & set(after) if before[p] != after[p]),
    }


def _run_cli(argv: list[str]) -> int:
    """``jaxvision ARGV``'s exit status, whether argparse exits or ``main`` returns."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def _png(path, size=(8, 8), *, seed=0, mode="L") -> str:
    """A small noise PNG (noise, so that its data is more than a few bytes)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = size if mode == "L" else (*size, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return str(path)


def _classes(root, names=("cat", "dog"), count=5) -> None:
    for label, name in enumerate(names):
        for i in range(count):
            _png(os.path.join(root, name, f"{i:02d}.png"), seed=100 * label + i)


# --- the finished run the resume and predict cases share -----------------------------------------------------------


@pytest.fixture(autouse=True)
def _digits_prepared():
    """digits is generated on first use, and TFDS says so on stdout; the cases expect a quiet stdout."""
    from jaxvision import data

    data.builder("digits")


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory) -> str:
    """A run folder of ``jaxvision train`` (MLP on digits, one epoch), finished."""
    base = tmp_path_factory.mktemp("catalogue_run")
    run = base / "run"
    with pytest.MonkeyPatch.context() as patch:
        # As conftest's function-scoped _isolated_cache, which a module fixture runs before.
        patch.setenv("JAXVISION_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jaxvision_cache"))
        patch.chdir(base)
        status = main(["train", "--epochs", "1", "--no-progress", "--output-dir", str(run)])
    assert status == 0
    return str(run)


# --- CLI setups: each makes, in tmp_path, what its case's argv names; may return a clean-up -------------------------


def copy_run(tmp_path, completed_run):
    shutil.copytree(completed_run, tmp_path / "run")


def hand_made_run(tmp_path, completed_run):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.json").write_text('{"status": "complete"}\n')


def checkpoints_without_run_file(tmp_path, completed_run):
    (tmp_path / "out" / "checkpoints").mkdir(parents=True)


def output_is_a_file(tmp_path, completed_run):
    (tmp_path / "out.txt").write_text("not a folder\n")


def locked_output(tmp_path, completed_run):
    """Another run (pid 4242) holds --output-dir's lock: a second open file description, flock'ed."""
    (tmp_path / "out").mkdir()
    fd = os.open(tmp_path / "out" / ".jaxvision.lock", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return lambda: os.close(fd)


def empty_root(tmp_path, completed_run):
    (tmp_path / "photos").mkdir()


def root_is_a_file(tmp_path, completed_run):
    (tmp_path / "photos.zip").write_bytes(b"PK\x03\x04 not really a zip")


def files_beside_no_class(tmp_path, completed_run):
    _png(tmp_path / "photos" / "a.png")
    _png(tmp_path / "photos" / "b.png", seed=1)


def one_class(tmp_path, completed_run):
    _classes(tmp_path / "photos", names=("cat",))


def empty_class_folder(tmp_path, completed_run):
    _classes(tmp_path / "photos", names=("cat",))
    (tmp_path / "photos" / "dog").mkdir()


def class_only_in_test(tmp_path, completed_run):
    _classes(tmp_path / "photos" / "train")
    _classes(tmp_path / "photos" / "test", names=("cat", "dog", "bird"), count=2)


def split_folders_without_train(tmp_path, completed_run):
    _classes(tmp_path / "photos" / "val")
    _classes(tmp_path / "photos" / "test")


def split_folders_and_class_folders(tmp_path, completed_run):
    _classes(tmp_path / "photos" / "train")
    _classes(tmp_path / "photos", names=("owl",))


def both_val_and_validation(tmp_path, completed_run):
    for split in ("train", "val", "validation"):
        _classes(tmp_path / "photos" / split)


def val_without_class_folders(tmp_path, completed_run):
    _classes(tmp_path / "photos" / "train")
    (tmp_path / "photos" / "val").mkdir()


def too_few_images(tmp_path, completed_run):
    _classes(tmp_path / "photos", count=2)


def truncated_png(tmp_path, completed_run):
    _classes(tmp_path / "photos")
    path = _png(tmp_path / "photos" / "cat" / "broken.png", size=(16, 16), seed=7)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def only_non_images(tmp_path, completed_run):
    for name in ("cat", "dog"):
        os.makedirs(tmp_path / "photos" / name)
        (tmp_path / "photos" / name / "notes.txt").write_text("not an image\n")


def unreadable_images(tmp_path, completed_run):
    for name in ("cat", "dog"):
        for i in range(5):
            os.makedirs(tmp_path / "photos" / name, exist_ok=True)
            (tmp_path / "photos" / name / f"{i}.png").write_bytes(b"these bytes are no PNG")


def an_image(tmp_path, completed_run):
    _png(tmp_path / "img.png")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing a decoder wants")


# --- the CLI catalogue -----------------------------------------------------------------------------------------------

OUT = ["--no-progress", "--output-dir", "{tmp}/out"]
TRAIN = ["train", *OUT]
SWEEP = ["sweep", *OUT]
FOLDER = "{tmp}/photos"

# argv, fragment of the one error line ({tmp} is tmp_path), setup (or None), pytest id.
CLI_CASES = [
    # Names: unknown, and typos with a suggestion.
    ([*TRAIN, "--model", "nosuch"], "Unknown model 'nosuch'", None, "model-unknown"),
    ([*TRAIN, "--model", "lenet"], "Did you mean 'lenet5'?", None, "model-typo"),  # the README's example
    ([*TRAIN, "--model", "resnt18"], "Did you mean 'resnet18'?", None, "model-typo-suggestion"),
    ([*TRAIN, "--dataset", "nosuch"], "Unknown dataset 'nosuch'", None, "dataset-unknown"),
    ([*TRAIN, "--dataset", "mnsit"], "Did you mean 'mnist'?", None, "dataset-typo"),
    ([*TRAIN, "--optimizer", "adm"], "argument --optimizer: invalid choice: 'adm'", None, "optimizer-unknown"),
    ([*TRAIN, "--schedule", "cosine"], "argument --schedule: invalid choice: 'cosine'", None, "schedule-unknown"),
    ([*TRAIN, "--loss", "hinge"], "argument --loss: invalid choice: 'hinge'", None, "loss-unknown"),
    pytest.param(
        [*TRAIN, "--activation", "rleu"], "error: Unknown activation 'rleu'", None, id="activation-typo"),
    ([*TRAIN, "--model", "perceptron", "--dropout-rate", "0.5"], "Model 'perceptron' has no field(s) dropout_rate",
     None, "dropout-on-a-model-without-dropout"),
    ([*TRAIN, "--kernels", "gpu"], "argument --kernels: invalid choice: 'gpu'", None, "train-kernels-gpu"),
    # Optimiser numbers.
    ([*TRAIN, "--learning-rate", "-1"], "invalid value '-1': expected a finite positive number", None, "lr-negative"),
    ([*TRAIN, "--learning-rate", "0"], "invalid value '0': expected a finite positive number", None, "lr-zero"),
    ([*TRAIN, "--learning-rate", "inf"], "invalid value 'inf': expected a finite positive number", None, "lr-inf"),
    ([*TRAIN, "--learning-rate", "nan"], "invalid value 'nan': expected a finite positive number", None, "lr-nan"),
    ([*TRAIN, "--learning-rate", "fast"], "invalid value 'fast': expected a positive number", None, "lr-word"),
    ([*TRAIN, "--weight-decay", "nan"], "invalid value 'nan': expected a finite number >= 0", None, "wd-nan"),
    ([*TRAIN, "--weight-decay", "inf"], "invalid value 'inf': expected a finite number >= 0", None, "wd-inf"),
    ([*TRAIN, "--weight-decay=-1e-4"], "invalid value '-1e-4': expected a finite number >= 0", None, "wd-negative"),
    ([*TRAIN, "--momentum", "nan"], "invalid value 'nan': expected a finite number >= 0", None, "momentum-nan"),
    ([*TRAIN, "--momentum", "inf"], "invalid value 'inf': expected a finite number >= 0", None, "momentum-inf"),
    # Regularisation and data fractions.
    ([*TRAIN, "--dropout-rate", "1"], "invalid value '1': expected a number in [0, 1)", None, "dropout-one"),
    ([*TRAIN, "--dropout-rate", "nan"], "invalid value 'nan': expected a number in [0, 1)", None, "dropout-nan"),
    ([*TRAIN, "--dropout-rate=-0.1"], "invalid value '-0.1': expected a number in [0, 1)", None, "dropout-negative"),
    ([*TRAIN, "--validation-fraction", "0"], "invalid value '0': expected a number in (0, 1)", None, "val-fraction-0"),
    ([*TRAIN, "--validation-fraction", "1.5"], "invalid value '1.5': expected a number in (0, 1)", None,
     "val-fraction-1.5"),
    ([*TRAIN, "--validation-fraction", "nan"], "invalid value 'nan': expected a number in (0, 1)", None,
     "val-fraction-nan"),
    # Counts.
    ([*TRAIN, "--batch-size", "0"], "argument --batch-size: invalid value 0: expected a positive integer", None,
     "batch-size-0"),
    ([*TRAIN, "--eval-batch-size", "-5"], "argument --eval-batch-size: invalid value -5", None, "eval-batch-size"),
    ([*TRAIN, "--batch-size", "1.5"], "invalid value '1.5': expected a positive integer", None, "batch-size-float"),
    ([*TRAIN, "--epochs", "0"], "argument --epochs: invalid value 0: expected a positive integer", None, "epochs-0"),
    ([*TRAIN, "--patience", "0"], "argument --patience: invalid value 0", None, "patience-0"),
    ([*TRAIN, "--checkpoint-every", "0"], "argument --checkpoint-every: invalid value 0", None, "checkpoint-every-0"),
    ([*TRAIN, "--checkpoint-minutes", "nan"], "argument --checkpoint-minutes: invalid value 'nan'", None,
     "checkpoint-minutes-nan"),
    ([*TRAIN, "--keep-checkpoints", "0"], "argument --keep-checkpoints: invalid value 0", None, "keep-checkpoints-0"),
    # Seeds.
    ([*TRAIN, "--seed=-1"], "invalid seed -1: expected an integer in [0, 4294967295]", None, "seed-negative"),
    ([*TRAIN, "--seed", "99999999999999999999999"], "invalid seed 99999999999999999999999", None, "seed-overflow"),
    ([*TRAIN, "--seed", "abc"], "invalid seed 'abc'", None, "seed-word"),
    # Specs: augmentation and test-time augmentation.
    ([*TRAIN, "--augment", ""], "invalid spec '': expected comma-separated items without empty ones", None,
     "augment-empty"),
    ([*TRAIN, "--augment", "flip,,crop"], "invalid spec 'flip,,crop'", None, "augment-empty-item"),
    ([*TRAIN, "--augment", "nosuch"], "Unknown augmentation 'nosuch'", None, "augment-unknown"),
    ([*TRAIN, "--augment", "rotat:10"], "Did you mean 'rotate'", None, "augment-typo"),
    ([*TRAIN, "--augment", "rotate:400"], "Invalid magnitude for rotate", None, "augment-magnitude"),
    ([*TRAIN, "--tta", ""], "argument --tta: invalid spec ''", None, "tta-empty"),
    ([*TRAIN, "--tta", "7"], "Invalid views=7", None, "tta-7"),
    # Image size, resize and channels.
    ([*TRAIN, "--image-size", "0"], "invalid image size '0'", None, "image-size-0"),
    ([*TRAIN, "--image-size", "a"], "invalid image size 'a'", None, "image-size-word"),
    ([*TRAIN, "--image-size", "1,2,3"], "invalid image size '1,2,3'", None, "image-size-three"),
    ([*TRAIN, "--channels", "2"], "argument --channels: invalid choice: 2", None, "channels-2"),
    ([*TRAIN, "--resize", "nosuch"], "argument --resize: invalid choice: 'nosuch'", None, "resize-unknown"),
    ([*TRAIN, "--resize", "pad"], "resize='pad' applies to image folders only; 'digits' is a TFDS dataset", None,
     "resize-on-tfds"),
    # Pretrained weights and fine-tuning (issue 20).
    ([*TRAIN, "--finetune", "linear"], "--finetune needs --weights", None, "finetune-without-weights"),
    ([*TRAIN, "--finetune", "last:0"], "invalid finetune 'last:0'", None, "finetune-last-0"),
    ([*TRAIN, "--finetune", "head"], "invalid finetune 'head'", None, "finetune-unknown"),
    ([*TRAIN, "--backbone-lr-scale", "0.1"], "--backbone-lr-scale needs --weights", None, "lr-scale-without-weights"),
    ([*TRAIN, "--keep-head"], "--keep-head needs --weights", None, "keep-head-without-weights"),
    ([*TRAIN, "--weights", "nosuch.pth"], "Invalid --weights nosuch.pth: no such file or folder", None,
     "weights-missing"),
    ([*TRAIN, "--label-smoothing", "1"], "argument --label-smoothing: invalid value '1'", None, "label-smoothing-1"),
    ([*TRAIN, "--ema-decay", "1"], "argument --ema-decay: invalid decay '1'", None, "ema-decay-1"),
    ([*TRAIN, "--accumulate-steps", "0"], "argument --accumulate-steps", None, "accumulate-0"),
    ([*TRAIN, "--clip-grad-norm", "0"], "argument --clip-grad-norm", None, "clip-0"),
    ([*TRAIN, "--dtype", "float16"], "argument --dtype: invalid choice: 'float16'", None, "dtype-float16"),
    ([*TRAIN, "--loss", "l2", "--label-smoothing", "0.1"], "label smoothing needs a softmax loss", None,
     "label-smoothing-l2"),
    # Models too big for their inputs, found before anything compiles.
    ([*TRAIN, "--model", "lenet5"], "lenet5 needs inputs of at least 12x12; got 8x8. Pass --image-size 12 to resize.",
     None, "lenet5-on-digits"),
    ([*TRAIN, "--model", "vgg11"], "vgg11 needs inputs of at least 32x32; got 8x8. Pass --image-size 32 to resize.",
     None, "vgg11-on-digits"),
    ([*SWEEP, "--model", "lenet5", "--seeds", "2", "--epochs", "1"], "lenet5 needs inputs of at least 12x12; got 8x8",
     None, "sweep-lenet5-on-digits"),
    pytest.param(
        ["train", "--no-progress", "--model", "lenet5"], "lenet5 needs inputs of at least 12x12", None,
        id="default-output-dir-left-behind"),
    # Output folders.
    ([*TRAIN[:2], "--output-dir", "{tmp}/out.txt"], "--output-dir {tmp}/out.txt is a file, not a folder",
     output_is_a_file, "output-dir-is-a-file"),
    ([*TRAIN[:2], "--output-dir", "{tmp}/run"], "--output-dir {tmp}/run holds another run: pass --resume", copy_run,
     "output-dir-holds-a-run"),
    pytest.param(
        [*TRAIN, "--epochs", "1"], "--output-dir {tmp}/out holds another run", hand_made_run,
        id="output-dir-holds-a-hand-made-run"),
    pytest.param(
        [*TRAIN, "--resume"], "it holds checkpoints but no run.json", checkpoints_without_run_file,
        id="resume-checkpoints-without-run-json"),
    pytest.param(
        [*TRAIN[:2], "--output-dir", "{tmp}/deep/nested/out", "--dataset", "./nosuch_dir"],
        "Image folder {tmp}/nosuch_dir does not exist", None, id="nested-output-dir-left-behind"),
    ([*TRAIN, "--epochs", "1"], "another jaxvision run (pid 4242) is using --output-dir {tmp}/out", locked_output,
     "output-dir-locked"),
    ([*TRAIN[:2], "--output-dir", "{tmp}/run", "--epochs", "1", "--learning-rate", "0.01", "--resume"],
     "cannot resume {tmp}/run: its settings differ: learning_rate 0.003 -> 0.01", copy_run, "resume-other-settings"),
    ([*TRAIN[:2], "--output-dir", "{tmp}/run", "--epochs", "1", "--model", "simple_cnn", "--resume"],
     "model 'mlp' -> 'simple_cnn'", copy_run, "resume-other-model"),
    ([*TRAIN[:2], "--output-dir", "{tmp}/run", "--resume", "--overwrite"],
     "--resume and --overwrite exclude each other", copy_run, "resume-and-overwrite"),
    # Image folders.
    ([*TRAIN, "--dataset", "./nosuch_dir"], "Image folder {tmp}/nosuch_dir does not exist", None, "folder-missing"),
    ([*TRAIN, "--dataset", FOLDER], "Image folder {tmp}/photos is empty", empty_root, "folder-empty"),
    ([*TRAIN, "--dataset", "{tmp}/photos.zip"], "{tmp}/photos.zip is a file, not a folder", root_is_a_file,
     "folder-is-a-file"),
    ([*TRAIN, "--dataset", FOLDER], "{tmp}/photos has no class folders (only 2 files directly in it)",
     files_beside_no_class, "folder-without-class-folders"),
    ([*TRAIN, "--dataset", FOLDER], "a classifier needs at least 2 classes; found 1: cat", one_class,
     "folder-one-class"),
    ([*TRAIN, "--dataset", FOLDER], "Class folder {tmp}/photos/dog has no images", empty_class_folder,
     "folder-empty-class"),
    ([*TRAIN, "--dataset", FOLDER], "Class 'bird' is in {tmp}/photos/test/bird but not in {tmp}/photos/train",
     class_only_in_test, "folder-class-only-in-test"),
    ([*TRAIN, "--dataset", FOLDER], "{tmp}/photos has test/, val/ but no train/", split_folders_without_train,
     "folder-splits-without-train"),
    ([*TRAIN, "--dataset", FOLDER], "mixes split folders (train/) with other folders (owl/)",
     split_folders_and_class_folders, "folder-splits-and-classes"),
    ([*TRAIN, "--dataset", FOLDER], "has both val/ and validation/ for the validation split", both_val_and_validation,
     "folder-val-and-validation"),
    ([*TRAIN, "--dataset", FOLDER], "{tmp}/photos/val has no class folders", val_without_class_folders,
     "folder-val-without-classes"),
    ([*TRAIN, "--dataset", FOLDER], "No validation images are left", too_few_images, "folder-too-few-images"),
    ([*TRAIN, "--dataset", FOLDER], "Cannot decode image {tmp}/photos/cat/broken.png", truncated_png,
     "folder-truncated-png"),
    ([*TRAIN, "--dataset", FOLDER], "Class folder {tmp}/photos/cat has no images (1 non-image file skipped)",
     only_non_images, "folder-only-non-images"),
    ([*TRAIN, "--dataset", FOLDER], "None of the 7 training images of {tmp}/photos can be read", unreadable_images,
     "folder-unreadable-images"),
    # sweep's lists and seeds.
    ([*SWEEP, "--learning-rates", "1e-3,,1e-2"], "invalid list '1e-3,,1e-2'", None, "sweep-lr-empty-item"),
    ([*SWEEP, "--learning-rates", ""], "argument --learning-rates: invalid list ''", None, "sweep-lr-empty"),
    ([*SWEEP, "--learning-rates", "1e-3,inf"], "invalid value 'inf': expected a finite positive number", None,
     "sweep-lr-inf"),
    ([*SWEEP, "--weight-decays", "0,nan"], "argument --weight-decays: invalid value 'nan'", None, "sweep-wd-nan"),
    ([*SWEEP, "--dropout-rates", "0,1"], "argument --dropout-rates: invalid value '1'", None, "sweep-dropout-one"),
    ([*SWEEP, "--model", "perceptron", "--dropout-rates", "0,0.5"], "Model 'perceptron' has no field(s) dropout_rate",
     None, "sweep-dropout-without-field"),
    ([*SWEEP, "--seeds", "0"], "argument --seeds: invalid value 0: expected a positive integer", None,
     "sweep-seeds-0"),
    ([*SWEEP, "--first-seed", "4294967295", "--seeds", "2"], "Invalid seeds 4294967295..4294967296", None,
     "sweep-seeds-overflow"),
    ([*SWEEP, "--first-seed=-1"], "argument --first-seed: invalid seed -1", None, "sweep-first-seed-negative"),
    ([*SWEEP, "--strategy", "pmap"], "argument --strategy: invalid choice: 'pmap'", None, "sweep-strategy"),
    # summary.
    (["summary", "--model", "vgg16", "--input-shape", "5,5,1"],
     "vgg16 needs inputs of at least 32x32; got 5x5. Pass --input-shape 32,32,1 or larger.", None, "summary-5x5"),
    (["summary", "--model", "lenet5", "--input-shape", "8,8,1"], "lenet5 needs inputs of at least 12x12; got 8x8",
     None, "summary-lenet5-8x8"),
    (["summary", "--model", "vgg16", "--input-shape", "224,224"], "Invalid --input-shape 224,224: expected H,W,C "
     "(3 sizes, got 2)", None, "summary-rank-2"),
    (["summary", "--model", "vgg16", "--input-shape", "224,224,3,1"], "Invalid --input-shape 224,224,3,1: expected "
     "H,W,C (3 sizes, got 4)", None, "summary-rank-4"),
    (["summary", "--model", "vgg16", "--input-shape", "0,0,3"], "invalid shape '0,0,3': expected positive integers",
     None, "summary-zero-shape"),
    (["summary", "--model", "vgg16", "--input-shape", "a,b,c"], "invalid shape 'a,b,c'", None, "summary-word-shape"),
    (["summary", "--model", "nosuch", "--input-shape", "28,28,1"], "Unknown model 'nosuch'", None, "summary-model"),
    (["summary", "--model", "mlp", "--input-shape", "8,8,1", "--num-classes", "0"],
     "argument --num-classes: invalid value 0", None, "summary-num-classes-0"),
    # kernels.
    (["kernels", "{tmp}/img.png", "--kernel", "nosuch", "--output", "{tmp}/k.png"], "Unknown kernel 'nosuch'",
     an_image, "kernels-unknown"),
    (["kernels", "{tmp}/img.png", "--kernel", "edg", "--output", "{tmp}/k.png"], "Did you mean 'edge'?",
     an_image, "kernels-typo"),
    (["kernels", "{tmp}/img.png", "--kernel", "edge", "--kernels", "gpu"], "unrecognized arguments: --kernels gpu",
     an_image, "kernels-kernels-gpu"),
    (["kernels", "{tmp}/img.png", "--kernel", "edge", "--all"], "argument --all: not allowed with argument --kernel",
     an_image, "kernels-kernel-and-all"),
    (["kernels", "./nosuch.png", "--kernel", "edge"], "Image file './nosuch.png' not found", None, "kernels-missing"),
    (["kernels", "{tmp}/garbage.png", "--kernel", "edge", "--output", "{tmp}/deep/k.png"],
     "Cannot read '{tmp}/garbage.png' as an image", an_image, "kernels-not-an-image"),
    (["kernels", "{tmp}/img.png", "--kernel", "edge", "--output", "{tmp}/k.xyz"], "its extension '.xyz'", an_image,
     "kernels-output-format"),
    # augment-preview.
    (["augment-preview", "--augment", "", "--output", "{tmp}/p.png"], "argument --augment: invalid spec ''", None,
     "preview-augment-empty"),
    (["augment-preview", "--augment", "nosuch", "--output", "{tmp}/p.png"], "Unknown augmentation 'nosuch'", None,
     "preview-augment-unknown"),
    (["augment-preview", "--augment", "flip", "--views", "0"], "argument --views: invalid value 0", None,
     "preview-views-0"),
    pytest.param(
        ["augment-preview", "--augment", "flip", "--seed", "99999999999999999999999", "--output", "{tmp}/p.png"],
        "99999999999999999999999", None, id="preview-seed-overflow"),
    # The top-level parser.
    (["fit"], "argument command: invalid choice: 'fit'", None, "command-unknown"),
]


def _cli_param(case):
    if not hasattr(case, "marks"):  # a plain tuple, not already a pytest.param
        argv, fragment, setup, case_id = case
        return pytest.param(argv, fragment, setup, id=case_id)
    return case


@pytest.mark.parametrize("argv, fragment, setup", [_cli_param(case) for case in CLI_CASES])
def test_bad_cli_input_is_one_line_exit_2_and_leaves_nothing(argv, fragment, setup, tmp_path, monkeypatch, capsys,
                                                             request):
    monkeypatch.chdir(tmp_path)
    completed = request.getfixturevalue("completed_run") if setup is copy_run else None
    clean_up = setup(tmp_path, completed) if setup is not None else None
    argv = [word.replace("{tmp}", str(tmp_path)) for word in argv]
    fragment = fragment.replace("{tmp}", str(tmp_path))
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        status = _run_cli(argv)
    finally:
        if clean_up is not None:
            clean_up()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    assert out == "", out  # refused before anything is reported
    assert status == 2, (status, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), err
    command = "jaxvision" if "unrecognized arguments" in err or argv[0] == "fit" else f"jaxvision {argv[0]}"
    assert re.match(rf"{re.escape(command)}: error: \S", lines[0]), lines[0]
    assert fragment in lines[0], lines[0]
    assert _changes(before, _snapshot(tmp_path)) == {"new": [], "removed": [], "changed": []}


# --- the Python API catalogue ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_state():
    """An MLP's TrainState for 8x8x1 inputs and 10 classes."""
    import jax

    import jaxvision

    model = jaxvision.get_model("mlp", num_classes=10)
    return jaxvision.create_train_state(model, (8, 8, 1), jaxvision.make_optimizer("adam", 1e-3), jax.random.key(0))


@pytest.fixture(scope="module")
def loaded_run(completed_run):
    import jaxvision

    return jaxvision.load_run(completed_run)


def _batch(labels):
    from jaxvision.batch import Batch

    labels = np.asarray(labels, np.int32)
    return Batch(images=np.zeros((len(labels), 8, 8, 1), np.float32), labels=labels,
                 mask=np.ones(len(labels), np.float32))


class _Batches:
    """A BatchSource for ``fit``: the same one batch for training, validation and test."""

    steps_per_epoch = 1

    def __init__(self, batch):
        self._batch = batch

    def train_batches(self, epoch):
        return iter([self._batch])

    def eval_batches(self, split):
        return iter([self._batch])


def _fit(get, labels):
    import jax

    import jaxvision

    jaxvision.fit(get("mlp_state"), _Batches(_batch(labels)), epochs=1, key=jax.random.key(1), progress=False)


def _fit_one_output_softmax(get):
    import jax

    import jaxvision

    state = jaxvision.create_train_state(jaxvision.get_model("mlp", num_classes=1), (8, 8, 1),
                                         jaxvision.make_optimizer("adam", 1e-3), jax.random.key(0))
    jaxvision.fit(state, _Batches(_batch([0, 0, 0, 0])), epochs=1, key=jax.random.key(1), progress=False)


def _evaluate(get, labels):
    import jaxvision

    jaxvision.evaluate(get("mlp_state"), [_batch(labels)])


def _load_splits(name="digits", **options):
    def call(get):
        from jaxvision import data

        data.load_splits(name, **options)

    return call


def _get_model(*args, **kwargs):
    def call(get):
        import jaxvision

        jaxvision.get_model(*args, **kwargs)

    return call


def _make_optimizer(*args, **kwargs):
    def call(get):
        import jaxvision

        jaxvision.make_optimizer(*args, **kwargs)

    return call


def _lenet5_on_8x8(get):
    import jax

    import jaxvision

    model = jaxvision.get_model("lenet5", num_classes=10)
    jaxvision.create_train_state(model, (8, 8, 1), jaxvision.make_optimizer("adam", 1e-3), jax.random.key(0))


def _predict(images):
    def call(get):
        get("loaded_run").predict(images)

    return call


def _load_run(path):
    def call(get):
        import jaxvision

        jaxvision.load_run(path)

    return call


def _minimum_input_size(channels):
    def call(get):
        import jaxvision
        from jaxvision.input_size import minimum_input_size

        minimum_input_size(jaxvision.get_model("lenet5"), channels)

    return call


def _check_input_size(shape):
    def call(get):
        import jaxvision
        from jaxvision.input_size import check_input_size

        check_input_size(jaxvision.get_model("lenet5"), "lenet5", shape)

    return call


# call(get), where get(name) is a fixture's value; a regular expression the one-line message must match; and
# optionally setup(tmp_path), run before the snapshot.
API_CASES = [
    pytest.param(_get_model("mlp", num_classes=0), r"Invalid num_classes=0: expected a positive integer",
                 id="get_model-num_classes-0"),
    pytest.param(_get_model("mlp", num_classes=-1), r"Invalid num_classes=-1", id="get_model-num_classes-negative"),
    pytest.param(_get_model("mlp", num_classes=2.5), r"Invalid num_classes=2\.5 \(float\)",
                 id="get_model-num_classes-float"),
    pytest.param(_get_model("lenet"), r"Unknown model 'lenet'.*Did you mean 'lenet5'\?", id="get_model-typo"),
    pytest.param(_get_model("mlp", widths=(3,)), r"Model 'mlp' has no field\(s\) widths", id="get_model-field"),
    pytest.param(_get_model("mlp", kernels="gpu"), r"Unknown kernels 'gpu'\. Known: auto, cpu, reference",
                 id="get_model-kernels"),
    pytest.param(_load_splits(validation_fraction=0), r"Invalid validation_fraction=0: expected a number in \(0, 1\)",
                 id="load_splits-validation_fraction-0"),
    pytest.param(_load_splits(validation_fraction=float("nan")), r"Invalid validation_fraction=nan",
                 id="load_splits-validation_fraction-nan"),
    pytest.param(_load_splits(batch_size=0), r"Invalid batch size 0: expected a positive integer",
                 id="load_splits-batch_size-0"),
    pytest.param(_load_splits(image_size=0), r"Invalid image_size=0", id="load_splits-image_size-0"),
    pytest.param(_load_splits(image_size=(8, 8, 1)), r"Invalid image_size=\(8, 8, 1\)",
                 id="load_splits-image_size-rank"),
    pytest.param(_load_splits(mean=[float("nan")]), r"Invalid mean=\[nan\]: expected 1 or 1 finite numbers",
                 id="load_splits-mean-nan"),
    pytest.param(_load_splits(std=[0.0]), r"Invalid std=\[0\.0\]: expected 1 or 1 positive finite numbers",
                 id="load_splits-std-0"),
    pytest.param(_load_splits(resize="squash"), r"Invalid resize='squash'", id="load_splits-resize"),
    pytest.param(_load_splits("photos", channels=2), r"Invalid channels=2: expected 1 \(grey\), 3 \(RGB\)",
                 lambda tmp_path: _classes(tmp_path / "photos"), id="load_splits-channels-2"),
    pytest.param(_load_splits("mnsit"), r"Unknown dataset 'mnsit'.*Did you mean 'mnist'\?",
                 id="load_splits-dataset-typo"),
    pytest.param(lambda get: _fit(get, [0, 1, 2, 10]), r"Invalid label 10 in a training batch of epoch 1: expected "
                 r"class indices in \[0, 10\)", id="fit-label-too-large"),
    pytest.param(lambda get: _fit(get, [0, -1, 2, 3]), r"Invalid label -1 in a training batch of epoch 1",
                 id="fit-label-negative"),
    pytest.param(_fit_one_output_softmax, r"Softmax classification needs at least 2 outputs; the model has 1",
                 id="fit-one-output-softmax"),
    pytest.param(lambda get: _evaluate(get, [0, 1, 2, 10]), r"Invalid label 10 in an evaluation batch.*"
                 r"num_classes=11", id="evaluate-label-too-large"),
    pytest.param(lambda get: _evaluate(get, [-3, 1]), r"Invalid label -3 in an evaluation batch",
                 id="evaluate-label-negative"),
    pytest.param(_lenet5_on_8x8, r"LeNet5 needs inputs of at least 12x12; got 8x8\. Resize the images",
                 id="create_train_state-lenet5-8x8"),
    pytest.param(_make_optimizer("adam", float("inf")), r"Invalid learning_rate=inf", id="make_optimizer-lr-inf"),
    pytest.param(_make_optimizer("adam", float("nan")), r"Invalid learning_rate=nan", id="make_optimizer-lr-nan"),
    pytest.param(_make_optimizer("adam", -1e-3), r"Invalid learning_rate=-0\.001", id="make_optimizer-lr-negative"),
    pytest.param(_make_optimizer("adamw", 1e-3, weight_decay=float("nan")), r"Invalid weight_decay=nan",
                 id="make_optimizer-wd-nan"),
    pytest.param(_make_optimizer("momentum", 1e-3, momentum=float("nan")), r"Invalid momentum=nan",
                 id="make_optimizer-momentum-nan"),
    pytest.param(_make_optimizer("adm", 1e-3), r"Unknown optimizer 'adm'.*Did you mean 'adam'\?",
                 id="make_optimizer-typo"),
    pytest.param(_predict(np.zeros((2, 28, 28, 1), np.uint8)), r"Invalid images of shape \(2, 28, 28, 1\): expected "
                 r"\[N, 8, 8, 1\]", id="predict-shape"),
    pytest.param(_predict(np.zeros((8, 8, 1), np.uint8)), r"add a leading axis", id="predict-one-image"),
    pytest.param(_predict(np.zeros((2, 8, 8, 1), np.int64)), r"Invalid images of dtype int64", id="predict-int64"),
    pytest.param(_predict(np.full((2, 8, 8, 1), 2.0, np.float32)), r"Invalid float images with values in \[2, 2\]: "
                 r"expected \[0, 1\]", id="predict-float-above-1"),
    pytest.param(_load_run("empty_folder"), r"is not a jaxvision run: it has no run\.json",
                 lambda tmp_path: (tmp_path / "empty_folder").mkdir(), id="load_run-not-a-run"),
    pytest.param(_load_run("nosuch_run"), r"nosuch_run is not a jaxvision run", id="load_run-missing"),
    pytest.param(_minimum_input_size(0), r"Invalid channels=0", id="minimum_input_size-channels-0"),
    pytest.param(_check_input_size((8, 8)), r"Invalid image_shape=\(8, 8\)", id="check_input_size-rank"),
]


def _api_param(case):
    call, match, *setup = case.values
    return pytest.param(call, match, setup[0] if setup else None, id=case.id, marks=case.marks)


@pytest.mark.parametrize("call, match, setup", [_api_param(case) for case in API_CASES])
def test_bad_api_input_is_a_one_line_value_error_and_leaves_nothing(call, match, setup, tmp_path, monkeypatch,
                                                                    request):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=match) as excinfo:
        call(request.getfixturevalue)
    message = str(excinfo.value)
    assert message.strip() and "\n" not in message, message
    assert _changes(before, _snapshot(tmp_path)) == {"new": [], "removed": [], "changed": []}
