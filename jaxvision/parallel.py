"""Data parallelism on JAX's own engine: a ``Mesh`` over the devices, the batch sharded along its
``data`` axis with ``NamedSharding``, the state replicated (or sharded, for large models), and
``jax.jit`` with in/out shardings around the very same train step body (``TrainStep.unjitted``). No ``pmap``.

XLA's SPMD partitioner turns the global-batch program into one program per device and inserts the
all-reduce of the gradients itself, so one code path serves 1 device, N devices and N hosts (there
every process passes its own rows of the global batch; see ``jaxvision.distributed``).

    mesh = make_mesh()
    step = make_data_parallel_step(mesh, state)
    state = place_state(state, mesh)
    for local_batch in batches:
        state, metrics = step(state, shard_batch(local_batch, mesh), key)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxvision.backends.compile import resolve_compiler_options
from jaxvision.batch import Batch, Metrics
from jaxvision.train import TrainState, train_step

DATA_AXIS = "data"
# Parameters with fewer elements than this stay replicated even with shard_parameters=True:
# gathering a small array costs more than keeping a copy.
_MIN_SHARDED_SIZE = 2**14


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the ``data`` axis, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def _leaf_sharding(leaf: Any, mesh: Mesh, shard_parameters: bool) -> NamedSharding:
    if not shard_parameters or np.size(leaf) < _MIN_SHARDED_SIZE:
        return replicated(mesh)
    # Shard the largest axis that splits evenly (ZeRO-3/FSDP style); jit gathers it where it is used.
    devices = mesh.shape[DATA_AXIS]
    shape = np.shape(leaf)
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % devices == 0:
            spec = [None] * len(shape)
            spec[axis] = DATA_AXIS
            return NamedSharding(mesh, PartitionSpec(*spec))
    return replicated(mesh)


def state_sharding(state: TrainState, mesh: Mesh, *, shard_parameters: bool = False) -> TrainState:
    """The sharding of every leaf of ``state``: replicated, or with ``shard_parameters`` each large
    parameter (and its optimiser moments, which have the same shape) split along an axis that the
    number of devices divides."""
    return jax.tree.map(lambda leaf: _leaf_sharding(leaf, mesh, shard_parameters), state)


def place_state(state: TrainState, mesh: Mesh, *, shard_parameters: bool = False) -> TrainState:
    """``state`` as global arrays with ``state_sharding``; every process must pass the same state."""
    shardings = state_sharding(state, mesh, shard_parameters=shard_parameters)

    def place(leaf, sharding):
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place, state, shardings)


def shard_batch(local_batch: Batch, mesh: Mesh) -> Batch:
    """A global Batch sharded along ``data`` from this process's rows of it.

    In a single process ``local_batch`` is the whole global batch; with P processes each passes its
    own ``global_batch_size / P`` rows (process i holds rows ``[i * n, (i + 1) * n)``), and the result
    is one array spanning every process's devices.

    Raises:
      ValueError: if this process's rows do not split evenly over its devices in the mesh.
    """
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    rows = int(np.shape(local_batch.mask)[0])
    if rows % local_devices:
        raise ValueError(
            f"A batch of {rows} rows cannot be split evenly over this process's {local_devices} devices; "
            f"use a batch size divisible by {local_devices} per process (e.g. {max(rows // local_devices, 1) * local_devices})."
        )
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), local_batch)


def make_data_parallel_step(
    mesh: Mesh,
    state: TrainState,
    *,
    shard_parameters: bool = False,
    step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]] = train_step.unjitted,
    compiler_options: dict[str, Any] | None = None,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
    """``step`` jitted with the batch sharded over ``data`` and the state as ``state_sharding``.

    It compiles as ``jaxvision.fit``'s steps do: with ``step_compiler_options(state)`` (on CPU, XLA's
    legacy loop emitters for networks built with the CPU layers and without batch norm; see ``jaxvision.backends.compile``).

    Args:
      mesh: from ``make_mesh``.
      state: any state with the structure that will be passed (only its shapes, and whether it has
        ``batch_stats``, are read).
      shard_parameters: shard large parameters and optimiser moments instead of replicating them.
      step: an un-jitted ``(state, batch, key) -> (state, metrics)``, e.g. ``make_train_step(...).unjitted`` or
        ``jaxvision.per_example.dp_train_step_unjitted`` with its options bound.
      compiler_options: XLA compile options that replace the chosen ones; ``{}`` is XLA's defaults.

    Returns:
      The jitted step; metrics come back replicated, the key is replicated.
    """
    shardings = state_sharding(state, mesh, shard_parameters=shard_parameters)
    return jax.jit(
        step,
        in_shardings=(shardings, batch_sharding(mesh), replicated(mesh)),
        out_shardings=(shardings, replicated(mesh)),
        compiler_options=resolve_compiler_options(state, compiler_options) or None,
    )


def fetch(tree: Any) -> Any:
    """NumPy copies of (fully replicated or fully addressable) global arrays, on any process.

    ``np.asarray`` refuses an array that spans devices of other processes even when every device
    holds the whole value; a replicated array's local shard is the whole value.
    """

    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                raise ValueError("Cannot fetch an array sharded over several processes; use jax.experimental.multihost_utils.process_allgather.")
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(leaf)

    return jax.tree.map(one, tree)


__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "fetch",
    "make_data_parallel_step",
    "make_mesh",
    "place_state",
    "replicated",
    "shard_batch",
    "state_sharding",
]
