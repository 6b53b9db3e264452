"""Saving and restoring one TrainState with orbax; the state is a pytree, so it is saved as is.

``jaxvision.run_checkpoints`` keeps a run's periodic checkpoints; this is the one-off save a user
calls by hand. Both write a sha256 manifest (``jaxvision.integrity``) and check it on restore.
"""

from __future__ import annotations

import dataclasses
import os

import jax

from jaxvision import integrity
from jaxvision.train import TrainState

# orbax.checkpoint is imported where it is used, since only saving and restoring need it: it adds
# 0.16-0.25 s to ``import jaxvision`` (0.8 s without it, nearly all of that jax and flax).


def save_checkpoint(directory: str, state: TrainState) -> str:
    """Writes ``state`` under ``directory/step_<step>`` with its checksums and returns that path (overwrites it)."""
    import orbax.checkpoint as ocp

    path = os.path.join(os.path.abspath(directory), f"step_{int(state.step)}")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, state, force=True)
    integrity.write_manifest(path)
    return path


def restore_checkpoint(path: str, like: TrainState) -> TrainState:
    """Reads a state saved by ``save_checkpoint``.

    Args:
      path: the path ``save_checkpoint`` returned.
      like: a state with the same structure (e.g. a freshly created one); it supplies the static
        fields (``apply_fn``, ``tx``) and the shapes and dtypes to restore.

    Raises:
      jaxvision.integrity.CorruptCheckpointError: a file does not match its checksum (checkpoints
        written before checksums existed have no manifest and are read as they are).
      ValueError: the saved structure differs from ``like``'s, said in words.
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    if integrity.has_manifest(path):
        integrity.verify_manifest(path)
    with ocp.StandardCheckpointer() as checkpointer:
        saved = checkpointer.metadata(path).item_metadata
        saved = getattr(saved, "tree", saved)
        differences = integrity.describe_differences(integrity.leaf_signatures(saved), integrity.leaf_signatures(like))
        if differences:
            raise ValueError(f"checkpoint {path} does not fit the state given as `like`: {differences}")
        # A checkpoint written before a TrainState field existed (ema_params) lacks it; when `like`'s is
        # empty too, nothing is missing: restore the fields it has and keep `like`'s empty one.
        fields = [field.name for field in dataclasses.fields(like) if field.metadata.get("pytree_node", True)]
        absent = [name for name in fields
                  if isinstance(saved, dict) and name not in saved and not jax.tree.leaves(getattr(like, name))]
        if not absent:
            return checkpointer.restore(path, like)
        restored = checkpointer.restore(path, {name: getattr(like, name) for name in fields if name not in absent})
        return like.replace(**restored)
