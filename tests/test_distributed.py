"""Two real processes on 127.0.0.1 joined by ``jax.distributed`` (gloo collectives on CPU), each
feeding half of every global batch, must train exactly what one process does with the whole batch.

Run as a script, this file is the worker: ``python tests/test_distributed.py PROCESS_ID PORT OUT.npz``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np

NUM_PROCESSES = 2
STEPS = 4
GLOBAL_BATCH = 16
TIMEOUT_SECONDS = 240


def _global_batches():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(STEPS, GLOBAL_BATCH, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, 4, size=(STEPS, GLOBAL_BATCH)).astype(np.int32)
    return images, labels


def _initial_state():
    import jax

    from jaxvision import models
    from jaxvision.optimizers import make_optimizer
    from jaxvision.train import create_train_state

    model = models.get_model("mlp", num_classes=4, hidden_sizes=(16,))
    return create_train_state(model, (8, 8, 1), make_optimizer("adam", 1e-2), jax.random.key(0))


def _worker(process_id: int, port: int, out_path: str) -> None:
    from jaxvision import distributed

    # Before anything touches a device.
    distributed.initialize(f"127.0.0.1:{port}", NUM_PROCESSES, process_id, initialization_timeout=120)

    import jax

    from jaxvision import parallel
    from jaxvision.batch import Batch

    assert jax.process_count() == NUM_PROCESSES and jax.device_count() == NUM_PROCESSES * jax.local_device_count()
    mesh = parallel.make_mesh()
    state = _initial_state()
    step = parallel.make_data_parallel_step(mesh, state)
    state = parallel.place_state(state, mesh)
    key = jax.random.key(1)
    images, labels = _global_batches()
    losses = []
    for s in range(STEPS):
        local = distributed.local_rows(Batch.of(images[s], labels[s]))
        assert local.images.shape[0] == GLOBAL_BATCH // NUM_PROCESSES
        batch = parallel.shard_batch(local, mesh)
        assert batch.images.shape[0] == GLOBAL_BATCH and not batch.images.is_fully_addressable
        state, metrics = step(state, batch, key)
        losses.append(parallel.fetch(metrics["loss"]))
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(parallel.fetch(state.params))]
    np.savez(out_path, losses=np.asarray(losses), *leaves)
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_with_the_global_batch(tmp_path):
    import jax

    from jaxvision.batch import Batch
    from jaxvision.train import train_step

    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    outputs = [tmp_path / f"process_{i}.npz" for i in range(NUM_PROCESSES)]
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, str(i), str(port), str(outputs[i])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(NUM_PROCESSES)
    ]
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=TIMEOUT_SECONDS)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for i, process in enumerate(processes):
        assert process.returncode == 0, f"process {i} failed:\n{logs[i][-4000:]}"

    state = _initial_state()
    key = jax.random.key(1)
    images, labels = _global_batches()
    losses = []
    for s in range(STEPS):
        state, metrics = train_step(state, Batch.of(images[s], labels[s]), key)
        losses.append(float(metrics["loss"]))
    expected = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]
    for path in outputs:
        result = np.load(path)
        np.testing.assert_allclose(result["losses"], losses, rtol=1e-5)
        got = [result[f"arr_{i}"] for i in range(len(expected))]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    # The two processes hold the very same replicated parameters.
    first, second = (np.load(p) for p in outputs)
    for i in range(len(expected)):
        np.testing.assert_array_equal(first[f"arr_{i}"], second[f"arr_{i}"])


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
