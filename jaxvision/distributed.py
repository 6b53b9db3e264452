"""Multi-host training on ``jax.distributed``: start the processes' runtime, and give each process its
own shard of the data.

Every process runs the same program. After ``initialize``, ``jax.devices()`` lists the devices of all
processes and ``jaxvision.parallel.make_mesh()`` spans them; each process reads only its shard of the
training split and passes its rows to ``jaxvision.parallel.shard_batch``, which assembles the global
batch (``jax.make_array_from_process_local_data``). The jitted step is then one SPMD program over all
devices: XLA's collectives (NCCL on GPU, ICI/DCN on TPU, gloo over TCP on CPU) average the gradients.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from jaxvision.batch import Batch


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Any = None,
    cpu_collectives: str = "gloo",
    initialization_timeout: int = 300,
) -> None:
    """Joins this process to the distributed runtime (``jax.distributed.initialize``).

    Call it first, before anything touches a device. On Cloud TPU pods, SLURM and Open MPI leave every
    argument None: JAX reads them from the environment. Elsewhere pass the coordinator (process 0's
    ``host:port``), the number of processes and this process's id, on every process.

    Args:
      coordinator_address: e.g. "10.0.0.1:1234"; None to auto-detect.
      num_processes: total processes; None to auto-detect.
      process_id: this process's id in [0, num_processes); None to auto-detect.
      local_device_ids: restrict this process to some local devices (e.g. one GPU per process).
      cpu_collectives: cross-process collectives for CPU devices: "gloo" (TCP) or "mpi".
      initialization_timeout: seconds to wait for every process to join.
    """
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
    )


def process_split(split: str, *, drop_remainder: bool = True) -> Any:
    """This process's even, disjoint part of a TFDS split (``tfds.split_for_jax_process``).

    ``jaxvision.data.load(name, process_split("train[:90%]"))`` reads only this process's examples.
    ``drop_remainder`` keeps the parts equal, so every process runs the same number of steps.
    """
    import tensorflow_datasets as tfds

    return tfds.split_for_jax_process(split, drop_remainder=drop_remainder)


def process_rows(global_batch_size: int) -> slice:
    """The rows of a global batch that this process feeds: ``[i * n, (i + 1) * n)``, n = global / processes.

    Raises:
      ValueError: if the global batch does not split evenly over the processes.
    """
    count, index = jax.process_count(), jax.process_index()
    if global_batch_size % count:
        raise ValueError(
            f"A global batch of {global_batch_size} cannot be split evenly over {count} processes; "
            f"use a multiple of {count}, e.g. {max(global_batch_size // count, 1) * count}."
        )
    local = global_batch_size // count
    return slice(index * local, (index + 1) * local)


def local_rows(batch: Batch) -> Batch:
    """This process's rows of a global batch that every process holds (e.g. read with the same seed)."""
    rows = process_rows(int(batch.mask.shape[0]))
    return jax.tree.map(lambda leaf: leaf[rows], batch)


def process_splits(splits: Any) -> Any:
    """A copy of ``jaxvision.data.Splits`` whose training batches are this process's shard.

    The training split is sharded with ``tf.data.Dataset.shard`` (example k goes to process
    k mod P) and cut to the same length on every process, and the batch size becomes the per-process
    batch size, ``splits.batch_size / P``: each epoch every process yields the same number of local
    batches, which ``jaxvision.parallel.shard_batch`` assembles into global batches of the original
    size. Validation and test stay whole on every process.

    Raises:
      ValueError: if the batch size does not split evenly over the processes.
    """
    count, index = jax.process_count(), jax.process_index()
    rows = process_rows(splits.batch_size)
    local_count = splits.meta.num_train // count
    datasets = dict(splits._datasets)
    datasets["train"] = datasets["train"].shard(count, index).take(local_count)
    return dataclasses.replace(
        splits,
        meta=dataclasses.replace(splits.meta, num_train=local_count),
        batch_size=rows.stop - rows.start,
        _datasets=datasets,
    )


__all__ = ["initialize", "local_rows", "process_rows", "process_split", "process_splits"]
