"""Data parallelism: the same train step over a Mesh of 1 or 8 devices gives the same trajectory.

The 8-device run needs ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX starts, and
this test process has already started JAX with one CPU device, so it runs in a subprocess: this file
run as a script (``python tests/test_parallel.py OUT.npz``) is that worker.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

STEPS = 4
GLOBAL_BATCH = 32
NUM_DEVICES = 8


def _batches():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(STEPS, GLOBAL_BATCH, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, 4, size=(STEPS, GLOBAL_BATCH)).astype(np.int32)
    return images, labels


def _initial_state():
    import jax

    from jaxvision import models
    from jaxvision.optimizers import make_optimizer
    from jaxvision.train import create_train_state

    # 64 x 256 = 16384 weights: large enough for shard_parameters to shard the first kernel.
    model = models.get_model("mlp", num_classes=4, hidden_sizes=(256,), dropout_rate=0.25)
    return create_train_state(model, (8, 8, 1), make_optimizer("adam", 1e-2, weight_decay=1e-4), jax.random.key(0))


def _run(mesh, *, shard_parameters=False, checks=None):
    """Loss trajectory and final parameters of STEPS data-parallel steps on ``mesh``."""
    import jax

    from jaxvision import parallel
    from jaxvision.batch import Batch

    state = _initial_state()
    step = parallel.make_data_parallel_step(mesh, state, shard_parameters=shard_parameters)
    state = parallel.place_state(state, mesh, shard_parameters=shard_parameters)
    images, labels = _batches()
    losses = []
    for s in range(STEPS):
        batch = parallel.shard_batch(Batch.of(images[s], labels[s]), mesh)
        if checks is not None:
            checks(batch, state)
        state, metrics = step(state, batch, jax.random.key(1))
        losses.append(float(metrics["loss"]))
    return np.asarray(losses), [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]


def _single_device_reference():
    import jax

    from jaxvision.batch import Batch
    from jaxvision.train import train_step

    state = _initial_state()
    images, labels = _batches()
    losses = []
    for s in range(STEPS):
        state, metrics = train_step(state, Batch.of(images[s], labels[s]), jax.random.key(1))
        losses.append(float(metrics["loss"]))
    return np.asarray(losses), [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]


def _worker(out_path: str) -> None:
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    from jaxvision import parallel

    assert jax.device_count() == NUM_DEVICES, f"expected {NUM_DEVICES} devices, got {jax.devices()}"
    mesh = parallel.make_mesh()

    def check_sharding(batch, state):
        assert batch.images.sharding == NamedSharding(mesh, PartitionSpec("data"))
        shards = batch.images.addressable_shards
        assert len(shards) == NUM_DEVICES and {s.data.shape[0] for s in shards} == {GLOBAL_BATCH // NUM_DEVICES}
        assert len({s.device for s in shards}) == NUM_DEVICES
        kernel = state.params["Dense_0"]["kernel"]
        assert kernel.sharding.is_fully_replicated and len(kernel.addressable_shards) == NUM_DEVICES

    def check_parameter_sharding(batch, state):
        kernel = state.params["Dense_0"]["kernel"]  # [64, 256]
        assert kernel.sharding.spec == PartitionSpec(None, "data")
        assert kernel.addressable_shards[0].data.shape == (64, 256 // NUM_DEVICES)
        assert state.params["Dense_1"]["kernel"].sharding.is_fully_replicated  # [256, 4]: too small

    eight = _run(mesh, checks=check_sharding)
    sharded_parameters = _run(mesh, shard_parameters=True, checks=check_parameter_sharding)
    one = _run(parallel.make_mesh(jax.devices()[:1]))
    try:
        parallel.shard_batch(__import__("jaxvision").Batch.of(np.zeros((12, 8, 8, 1)), np.zeros(12, np.int32)), mesh)
        uneven_error = ""
    except ValueError as error:
        uneven_error = str(error)
    arrays = {"uneven_error": np.asarray(uneven_error)}
    for name, (losses, leaves) in (("eight", eight), ("sharded", sharded_parameters), ("one", one)):
        arrays[f"{name}_losses"] = losses
        arrays.update({f"{name}_param_{i}": leaf for i, leaf in enumerate(leaves)})
    np.savez(out_path, **arrays)


def test_one_device_mesh_step_equals_train_step():
    import jax

    from jaxvision import parallel

    losses, leaves = _run(parallel.make_mesh(jax.devices()[:1]))
    expected_losses, expected_leaves = _single_device_reference()
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-6)
    for got, expected in zip(leaves, expected_leaves):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_one_device_mesh_runs_the_step_it_is_given():
    import jax

    from jaxvision import parallel
    from jaxvision.augment import parse_augment_spec
    from jaxvision.batch import Batch
    from jaxvision.train import make_train_step

    # Another loss and an augmentation than the default step's: the sharded step is this one's body.
    step = make_train_step(loss="l2", augment=parse_augment_spec("flip,crop:2"))
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = expected = _initial_state()
    sharded_step = parallel.make_data_parallel_step(mesh, state, step=step.unjitted)
    images, labels = _batches()
    for s in range(2):
        batch = Batch.of(images[s], labels[s])
        state, metrics = sharded_step(parallel.place_state(state, mesh), parallel.shard_batch(batch, mesh), jax.random.key(1))
        expected, expected_metrics = step(expected, batch, jax.random.key(1))
        np.testing.assert_allclose(float(metrics["loss"]), float(expected_metrics["loss"]), rtol=1e-6)
    _, default_metrics = make_train_step()(_initial_state(), Batch.of(images[1], labels[1]), jax.random.key(1))
    assert abs(float(default_metrics["loss"]) - float(metrics["loss"])) > 0.1  # l2 is not cross-entropy
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected.params)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_the_step_compiles_with_the_step_options_unless_overridden(monkeypatch):
    import jax

    from jaxvision import parallel
    from jaxvision.backends import compile as backend_compile
    from jaxvision.batch import Batch

    # An option XLA does not know, chosen for this network, must fail the compile; {} overrides it.
    monkeypatch.setattr(backend_compile, "compiler_options", lambda model, *, has_batch_norm: {"xla_cpu_no_such_option": True})
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.place_state(_initial_state(), mesh)
    images, labels = _batches()
    batch = parallel.shard_batch(Batch.of(images[0], labels[0]), mesh)
    with pytest.raises(Exception, match="xla_cpu_no_such_option"):
        parallel.make_data_parallel_step(mesh, state)(state, batch, jax.random.key(1))
    _, metrics = parallel.make_data_parallel_step(mesh, state, compiler_options={})(state, batch, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))


@pytest.fixture(scope="module")
def eight_device_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel") / "eight.npz"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={NUM_DEVICES}"}
    completed = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, f"8-device worker failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
    return dict(np.load(out))


def test_eight_devices_give_the_one_device_trajectory(eight_device_results):
    results = eight_device_results
    reference_losses, reference_leaves = _single_device_reference()
    for name in ("eight", "sharded", "one"):
        np.testing.assert_allclose(results[f"{name}_losses"], reference_losses, rtol=1e-5, err_msg=name)
        for i, expected in enumerate(reference_leaves):
            np.testing.assert_allclose(results[f"{name}_param_{i}"], expected, rtol=1e-5, atol=1e-6, err_msg=f"{name} leaf {i}")


def test_uneven_batch_is_rejected_with_a_fix(eight_device_results):
    message = str(eight_device_results["uneven_error"])
    assert "12 rows" in message and "8 devices" in message and "divisible by 8" in message


if __name__ == "__main__":
    _worker(sys.argv[1])
