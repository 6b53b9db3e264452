"""Durable `jaxvision train` runs end to end (issue 18): real kills, signals, divergence, output folders,
corrupted checkpoints, strict JSON, logs, load_run and a sweep with a diverging member, on digits.

A fault that needs a real process death (SIGKILL, SIGINT, SIGTERM) happens in a subprocess *driver*
(``_DRIVER``) that patches one function to signal its own process at its Nth call and then runs
``jaxvision train``; every driver is started at once when this module's first test runs, so their
start-up (TensorFlow's import, compilation) overlaps the in-process tests. The resume runs in this
process and is compared bit for bit with one uninterrupted reference run (module fixture).

Bitwise equality across processes needs the same XLA flags in both: ``jaxvision train`` sets an
XLA:CPU flag before JAX starts, which changes the MLP's float results; whether it took effect here
depends on which test started JAX first. ``_subprocess_env`` finds out with a probe (three train
steps of the MLP, hashed here and in a subprocess with and without the flag) and gives the drivers
the matching environment.
"""

import dataclasses
import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxvision.cli.main import main

# The reference run's settings: 20 steps per epoch on digits (1293 training images), checkpoints at
# 7, 14, 20 (epoch end), 21, 28, 35, 40, 42, 49, 56, 60 (keep 2, plus the best by validation loss).
ARGS = ["--epochs", "3", "--batch-size", "64", "--checkpoint-every", "7", "--log-every", "5", "--no-progress"]
STEPS_PER_EPOCH = 20
TOTAL_STEPS = 3 * STEPS_PER_EPOCH
DRIVER_TIMEOUT = 400  # seconds: six drivers share two cores with this process

# name -> what the driver patches, at which call it signals itself, with which signal, and the steps
# the in-process resume may start from: the first if every checkpoint written before the fault is
# complete, the later ones if a checkpoint was still being written when the process died (checkpoints
# are written on a background thread while training goes on). Whichever it is, it must be the latest
# checkpoint with a manifest in the folder, and the result must be bitwise the uninterrupted run's.
DRIVERS = {
    # (a) between steps: before step 33 (epoch 2, step 13 of 20) reaches the loop; checkpoint 28, or 21
    # if 28 was still being written.
    "kill_step": dict(where="step", at=33, signal="SIGKILL", resume=(28, 21)),
    # (b) in epoch 2's validation (steps 36-40 and the validation are lost): 35, or 28.
    "kill_validate": dict(where="validate", at=2, signal="SIGKILL", resume=(35, 28)),
    # (c) the 3rd checkpoint (step 20, the end of epoch 1): orbax renamed its folder, no manifest yet;
    # the resume drops it and starts from 14 (a save starts only once the one before it is complete).
    "kill_manifest": dict(where="manifest", at=3, signal="SIGKILL", resume=(14,)),
    # (d) inside orbax's write of the 9th checkpoint (step 49): only 49.orbax-checkpoint-tmp; from 42.
    "kill_orbax": dict(where="orbax", at=9, signal="SIGKILL", resume=(42,)),
    # Ctrl-C and SIGTERM as step 25 / 47 is computed: the loop finishes that step, saves it, exits.
    "sigint": dict(where="step", at=25, signal="SIGINT", resume=(25,)),
    "sigterm": dict(where="step", at=47, signal="SIGTERM", resume=(47,)),
}
# Which drivers each test needs (only those of the selected tests are started).
NEEDS = {
    "test_resume_after_sigkill_is_bitwise_the_uninterrupted_run":
        ["kill_step", "kill_validate", "kill_manifest", "kill_orbax"],
    "test_sigint_and_sigterm_save_exit_with_one_line_and_resume_exactly": ["sigint", "sigterm"],
    "test_corrupted_checkpoints_are_refused_in_one_line_and_an_earlier_one_resumes_exactly": ["kill_step"],
}

_DRIVER = r'''
import importlib, json, os, signal, sys

spec = json.loads(sys.argv[1])
from jaxvision.cli.main import main
import jaxvision.integrity
import orbax.checkpoint as ocp

fit_module = importlib.import_module("jaxvision.fit")  # `jaxvision.fit` the attribute is the function
number = getattr(signal, spec["signal"])
calls = [0]


def hit():
    calls[0] += 1
    if calls[0] == spec["at"]:
        os.kill(os.getpid(), number)


where = spec["where"]
if where == "step":
    steps = fit_module._SingleRun.steps

    def patched_steps(self, epoch, start):
        for item in steps(self, epoch, start):
            hit()  # the step is computed; the loop has not seen it yet
            yield item

    fit_module._SingleRun.steps = patched_steps
elif where == "validate":
    validate = fit_module._SingleRun.validate

    def patched_validate(self):
        hit()
        return validate(self)

    fit_module._SingleRun.validate = patched_validate
elif where == "manifest":
    write_manifest = jaxvision.integrity.write_manifest

    def patched_write_manifest(directory):
        if os.path.basename(os.path.dirname(os.fspath(directory))) == "checkpoints":
            hit()  # orbax has finished and renamed the step folder
        return write_manifest(directory)

    jaxvision.integrity.write_manifest = patched_write_manifest
elif where == "orbax":
    async_save = ocp.StandardCheckpointHandler.async_save

    def patched_async_save(self, *args, **kwargs):
        hit()  # inside orbax's save: the step's temporary folder exists, its arrays are not written
        return async_save(self, *args, **kwargs)

    ocp.StandardCheckpointHandler.async_save = patched_async_save
else:
    raise SystemExit(f"unknown fault {where!r}")
sys.exit(main(spec["argv"]))
'''

# Three train steps of the MLP on fixed inputs, hashed: tells which XLA flags a process runs with.
_PROBE = r'''
def probe_digest():
    import hashlib
    import jax, jax.numpy as jnp, numpy as np
    from jaxvision import models
    from jaxvision.batch import Batch
    from jaxvision.optimizers import make_optimizer
    from jaxvision.train import create_train_state, make_train_step

    rng = np.random.default_rng(0)
    optimizer = make_optimizer("adam", 3e-3, total_steps=10, schedule="onecycle")
    state = create_train_state(models.get_model("mlp", num_classes=10), (8, 8, 1), optimizer, jax.random.key(0))
    step = make_train_step()
    batch = Batch.of(jnp.asarray(rng.standard_normal((64, 8, 8, 1), np.float32)),
                     jnp.asarray(rng.integers(0, 10, 64), jnp.int32))
    for _ in range(3):
        state, _ = step(state, batch, jax.random.key(1))
    return hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(state.params))).hexdigest()
'''
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def run_cli(argv):
    """The exit status of ``jaxvision ARGV`` in this process, whether argparse exits or ``main`` returns."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def one_line(text):
    """The only non-empty line of ``text`` (asserting there is exactly one)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def strict_loads(text):
    """json.loads that refuses NaN, Infinity and -Infinity (what strict parsers do)."""

    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def assert_bitwise_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for (path, x), (_, y) in zip(leaves(actual), leaves(expected)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, jax.tree_util.keystr(path)
        assert np.array_equal(x, y), f"{jax.tree_util.keystr(path)} differs: max |diff| {np.max(np.abs(x - y))}"


def metrics_records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [strict_loads(line) for line in f if line.strip()]


def saved_trees(run_dir):
    """{folder: tree} of every checkpoint item (state, best) and the final model, read back with orbax."""
    import orbax.checkpoint as ocp

    folders = [os.path.join(step, item) for step in sorted(glob.glob(os.path.join(run_dir, "checkpoints", "*")))
               if os.path.basename(step).isdigit() for item in ("state", "best")]
    folders.append(os.path.join(run_dir, "model"))
    trees = {}
    with ocp.StandardCheckpointer() as checkpointer:
        for folder in folders:
            if os.path.isdir(folder):
                trees[folder] = checkpointer.restore(folder)
    return trees


def assert_all_finite(trees):
    for folder, tree in trees.items():
        for path, leaf in leaves(tree):
            leaf = np.asarray(leaf)
            if np.issubdtype(leaf.dtype, np.floating):
                assert np.isfinite(leaf).all(), f"{folder} {jax.tree_util.keystr(path)} is not finite"


def assert_strict_json_files(run_dir):
    """Every JSON file jaxvision writes under ``run_dir`` parses as strict JSON; returns how many there are.

    That is every *.json, every metrics.jsonl line, and in each checkpoint the loop state (orbax's
    ``loop/metadata``, jaxvision's LoopState) and orbax's ``_CHECKPOINT_METADATA`` (its metrics).
    """
    paths = sorted(glob.glob(os.path.join(run_dir, "**", "*.json"), recursive=True))
    paths += sorted(glob.glob(os.path.join(run_dir, "checkpoints", "*", "loop", "metadata")))
    paths += sorted(glob.glob(os.path.join(run_dir, "checkpoints", "*", "_CHECKPOINT_METADATA")))
    for path in paths:
        with open(path) as f:
            try:
                strict_loads(f.read())
            except ValueError as error:
                raise AssertionError(f"{path} is not strict JSON: {error}") from None
    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        metrics_records(run_dir)
    return len(paths)


def copy_run(source, destination):
    shutil.copytree(source, destination, symlinks=True)
    return str(destination)


class _DataLoaded(Exception):
    """Raised by a patched jaxvision.data.load_splits: the command got past its checks."""


@pytest.fixture
def no_data(monkeypatch):
    """Makes loading any data an error (not a ValueError, so `main` does not turn it into exit 2)."""
    import jaxvision.data

    def refuse(*args, **kwargs):
        raise _DataLoaded("load_splits was called: the check must come before loading data")

    monkeypatch.setattr(jaxvision.data, "load_splits", refuse)


# ---------------------------------------------------------------------------------------------------
# Module fixtures: the subprocess drivers (started first) and the uninterrupted reference run.


@dataclasses.dataclass
class Driver:
    name: str
    path: str
    process: subprocess.Popen
    log_dir: str

    def result(self):
        """Waits for the driver: (exit status, stdout, stderr); the run folder is ``self.path``."""
        try:
            self.process.wait(timeout=DRIVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"driver {self.name} ran for more than {DRIVER_TIMEOUT}s")
        with open(os.path.join(self.log_dir, "stdout")) as out, open(os.path.join(self.log_dir, "stderr")) as err:
            return self.process.returncode, out.read(), err.read()


@dataclasses.dataclass
class _Unavailable:
    reason: str

    def result(self):
        pytest.skip(self.reason)


def _backends_started():
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return True  # unknown: ask the probe


def _subprocess_env(base_env):
    """The environment under which a subprocess compiles what this process compiles (see the docstring).

    Returns the environment, or a string saying why there is none (the driver tests then skip).
    """
    from jaxvision.backends.process import prepare_training_process

    started = _backends_started()
    prepare_training_process(restart=False)  # what main() does first in this process anyway
    env = {**base_env, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "JAXVISION_KEEP_XLA_FLAGS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    namespace = {}
    exec(_PROBE, namespace)
    here = namespace["probe_digest"]()  # starts JAX here if no test did
    if not started:
        return env  # JAX started here after prepare_training_process: the flags are os.environ's
    without = " ".join(flag for flag in env["XLA_FLAGS"].split() if not flag.startswith(_YNN_FLAG))
    candidates = [{**env, "XLA_FLAGS": f"{without} {_YNN_FLAG}".strip()}, {**env, "XLA_FLAGS": without}]
    probes = [subprocess.Popen([sys.executable, "-c", _PROBE + "\nprint(probe_digest())"], env=candidate,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for candidate in candidates]
    digests = [probe.communicate(timeout=300)[0].strip() for probe in probes]
    for candidate, digest in zip(candidates, digests):
        if digest == here:
            return candidate
    return (f"no subprocess environment reproduces this process's XLA results (probe {here[:12]} here, "
            f"{[d[:12] for d in digests]} in subprocesses): bitwise resume across processes cannot be checked")


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """This module's JAXVISION_CACHE_DIR (conftest's per-test cache), set for the module's fixtures."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXVISION_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jaxvision_cache"))
        yield


@pytest.fixture(scope="module", autouse=True)
def drivers(request, tmp_path_factory, environment):
    """Starts the drivers the selected tests need, all at once; {name: Driver}."""
    selected = {item.originalname for item in request.session.items if item.module is request.module}
    needed = sorted({name for test in selected for name in NEEDS.get(test, ())})
    started = {}
    if needed:
        import jaxvision.data

        jaxvision.data.builder("digits")  # prepared once here, not by six processes at once
        env = _subprocess_env(dict(os.environ))
        if isinstance(env, str):
            yield {name: _Unavailable(env) for name in needed}
            return
        root = tmp_path_factory.mktemp("drivers")
        script = root / "driver.py"
        script.write_text(_DRIVER)
        for name in needed:
            spec = DRIVERS[name]
            run_dir, log_dir = root / name, root / f"{name}.log"
            log_dir.mkdir()
            argv = ["train", *ARGS, "--output-dir", str(run_dir)]
            with open(log_dir / "stdout", "w") as out, open(log_dir / "stderr", "w") as err:
                process = subprocess.Popen(
                    [sys.executable, str(script), json.dumps({**spec, "argv": argv})],
                    env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=str(root),
                )
            started[name] = Driver(name, str(run_dir), process, str(log_dir))
    yield started
    for driver in started.values():
        if driver.process.poll() is None:
            driver.process.kill()
            driver.process.wait()


@dataclasses.dataclass
class Reference:
    path: str
    variables: dict
    history: dict
    metrics: dict


@pytest.fixture(scope="module")
def reference(tmp_path_factory, environment):
    """One uninterrupted run with ARGS, in this process."""
    from jaxvision.run_record import load_run

    path = str(tmp_path_factory.mktemp("reference") / "run")
    assert run_cli(["train", *ARGS, "--output-dir", path]) == 0
    with open(os.path.join(path, "run.json")) as f:
        assert json.load(f)["training"]["steps_per_epoch"] == STEPS_PER_EPOCH
    with open(os.path.join(path, "history.json")) as f, open(os.path.join(path, "metrics.json")) as g:
        history, metrics = json.load(f), json.load(g)
    return Reference(path, load_run(path).variables, history, metrics)


def assert_resumed_run_equals_reference(run_dir, reference):
    """Final variables bit for bit, the history, and a metrics.jsonl with every step logged once."""
    from jaxvision.run_record import load_run

    assert_bitwise_equal(load_run(run_dir).variables, reference.variables)
    with open(os.path.join(run_dir, "history.json")) as f:
        history = json.load(f)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert history[key] == reference.history[key], key
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["test_accuracy"] == reference.metrics["test_accuracy"]
    assert metrics["test_loss"] == reference.metrics["test_loss"]
    records = metrics_records(run_dir)
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps == list(range(5, TOTAL_STEPS + 1, 5)), "step records lost or logged twice across the resume"
    epochs = [r for r in records if r["kind"] == "epoch"]
    expected_epochs = [r for r in metrics_records(reference.path) if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [20, 40, 60]
    for record, expected in zip(epochs, expected_epochs):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert record[key] == expected[key], key
    with open(os.path.join(run_dir, "run.json")) as f:
        assert json.load(f)["status"] == "complete"


def complete_checkpoints(run_dir):
    """The steps of the checkpoints in ``run_dir`` that have their manifest, ascending."""
    from jaxvision import integrity

    folder = os.path.join(run_dir, "checkpoints")
    return sorted(int(name) for name in os.listdir(folder)
                  if name.isdigit() and integrity.has_manifest(os.path.join(folder, name)))


def printed_epoch(step):
    """The 1-based epoch `resuming from step S (epoch E)` names for a checkpoint at ``step``."""
    return min(step // STEPS_PER_EPOCH, TOTAL_STEPS // STEPS_PER_EPOCH - 1) + 1


def resume(run_dir, capsys, step):
    """Resumes ``run_dir`` in this process; checks the exit status and the `resuming from` line."""
    capsys.readouterr()
    assert run_cli(["train", *ARGS, "--output-dir", run_dir, "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"resuming from step {step} (epoch {printed_epoch(step)})\n" in out, out
    return out


# ---------------------------------------------------------------------------------------------------
# 4. Output folders: refused in one line before any data is loaded.


def test_an_output_dir_that_is_a_file_is_refused_and_nothing_is_created(tmp_path, capsys, no_data):
    taken = tmp_path / "taken"
    taken.write_text("not a folder\n")
    assert run_cli(["train", *ARGS, "--output-dir", str(taken)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("jaxvision train: error: ") and "is a file" in line and str(taken) in line
    assert sorted(os.listdir(tmp_path)) == ["taken"] and taken.read_text() == "not a folder\n"


def test_a_folder_holding_another_run_needs_resume_or_overwrite_and_overwrite_replaces_it(
        tmp_path, capsys, reference, monkeypatch):
    from jaxvision.training_log import read_tensorboard_scalars

    run_dir = copy_run(reference.path, tmp_path / "run")
    with open(os.path.join(run_dir, "notes.txt"), "w") as f:
        f.write("mine\n")
    before = sorted(os.listdir(run_dir))
    import jaxvision.data

    load_splits = jaxvision.data.load_splits

    def refuse(*args, **kwargs):
        raise _DataLoaded("load_splits was called: the check must come before loading data")

    monkeypatch.setattr(jaxvision.data, "load_splits", refuse)
    assert run_cli(["train", *ARGS, "--output-dir", run_dir]) == 2
    line = one_line(capsys.readouterr().err)
    assert "holds another run" in line and "--resume" in line and "--overwrite" in line
    assert sorted(os.listdir(run_dir)) == before
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["56", "60"]

    # --overwrite with other settings (1 epoch): the old checkpoints, logs and model are gone.
    monkeypatch.setattr(jaxvision.data, "load_splits", load_splits)
    one_epoch = ["--epochs", "1", *ARGS[2:]]
    assert ARGS[:2] == ["--epochs", "3"]
    assert run_cli(["train", *one_epoch, "--output-dir", run_dir, "--overwrite"]) == 0
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["14", "20"]
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    assert run["status"] == "complete" and run["settings"]["epochs"] == 1
    assert max(r["step"] for r in metrics_records(run_dir)) == STEPS_PER_EPOCH
    assert max(step for step, _ in read_tensorboard_scalars(run_dir)["step/loss"]) == STEPS_PER_EPOCH
    with open(os.path.join(run_dir, "notes.txt")) as f:
        assert f.read() == "mine\n"  # not jaxvision's: left alone


@pytest.mark.parametrize("path, message", [("/proc/self", "is not writable"), ("/proc/self/new_run", "cannot create")])
def test_an_output_dir_that_cannot_be_written_is_refused(path, message, capsys, no_data):
    # As root os.access says yes to everything; /proc/self exists and takes no new files even for root.
    probe = os.path.join("/proc/self", ".jaxvision_write_probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError:
        pass
    else:
        os.remove(probe)
        pytest.skip("/proc/self is writable here")
    assert run_cli(["train", *ARGS, "--output-dir", path]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("jaxvision train: error: ") and path in line and message in line
    assert not os.path.exists("/proc/self/new_run")


def test_a_second_run_in_a_locked_folder_is_refused(tmp_path, capsys, no_data):
    from jaxvision.run_directory import prepare_run_directory

    holder = prepare_run_directory(str(tmp_path / "run"))
    try:
        assert run_cli(["train", *ARGS, "--output-dir", str(tmp_path / "run")]) == 2
        line = one_line(capsys.readouterr().err)
        assert f"another jaxvision run (pid {os.getpid()})" in line and str(tmp_path / "run") in line
        assert sorted(os.listdir(tmp_path / "run")) == [".jaxvision.lock"]  # nothing else was written
    finally:
        holder.release()
    assert not os.path.exists(tmp_path / "run")  # the holder created it and wrote nothing: it is gone


def test_main_releases_the_output_folder_when_it_returns(reference):
    from jaxvision.run_directory import prepare_run_directory

    # The reference run's main() returned 0 in this process a while ago.
    prepare_run_directory(reference.path, resume=True).release()


def test_the_best_checkpoint_survives_a_restart(tmp_path):
    from jaxvision.run_checkpoints import RunCheckpoints

    state = {"w": np.ones(3, np.float32)}
    with RunCheckpoints(str(tmp_path), keep=1) as checkpoints:
        checkpoints.save(20, state, {"epoch": 1}, val_loss=0.5)  # the best epoch
        checkpoints.save(40, state, {"epoch": 2}, val_loss=0.9)
        checkpoints.save(47, state, {"epoch": 3})  # periodic, then the process stops
        checkpoints.wait()  # writes run on the writer thread
        assert sorted(os.listdir(tmp_path), key=int) == ["20", "47"]
    with RunCheckpoints(str(tmp_path), keep=1) as checkpoints:  # the resumed process
        checkpoints.save(49, state, {"epoch": 3})
    assert sorted(os.listdir(tmp_path), key=int) == ["20", "49"]


# ---------------------------------------------------------------------------------------------------
# 6. --resume with other settings: refused in one line listing them, before loading data.


def test_resume_with_other_settings_lists_the_differences_before_loading_data(tmp_path, capsys, reference, no_data):
    run_dir = copy_run(reference.path, tmp_path / "run")
    with open(os.path.join(run_dir, "run.json"), "rb") as f:
        before = f.read()
    argv = ["train", *ARGS, "--output-dir", run_dir, "--resume"]
    cases = [
        (["--batch-size", "32"], ["batch_size 64 -> 32"]),
        (["--learning-rate", "1e-3"], ["learning_rate 0.003 -> 0.001"]),
        (["--batch-size", "32", "--learning-rate", "1e-3"], ["batch_size 64 -> 32", "learning_rate 0.003 -> 0.001"]),
    ]
    for extra, differences in cases:
        assert run_cli([*argv, *extra]) == 2, extra
        line = one_line(capsys.readouterr().err)
        assert line.startswith("jaxvision train: error: cannot resume ") and "settings differ" in line
        for difference in differences:
            assert difference in line, line
        assert "--epochs" not in line and "epochs 3" not in line  # only what differs
    with open(os.path.join(run_dir, "run.json"), "rb") as f:
        assert f.read() == before
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["56", "60"]


# ---------------------------------------------------------------------------------------------------
# 3. Divergence: exit 3, one line, nothing non-finite saved.


@pytest.mark.parametrize("extra", [[], ["--patience", "2"]], ids=["no-patience", "patience"])
def test_a_diverging_run_exits_3_in_one_line_and_saves_nothing_non_finite(tmp_path, capsys, extra):
    run_dir = str(tmp_path / "run")
    # --checkpoint-every 1: a checkpoint is due at every step, so one would be written right after the
    # first non-finite step unless the divergence is caught before saving.
    argv = ["train", "--epochs", "2", "--batch-size", "64", "--learning-rate", "1e30", "--checkpoint-every", "1",
            "--no-progress", "--output-dir", run_dir, *extra]
    assert run_cli(argv) == 3
    line = one_line(capsys.readouterr().err)
    assert "diverged" in line and "lower the learning rate" in line and "NaN or infinite" in line
    assert not os.path.exists(os.path.join(run_dir, "model"))
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    assert run["status"] == "diverged" and run["diverged_at_step"] >= 1
    trees = saved_trees(run_dir)
    assert trees, "the steps before the divergence were checkpointed (--checkpoint-every 1)"
    if extra:
        assert any(folder.endswith("best") for folder in trees)
    assert_all_finite(trees)
    steps = [int(name) for name in os.listdir(os.path.join(run_dir, "checkpoints")) if name.isdigit()]
    assert max(steps) < run["diverged_at_step"]
    assert f"the last good checkpoint is {os.path.join(run_dir, 'checkpoints', str(max(steps)))}" in line
    assert_strict_json_files(run_dir)


def test_a_huge_learning_rate_never_saves_anything_non_finite(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    status = run_cli(["train", "--epochs", "2", "--batch-size", "64", "--learning-rate", "1e6", "--checkpoint-every",
                      "3", "--no-progress", "--output-dir", run_dir])
    err = capsys.readouterr().err
    assert status in (0, 3), err
    if status == 3:
        assert "diverged" in one_line(err) and not os.path.exists(os.path.join(run_dir, "model"))
    else:
        assert os.path.isdir(os.path.join(run_dir, "model"))
    trees = saved_trees(run_dir)
    assert trees
    assert_all_finite(trees)
    assert_strict_json_files(run_dir)


# ---------------------------------------------------------------------------------------------------
# 7, 8, 9. The finished run's files: strict JSON, metrics.jsonl + TensorBoard, load_run.


def test_every_json_file_of_a_finished_run_is_strict(reference):
    # run.json, history.json, metrics.json, each checkpoint's and the model's checksums, loop state and
    # orbax metadata. The loop state holds best_loss = inf (no early stopping): it must be null.
    assert assert_strict_json_files(reference.path) >= 9
    with open(os.path.join(reference.path, "checkpoints", "60", "loop", "metadata")) as f:
        assert strict_loads(f.read())["loop"]["best_loss"] == [None]
    with open(os.path.join(reference.path, "metrics.jsonl")) as f:
        assert sum(1 for line in f if line.strip()) == TOTAL_STEPS // 5 + 3


def test_metrics_jsonl_and_tensorboard_log_the_same_steps(reference):
    from jaxvision.training_log import read_tensorboard_scalars

    records = metrics_records(reference.path)
    step_records = [r for r in records if r["kind"] == "step"]
    epoch_records = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in step_records] == list(range(5, TOTAL_STEPS + 1, 5))
    assert [r["epoch"] for r in step_records] == [1] * 4 + [2] * 4 + [3] * 4
    assert all(np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 and r["learning_rate"] > 0 for r in step_records)
    assert [(r["step"], r["epoch"]) for r in epoch_records] == [(20, 1), (40, 2), (60, 3)]
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert [r[key] for r in epoch_records] == reference.history[key]
    scalars = read_tensorboard_scalars(reference.path)
    assert [step for step, _ in scalars["step/loss"]] == [r["step"] for r in step_records]
    assert [value for _, value in scalars["step/loss"]] == [float(np.float32(r["loss"])) for r in step_records]
    assert [step for step, _ in scalars["epoch/val_loss"]] == [20, 40, 60]
    val_loss = [float(np.float32(v)) for v in reference.history["val_loss"]]
    assert [value for _, value in scalars["epoch/val_loss"]] == val_loss


@pytest.fixture(scope="module")
def digits_test_images(environment):
    from jaxvision import data

    dataset, _ = data.load("digits", "test")
    pairs = list(dataset.as_numpy_iterator())
    return np.stack([image for image, _ in pairs]), np.asarray([label for _, label in pairs])


def test_load_run_predicts_uint8_and_float_images_alike_with_the_runs_accuracy(reference, digits_test_images):
    from jaxvision.run_record import load_run

    run = load_run(reference.path)
    images, labels = digits_test_images
    assert images.dtype == np.uint8 and images.shape == (360, 8, 8, 1)
    probabilities = run.predict(images)
    assert probabilities.shape == (360, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(run.predict(images.astype(np.float32) / 255.0), probabilities, rtol=0, atol=1e-6)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    # The same weights and normalisation as the run's own test evaluation (one near-tie may round apart).
    assert abs(accuracy - reference.metrics["test_accuracy"]) <= 1 / 360 + 1e-12
    assert run.class_names == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda x: x[0], "images[None]"),  # one image without the batch axis
        (lambda x: x[:, :, :, 0], "Invalid images of shape"),
        (lambda x: np.zeros((2, 9, 9, 1), np.uint8), "Invalid images of shape"),
        (lambda x: x.astype(np.int32), "Invalid images of dtype int32"),
        (lambda x: x.astype(np.float32), "expected [0, 1]"),  # 0-255 as floats
        (lambda x: x.astype(np.float32) / 255.0 - 0.5, "expected [0, 1]"),
    ],
    ids=["one-image", "no-channel-axis", "other-size", "int32", "float-0-255", "negative-floats"],
)
def test_load_run_refuses_bad_images_in_one_line(reference, digits_test_images, make, message):
    from jaxvision.run_record import load_run

    run = load_run(reference.path)
    with pytest.raises(ValueError) as error:
        run.predict(make(digits_test_images[0][:4]))
    text = str(error.value)
    assert message in text and "\n" not in text


# ---------------------------------------------------------------------------------------------------
# 1. Exact resume after SIGKILL at four points.


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill_step", "kill_validate", "kill_manifest", "kill_orbax"])
def test_resume_after_sigkill_is_bitwise_the_uninterrupted_run(fault, drivers, reference, tmp_path, capsys):
    from jaxvision import integrity

    status, out, err = drivers[fault].result()
    assert status == -signal.SIGKILL, f"{fault} driver: exit {status}\n{out}\n{err}"
    assert "Traceback" not in err, err
    run_dir = copy_run(drivers[fault].path, tmp_path / "run")  # the driver's folder stays as it was killed
    checkpoints = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(run_dir, "run.json")) as f:
        assert json.load(f)["status"] == "running"
    assert not os.path.exists(os.path.join(run_dir, "model"))
    step = complete_checkpoints(run_dir)[-1]  # what the resume must start from
    assert step in DRIVERS[fault]["resume"], (step, sorted(os.listdir(checkpoints)))
    if fault == "kill_manifest":
        folder = os.path.join(checkpoints, "20")
        assert os.path.isdir(folder) and not integrity.has_manifest(folder)
    if fault == "kill_orbax":
        assert glob.glob(os.path.join(checkpoints, "49.orbax-checkpoint-tmp*"))
        assert not os.path.exists(os.path.join(checkpoints, "49"))
    # The killed process logged steps past the checkpoint it is resumed from: they must not appear twice.
    logged = [r["step"] for r in metrics_records(run_dir) if r["kind"] == "step"]
    assert max(logged) > step
    # A step folder orbax finished but without its manifest (c, or a write in flight) is dropped.
    unfinished = [name for name in os.listdir(checkpoints) if name.isdigit() and int(name) > step]

    out = resume(run_dir, capsys, step)
    for name in unfinished:
        assert f"checkpoint step {name} was not written to the end (no checksums); dropping it" in out
    assert not glob.glob(os.path.join(checkpoints, "*orbax-checkpoint-tmp*")), os.listdir(checkpoints)
    assert_resumed_run_equals_reference(run_dir, reference)
    if fault == "kill_step":
        # TensorBoard's files are append-only: the resumed process's value of a re-logged step wins.
        from jaxvision.training_log import read_tensorboard_scalars

        step_records = [r for r in metrics_records(run_dir) if r["kind"] == "step"]
        scalars = read_tensorboard_scalars(run_dir)["step/loss"]
        assert scalars == [(r["step"], float(np.float32(r["loss"]))) for r in step_records]


# ---------------------------------------------------------------------------------------------------
# 2. Ctrl-C and SIGTERM: saved, one line, 130 / 143, exact resume.


@pytest.mark.slow
@pytest.mark.parametrize("fault, exit_status", [("sigint", 130), ("sigterm", 143)])
def test_sigint_and_sigterm_save_exit_with_one_line_and_resume_exactly(fault, exit_status, drivers, reference,
                                                                       tmp_path, capsys):

    status, out, err = drivers[fault].result()
    assert status == exit_status, f"{fault} driver: exit {status}\n{out}\n{err}"
    assert "Traceback" not in err, err
    (step,) = DRIVERS[fault]["resume"]
    epoch = printed_epoch(step)
    lines = [line for line in err.splitlines() if line.startswith("interrupted at epoch")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"interrupted at epoch {epoch}, step {step}; resume with: ")
    assert lines[0].endswith(" --resume")
    assert "error:" not in err, err  # not reported as a failure
    run_dir = copy_run(drivers[fault].path, tmp_path / "run")
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    assert run["status"] == "interrupted" and run["interrupted_at_step"] == step
    assert complete_checkpoints(run_dir)[-1] == step  # saved, and written to the end before the exit
    assert not os.path.exists(os.path.join(run_dir, "model"))
    resume(run_dir, capsys, step)
    assert_resumed_run_equals_reference(run_dir, reference)


# ---------------------------------------------------------------------------------------------------
# 5. Corrupted checkpoints on --resume.


def _largest_file(folder):
    from jaxvision import integrity

    files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
             if name != integrity.MANIFEST]
    return max(files, key=os.path.getsize)


@pytest.mark.slow
def test_corrupted_checkpoints_are_refused_in_one_line_and_an_earlier_one_resumes_exactly(drivers, reference,
                                                                                          tmp_path, capsys):
    status, out, err = drivers["kill_step"].result()
    assert status == -signal.SIGKILL, f"exit {status}\n{out}\n{err}"
    pristine = drivers["kill_step"].path
    *_, previous, latest = complete_checkpoints(pristine)
    assert latest in DRIVERS["kill_step"]["resume"] and previous >= STEPS_PER_EPOCH

    def attempt(name, damage, *expected):
        run_dir = copy_run(pristine, tmp_path / name)
        target = _largest_file(os.path.join(run_dir, "checkpoints", str(latest)))
        assert os.path.getsize(target) >= 1024
        damage(target)
        capsys.readouterr()
        assert run_cli(["train", *ARGS, "--output-dir", run_dir, "--resume"]) == 2, name
        line = one_line(capsys.readouterr().err)
        assert line.startswith("jaxvision train: error: ") and target in line, line
        for text in expected:
            assert text in line, line
        return run_dir

    def flip(path):
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            chunk = f.read(64)
            f.seek(-len(chunk), os.SEEK_CUR)
            f.write(bytes(b ^ 0xFF for b in chunk))

    def truncate(path):
        os.truncate(path, os.path.getsize(path) // 2)

    flipped = attempt("flip", flip, "sha256", "corrupted")
    attempt("truncate", truncate, "truncated")
    attempt("delete", os.remove, "missing")

    # Deleting the damaged step folder falls back to the checkpoint before it, still exactly. (A fresh
    # copy.)
    run_dir = copy_run(flipped, tmp_path / "fallback")
    shutil.rmtree(os.path.join(run_dir, "checkpoints", str(latest)))
    resume(run_dir, capsys, previous)
    assert_resumed_run_equals_reference(run_dir, reference)


# ---------------------------------------------------------------------------------------------------
# 10 (and 7). A sweep with one diverging member.


def test_a_sweep_with_a_diverging_member_excludes_it_from_the_best_and_the_ensemble(tmp_path, capsys):
    run_dir = str(tmp_path / "sweep")
    status = run_cli(["sweep", "--seeds", "1", "--learning-rates", "3e-3,1e30", "--epochs", "2", "--no-progress",
                      "--output-dir", run_dir])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    with open(os.path.join(run_dir, "sweep.json")) as f:
        sweep = strict_loads(f.read())
    healthy, diverged = sweep["members"]
    assert healthy["learning_rate"] == 3e-3 and diverged["learning_rate"] == 1e30
    assert healthy["diverged_at_step"] is None
    assert isinstance(diverged["diverged_at_step"], int) and diverged["diverged_at_step"] >= 1
    # Frozen at its last finite state: its own evaluation is finite (not NaN, which strict JSON makes null).
    assert diverged["val_loss"] is not None and diverged["test_loss"] is not None
    assert sweep["best_member"] == 0
    ensemble = sweep["ensemble"]
    assert ensemble["test_accuracy"] >= 0.8 and abs(ensemble["test_accuracy"] - healthy["test_accuracy"]) <= 0.02
    # Left out of the ensemble, which is then the healthy member alone: the same mean softmax, the same
    # loss (a frozen member in the mean, even one at its initial weights, moves it by far more than 1e-4).
    assert abs(ensemble["test_loss"] - healthy["test_loss"]) < 1e-4, (ensemble, healthy)
    assert "member 1 diverged at step" in captured.out
    assert assert_strict_json_files(run_dir) >= 1
