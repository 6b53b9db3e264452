"""A run's periodic checkpoints: orbax's CheckpointManager, with checksums and the loop's position.

Each checkpoint ``<directory>/<step>/`` holds three orbax items:

- ``state``: the TrainState (or a population's stacked states) as host NumPy arrays, so nothing
  device-specific is saved and a run trained on a GPU restores on a CPU;
- ``best``: the early-stopping best state, when early stopping is on (it is not the current state);
- ``loop``: the epoch loop's position and records (``jaxvision.fit.LoopState``) as JSON.

A save copies the arrays to the host and hands them to one writer thread, so training goes on while
orbax writes into a temporary folder and renames it when complete (an interrupted save never
replaces a usable checkpoint); then ``jaxvision.integrity`` writes the folder's sha256 manifest. A step folder without a manifest was cut short after orbax's rename (a kill
in that window) and is dropped on restore; one whose files do not match their manifest is refused.
Orbax keeps the last ``keep`` checkpoints plus the one with the lowest validation loss.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from typing import Any

import jax
import numpy as np

from jaxvision import integrity

# orbax.checkpoint is imported where it is used: it adds 0.16-0.25 s to ``import jaxvision``.


class CheckpointMismatchError(ValueError):
    """A checkpoint whose structure (or settings) differ from the run restoring it."""


def _host(tree: Any) -> Any:
    # NumPy copies: no sharding or device in what is saved.
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.result_type(x)), tree)


class RunCheckpoints:
    """Saves and restores a run's checkpoints under one directory.

    Args:
      directory: the checkpoints' folder (created if needed).
      every_steps: a checkpoint every this many steps (besides the one after every epoch); None: none.
      every_minutes: a checkpoint when this many minutes have passed since the last one; None: none.
      keep: how many of the latest checkpoints to keep (the best by validation loss is kept too).
    """

    def __init__(self, directory: str, *, every_steps: int | None = None, every_minutes: float | None = None,
                 keep: int = 2):
        import orbax.checkpoint as ocp
        from orbax.checkpoint import checkpoint_managers as policies

        if every_steps is not None and every_steps < 1:
            raise ValueError(f"Invalid checkpoint_every={every_steps}: expected a positive number of steps, e.g. 500.")
        if every_minutes is not None and not every_minutes > 0:
            raise ValueError(f"Invalid checkpoint_minutes={every_minutes}: expected a positive number, e.g. 10.")
        if keep < 1:
            raise ValueError(f"Invalid keep_checkpoints={keep}: expected at least 1.")
        self.directory = os.path.abspath(directory)
        self.every_steps, self.every_minutes, self.keep = every_steps, every_minutes, keep
        preservation = policies.AnyPreservationPolicy([
            policies.LatestN(n=keep),
            # Lowest validation loss first: BestN keeps the end of the sorted list.
            policies.BestN(get_metric_fn=_val_loss, reverse=True, n=1,
                           keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False, create=True, cleanup_tmp_directories=True,
            preservation_policy=preservation,
            # best_fn only makes orbax write each checkpoint's metrics to disk (the policy above decides
            # what is kept): without it a restarted manager no longer knows which checkpoint was best.
            best_fn=_val_loss, best_mode="min",
        )
        self._ocp = ocp
        # Registered handlers let item_metadata read a saved tree's structure before restoring it.
        handlers = {"state": ocp.StandardCheckpointHandler(), "best": ocp.StandardCheckpointHandler(),
                    "loop": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
        self._last_save = time.monotonic()
        self._saved_step: int | None = None
        # One writer thread: saves stay in order, and training waits only for the host copy.
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxvision-checkpoint")
        self._pending: concurrent.futures.Future | None = None
        self.save_seconds: list[float] = []  # each save's write, on the writer thread
        self.blocking_seconds: list[float] = []  # each save's time in the training thread

    def due(self, step: int) -> bool:
        """Whether a periodic (mid-epoch) checkpoint is due after ``step`` steps."""
        if self.every_steps is not None and step % self.every_steps == 0:
            return True
        return self.every_minutes is not None and time.monotonic() - self._last_save >= 60 * self.every_minutes

    def step_directory(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, loop: dict[str, Any], *, best: Any = None,
             val_loss: float | None = None) -> str:
        """Starts writing checkpoint ``step`` and its manifest; returns its folder.

        The arrays are copied to the host here; orbax writes them on a background thread while
        training goes on, and the next save (or ``latest``, ``restore``, ``close``) waits for it.

        Args:
          step: the number of steps trained.
          state: the state to resume from.
          loop: the loop's position and records, JSON-able.
          best: the early-stopping best state, or None.
          val_loss: after an epoch, its validation loss (ranks the kept "best" checkpoint).
        """
        path = self.step_directory(step)
        if step == self._saved_step:
            return path  # this process saved this step already (e.g. a periodic save, then Ctrl-C)
        self.wait()
        if step in self._manager.all_steps():
            self._manager.delete(step)  # left by an interrupted process: this save supersedes it
        start = time.perf_counter()
        items = {"state": _host(state), "loop": loop}
        if best is not None:
            items["best"] = _host(best)
        metrics = {"val_loss": float(val_loss)} if val_loss is not None and np.isfinite(val_loss) else None
        self._saved_step = step
        self._pending = self._writer.submit(self._write, step, items, metrics)
        self._last_save = time.monotonic()
        self.blocking_seconds.append(time.perf_counter() - start)
        return path

    def _write(self, step: int, items: dict[str, Any], metrics: dict[str, float] | None) -> None:
        ocp = self._ocp
        start = time.perf_counter()
        args = {name: ocp.args.JsonSave(value) if name == "loop" else ocp.args.StandardSave(value)
                for name, value in items.items()}
        self._manager.save(step, args=ocp.args.Composite(**args), metrics=metrics, force=True)
        self._manager.wait_until_finished()
        integrity.write_manifest(self.step_directory(step))
        self.save_seconds.append(time.perf_counter() - start)

    def wait(self) -> None:
        """Waits for the save in progress, if any; raises its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def latest(self) -> int | None:
        """The latest complete checkpoint's step, or None; incomplete ones (no manifest) are deleted.

        Raises:
          integrity.CorruptCheckpointError: the latest checkpoint's files do not match their checksums.
        """
        self.wait()
        self._manager.reload()
        for step in sorted(self._manager.all_steps(), reverse=True):
            path = self.step_directory(step)
            if not integrity.has_manifest(path):
                # Killed between orbax's rename and the manifest: unusable, so never "latest".
                print(f"checkpoint step {step} was not written to the end (no checksums); dropping it")
                self._manager.delete(step)
                continue
            integrity.verify_manifest(path)
            return step
        return None

    def saved_settings(self, step: int) -> dict[str, Any]:
        """The settings recorded with checkpoint ``step`` (read without restoring its arrays)."""
        restored = self._manager.restore(step, args=self._ocp.args.Composite(loop=self._ocp.args.JsonRestore()))
        return dict(restored["loop"]).get("settings", {})

    def restore(self, step: int, like_state: Any, *, like_best: Any = None) -> tuple[Any, Any, dict[str, Any]]:
        """Reads checkpoint ``step`` into the structures of ``like_state`` (and ``like_best``).

        Returns:
          (state, best state or None, loop dict). Arrays come back on the default device.

        Raises:
          integrity.CorruptCheckpointError: a file does not match its checksum.
          CheckpointMismatchError: the saved structure differs from ``like_state``'s, in words.
        """
        self.wait()
        ocp = self._ocp
        path = self.step_directory(step)
        integrity.verify_manifest(path)
        metadata = self._manager.item_metadata(step)
        targets = {"state": like_state}
        if like_best is not None:
            if not os.path.isdir(os.path.join(path, "best")):
                raise CheckpointMismatchError(
                    f"checkpoint {path} holds no early-stopping best state: it was saved without patience; "
                    "resume with the same --patience, or pass --overwrite to start afresh"
                )
            targets["best"] = like_best
        for name, like in targets.items():
            saved = integrity.leaf_signatures(_metadata_tree(metadata[name]))
            differences = integrity.describe_differences(saved, integrity.leaf_signatures(like))
            if differences:
                raise CheckpointMismatchError(f"checkpoint {path} does not fit this run's {name}: {differences}")
        args = {name: ocp.args.StandardRestore(_abstract(like)) for name, like in targets.items()}
        args["loop"] = ocp.args.JsonRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**args))
        state = jax.tree.map(lambda like, x: jax.numpy.asarray(x), like_state, restored["state"])
        best = None if like_best is None else jax.tree.map(lambda like, x: jax.numpy.asarray(x), like_best,
                                                           restored["best"])
        return state, best, dict(restored["loop"])

    def close(self) -> None:
        """Finishes the save in progress and closes orbax's manager."""
        try:
            self.wait()
        finally:
            self._writer.shutdown(wait=True)
            self._manager.close()

    def __enter__(self) -> RunCheckpoints:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _val_loss(metrics: dict[str, float]) -> float:
    return metrics["val_loss"]


def describe_setting_differences(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """``"batch_size 64 -> 32, optimizer adam -> sgd"``: the settings that differ, or None."""
    names = sorted(set(saved) | set(current))
    changes = [f"{name} {saved.get(name, '(unset)')!r} -> {current.get(name, '(unset)')!r}" for name in names
               if saved.get(name) != current.get(name)]
    return ", ".join(changes) or None


def _metadata_tree(metadata: Any) -> Any:
    # orbax wraps a saved pytree's metadata in a TreeMetadata whose ``tree`` is the pytree.
    return getattr(metadata, "tree", metadata)


__all__ = ["CheckpointMismatchError", "RunCheckpoints", "describe_setting_differences"]
