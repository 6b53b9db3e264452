"""A task's test figures: the model over every real example of a split, summarised by the task."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np


@functools.partial(jax.jit, static_argnames="apply_fn")
def _outputs(variables: Any, images: jax.Array, *, apply_fn) -> jax.Array:
    return apply_fn(variables, images, train=False).astype(np.float32)


def task_outputs(apply_fn, variables: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Eval-mode outputs of normalised ``images`` [N, H, W, C], in batches (the last padded, one compile)."""
    parts = []
    for first in range(0, len(images), batch_size):
        part = images[first:first + batch_size]
        real = len(part)
        if real < batch_size and len(images) > batch_size:
            part = np.concatenate([part, np.zeros((batch_size - real, *part.shape[1:]), part.dtype)])
        parts.append(np.asarray(_outputs(variables, part, apply_fn=apply_fn))[:real])
    return np.concatenate(parts)


def evaluate_task(task, apply_fn, variables: Any, splits, split: str = "test") -> dict[str, Any]:
    """``task.metrics`` over ``split`` of a ``TaskSplits``: e.g. {"auc", "accuracy", ...} or {"miou", ...}."""
    parts = []
    for batch in splits.eval_batches(split):
        real = np.asarray(batch.mask) > 0
        outputs = np.asarray(_outputs(variables, batch.images, apply_fn=apply_fn))[real]
        targets = jax.tree.map(lambda t: np.asarray(t)[real], batch.labels)
        parts.append(task.summarize(outputs, targets))
    return task.metrics(parts)
