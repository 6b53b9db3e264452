"""fit's checkpoints, exact resume, divergence guard and loop state, in process, on scikit-learn's digits."""

import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvision
from jaxvision import data, integrity, jsonio
from jaxvision.batch import Batch
from jaxvision.fit import LoopState, TrainingDiverged, TrainingInterrupted
from jaxvision.population import create_population, member_grid
from jaxvision.run_checkpoints import CheckpointMismatchError, RunCheckpoints

fit_module = sys.modules["jaxvision.fit"]  # `jaxvision.fit` is the function


class Killed(Exception):
    """Stands in for a kill: raised from inside the loop, so nothing after it runs."""


@pytest.fixture(scope="module")
def splits():
    return data.load_splits("digits", batch_size=64, seed=0)


def fresh_state(splits, *, schedule="onecycle", epochs=3, learning_rate=3e-3):
    model = jaxvision.get_model("mlp", num_classes=10)
    optimizer = jaxvision.make_optimizer("adam", learning_rate, schedule=schedule,
                                         total_steps=epochs * splits.steps_per_epoch)
    return jaxvision.create_train_state(model, splits.meta.image_shape, optimizer, jax.random.key(0))


def assert_bitwise_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def kill_after(monkeypatch, steps: int):
    """Makes the single run's step generator raise Killed after ``steps`` steps of this process."""
    original = fit_module._SingleRun.steps
    done = {"n": 0}

    def steps_then_kill(self, epoch, start):
        for item in original(self, epoch, start):
            yield item
            done["n"] += 1
            if done["n"] == steps:
                raise Killed

    monkeypatch.setattr(fit_module._SingleRun, "steps", steps_then_kill)


def without_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


@pytest.mark.parametrize("patience", [None, 2])
def test_resume_mid_epoch_gives_the_uninterrupted_run_bit_for_bit(splits, tmp_path, monkeypatch, capsys, patience):
    key = jax.random.key(1)
    full = jaxvision.fit(fresh_state(splits), splits, epochs=3, key=key, progress=False, patience=patience)
    kill_after(monkeypatch, 27)  # epoch 2, step 7 of 20; the last checkpoint is at step 25
    with pytest.raises(Killed):
        jaxvision.fit(fresh_state(splits), splits, epochs=3, key=key, progress=False, patience=patience,
                      checkpoint_dir=str(tmp_path), checkpoint_every=5)
    monkeypatch.undo()
    resumed = jaxvision.fit(fresh_state(splits), splits, epochs=3, key=key, progress=False, patience=patience,
                            checkpoint_dir=str(tmp_path), checkpoint_every=5, resume=True)
    assert "resuming from step 25 (epoch 2)" in capsys.readouterr().out
    assert_bitwise_equal(full.state, resumed.state)
    assert without_seconds(full.history) == without_seconds(resumed.history)
    assert full.best_epoch == resumed.best_epoch and full.test == resumed.test


def test_fit_twice_with_a_checkpoint_between_equals_one_fit(splits, tmp_path):
    # A constant schedule, so that 2 epochs and 1 + 1 epochs are the same optimisation.
    key = jax.random.key(2)
    both = jaxvision.fit(fresh_state(splits, schedule="constant"), splits, epochs=2, key=key, progress=False)
    first = jaxvision.fit(fresh_state(splits, schedule="constant"), splits, epochs=1, key=key, progress=False)
    path = jaxvision.save_checkpoint(str(tmp_path), first.state)
    restored = jaxvision.restore_checkpoint(path, fresh_state(splits, schedule="constant"))
    second = jaxvision.fit(restored, splits, epochs=1, key=key, progress=False)
    assert_bitwise_equal(both.state.params, second.state.params)


def test_a_diverging_run_stops_without_saving_anything_non_finite(splits, tmp_path):
    with pytest.raises(TrainingDiverged) as stop:
        jaxvision.fit(fresh_state(splits, learning_rate=1e30), splits, epochs=3, key=jax.random.key(0),
                      progress=False, patience=2, checkpoint_dir=str(tmp_path), checkpoint_every=1)
    assert stop.value.step == 2 and stop.value.epoch == 0
    assert "lower the learning rate" in str(stop.value)
    # Step 1 was finite (saved), step 2 was not (never saved).
    assert stop.value.checkpoint == os.path.join(str(tmp_path), "1")
    assert sorted(os.listdir(tmp_path)) == ["1"]
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(stop.value.state.params))


def test_the_step_reports_a_non_finite_gradient(splits):
    state = fresh_state(splits)
    images = np.zeros((4, *splits.meta.image_shape), np.float32)
    batch = Batch(images=jnp.asarray(images), labels=jnp.zeros(4, jnp.int32), mask=jnp.ones(4))
    _, metrics = jaxvision.train_step(state, batch, jax.random.key(0))
    assert float(metrics["finite"]) == 1.0
    images[2, 3, 3, 0] = np.nan
    _, metrics = jaxvision.train_step(state, batch.replace(images=jnp.asarray(images)), jax.random.key(0))
    assert float(metrics["finite"]) == 0.0


def test_ctrl_c_saves_then_raises_and_the_resume_is_exact(splits, tmp_path, monkeypatch):
    key = jax.random.key(3)
    full = jaxvision.fit(fresh_state(splits), splits, epochs=2, key=key, progress=False)
    original = fit_module._SingleRun.steps

    def steps_with_ctrl_c(self, epoch, start):
        for index, item in enumerate(original(self, epoch, start)):
            if epoch == 0 and index == 12:
                os.kill(os.getpid(), 2)  # SIGINT, as Ctrl-C sends it
            yield item

    monkeypatch.setattr(fit_module._SingleRun, "steps", steps_with_ctrl_c)
    with pytest.raises(TrainingInterrupted) as stop:
        jaxvision.fit(fresh_state(splits), splits, epochs=2, key=key, progress=False, checkpoint_dir=str(tmp_path))
    monkeypatch.undo()
    assert stop.value.signal == 2 and stop.value.step == 13 and stop.value.epoch == 0
    assert stop.value.checkpoint == os.path.join(str(tmp_path), "13")
    resumed = jaxvision.fit(fresh_state(splits), splits, epochs=2, key=key, progress=False,
                            checkpoint_dir=str(tmp_path), resume=True)
    assert_bitwise_equal(full.state, resumed.state)


def test_resuming_with_other_settings_names_them(splits, tmp_path):
    key = jax.random.key(0)
    jaxvision.fit(fresh_state(splits), splits, epochs=1, key=key, progress=False, checkpoint_dir=str(tmp_path),
                  settings={"learning_rate": 3e-3})
    with pytest.raises(CheckpointMismatchError, match=r"epochs 1 -> 2, learning_rate 0\.003 -> 0\.01"):
        jaxvision.fit(fresh_state(splits), splits, epochs=2, key=key, progress=False, checkpoint_dir=str(tmp_path),
                      resume=True, settings={"learning_rate": 1e-2})


def test_restoring_into_another_structure_says_which_leaves_differ(splits, tmp_path):
    state = fresh_state(splits)
    with RunCheckpoints(str(tmp_path)) as checkpoints:
        checkpoints.save(5, state, {"loop": {}})
        other = jaxvision.create_train_state(jaxvision.get_model("mlp", num_classes=10, hidden_sizes=(32,)),
                                             splits.meta.image_shape, jaxvision.make_optimizer("adam", 1e-3),
                                             jax.random.key(0))
        with pytest.raises(CheckpointMismatchError) as error:
            checkpoints.restore(5, other)
    message = str(error.value)
    assert "\n" not in message
    assert "shape differs: params/Dense_0/bias is (256,) in the checkpoint, (32,) expected" in message
    assert "params/Dense_0/kernel is (64, 256) in the checkpoint, (64, 32) expected" in message


def test_checkpoints_keep_the_latest_k_and_the_best(splits, tmp_path):
    state = fresh_state(splits)
    with RunCheckpoints(str(tmp_path), keep=2) as checkpoints:
        for step, val_loss in [(1, 0.9), (2, 0.3), (3, None), (4, 0.5), (5, None), (6, 0.7)]:
            checkpoints.save(step, state, {"loop": {}}, val_loss=val_loss)
    assert sorted(int(name) for name in os.listdir(tmp_path)) == [2, 5, 6]


def test_a_checkpoint_without_its_manifest_is_dropped_and_a_corrupt_one_refused(splits, tmp_path, capsys):
    state = fresh_state(splits)
    with RunCheckpoints(str(tmp_path)) as checkpoints:
        checkpoints.save(1, state, {"loop": {"n": 1}})
        checkpoints.save(2, state, {"loop": {"n": 2}})
        checkpoints.wait()  # the write runs on the writer thread
        os.remove(os.path.join(str(tmp_path), "2", integrity.MANIFEST))  # killed before the manifest
        assert checkpoints.latest() == 1
        assert "checkpoint step 2 was not written to the end" in capsys.readouterr().out
        assert sorted(os.listdir(tmp_path)) == ["1"]
        data_file = max((os.path.join(root, f) for root, _, files in os.walk(os.path.join(str(tmp_path), "1"))
                         for f in files if f != integrity.MANIFEST), key=os.path.getsize)
        with open(data_file, "r+b") as f:
            f.seek(os.path.getsize(data_file) // 2)
            f.write(b"\xff" * 64)
        with pytest.raises(integrity.CorruptCheckpointError, match=data_file):
            checkpoints.latest()


def test_loop_state_round_trips_through_strict_json():
    loop = LoopState(size=2, epoch=1, step_in_epoch=3, first_data_epoch=4)
    loop.history["val_loss"].append([0.5, math.nan])
    loop.epoch_metrics["loss"].append([math.inf, 1.0])
    text = jsonio.dumps(loop.to_json())
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    back = LoopState.from_json(json.loads(text))
    assert back.best_loss == [math.inf, math.inf] and back.first_data_epoch == 4
    assert back.history["val_loss"][0][0] == 0.5 and math.isnan(back.history["val_loss"][0][1])
    assert math.isnan(back.epoch_metrics["loss"][0][0])  # inf came back as null, read as NaN


def test_train_batches_from_a_step_are_the_rest_of_the_epoch(splits):
    full = list(splits.train_batches(3))
    rest = list(splits.train_batches(3, start=5))
    assert len(rest) == len(full) - 5
    for a, b in zip(full[5:], rest):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
    with pytest.raises(ValueError, match="Invalid start=99"):
        next(splits.train_batches(0, start=99))


def test_a_population_resumes_exactly_and_freezes_a_diverging_member(splits, tmp_path, monkeypatch):
    from jaxvision.ensemble import fit_population
    from jaxvision.fit import Durability

    model = jaxvision.get_model("mlp", num_classes=10)
    optimizer = jaxvision.make_optimizer("adam", 3e-3, schedule="onecycle", total_steps=2 * splits.steps_per_epoch)
    members = member_grid([0], learning_rates=[3e-3, 1e30])

    def population():
        return create_population(model, splits.meta.image_shape, optimizer, members)

    full = fit_population(population(), splits, epochs=2, strategy="vmap", progress=False)
    assert list(full.diverged_step) == [-1, 2] and full.best_member == 0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(full.population.state.params))
    # The ensemble is member 0 alone: its accuracy, not the mean with a broken member's.
    assert full.test["ensemble_accuracy"] == pytest.approx(full.test["accuracy"][0])
    runner = sys.modules["jaxvision.ensemble"]._PopulationRun
    original = runner.steps

    def steps_then_kill(self, epoch, start):
        for index, item in enumerate(original(self, epoch, start)):
            yield item
            if epoch == 1 and index == 6:
                raise Killed

    monkeypatch.setattr(runner, "steps", steps_then_kill)
    durability = Durability(checkpoint_dir=str(tmp_path), checkpoint_every=4)
    with pytest.raises(Killed):
        fit_population(population(), splits, epochs=2, strategy="vmap", progress=False, durability=durability)
    monkeypatch.undo()
    resumed = fit_population(population(), splits, epochs=2, strategy="vmap", progress=False,
                             durability=Durability(checkpoint_dir=str(tmp_path), checkpoint_every=4, resume=True))
    assert_bitwise_equal(full.population.state, resumed.population.state)
    assert list(resumed.diverged_step) == [-1, 2]
