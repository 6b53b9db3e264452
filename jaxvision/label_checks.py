"""Labels checked where a dataset enters ``fit`` or ``evaluate``, on the host, never in a jitted step.

Inside the step an out-of-range class index is silently wrong: ``one_hot`` of 10 with 10 classes
is all zeros (a finite, wrong loss), and optax's integer cross-entropy gathers out of bounds (NaN).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def model_outputs(state: Any, images: Any) -> int:
    """The width of the model's output for ``images`` ``[batch, ...]``, from shapes alone (no compile)."""
    variables = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), state.variables)
    leaves, structure = jax.tree.flatten(variables)
    key = (state.apply_fn, tuple(np.shape(images)[1:]), str(images.dtype), structure,
           tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves))
    return _outputs(key, variables)


def _outputs(key: tuple, variables: Any) -> int:
    # Tracing a large model takes a noticeable fraction of a second; validation asks every epoch.
    if key in _OUTPUTS:
        return _OUTPUTS[key]
    apply_fn, image_shape, dtype = key[0], key[1], key[2]
    example = jax.ShapeDtypeStruct((1, *image_shape), np.dtype(dtype))
    logits = jax.eval_shape(lambda v, x: apply_fn(v, x, train=False), variables, example)
    _OUTPUTS[key] = int(logits.shape[-1])
    return _OUTPUTS[key]


_OUTPUTS: dict[tuple, int] = {}


def check_labels(labels: Any, outputs: int, *, where: str) -> None:
    """Raises ValueError (one line) unless ``labels`` fit a model with ``outputs`` outputs.

    Integer labels ``[batch]`` must be class indices in ``[0, outputs)`` (``{0, 1}`` for one output,
    binary classification); soft labels ``[batch, outputs]`` must be finite and non-negative.
    Float labels ``[batch]`` (regression targets) must be finite.

    Args:
      labels: a batch's labels, host or device.
      outputs: the model's output width.
      where: what the labels are, for the message, e.g. "a training batch".
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return
    if np.issubdtype(labels.dtype, np.integer) and labels.ndim == 1:
        classes = max(outputs, 2)
        low, high = int(labels.min()), int(labels.max())
        bad = low if low < 0 else high if high >= classes else None
        if bad is not None:
            raise ValueError(
                f"Invalid label {bad} in {where}: expected class indices in [0, {classes}) for a model with {outputs} "
                f"output{'s' if outputs != 1 else ''}; check the dataset's labels"
                + (f", or build the model with num_classes={high + 1}" if bad == high else "")
            )
        return
    if not np.all(np.isfinite(labels)):
        raise ValueError(f"Invalid labels in {where}: they hold NaN or infinite values; expected finite targets")
    if labels.ndim == 2:
        if labels.shape[-1] != outputs:
            raise ValueError(f"Invalid soft labels of shape {labels.shape} in {where}: expected [batch, {outputs}], one "
                             "probability per model output")
        if labels.min() < 0:
            raise ValueError(f"Invalid soft labels in {where}: negative values; expected probabilities in [0, 1]")


def check_outputs(outputs: int, loss: Any) -> None:
    """Raises ValueError (one line) for a softmax loss on a model with a single output.

    The softmax of one logit is 1 whatever the input: the loss is 0 and nothing is learned.
    """
    from jaxvision.losses import cross_entropy, nll

    if outputs == 1 and loss in (cross_entropy, nll):
        raise ValueError(
            "Softmax classification needs at least 2 outputs; the model has 1 (its loss would be 0 whatever it "
            "predicts). Use num_classes=2, or --loss binary_cross_entropy for a single sigmoid output"
        )


__all__ = ["check_labels", "check_outputs", "model_outputs"]
