"""Losses by name, each ``(logits, labels) -> [batch]`` per-example values, built on optax.

Integer labels ``[batch]`` and soft labels ``[batch, num_classes]`` (mixup, label smoothing) are both
accepted where it makes sense: the label array's rank says which.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxvision._suggest import unknown_name_error

Loss = Callable[[jax.Array, jax.Array], jax.Array]


def _targets_like(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Integer class labels become one-hot targets shaped like ``logits``; other labels pass through."""
    if labels.ndim == logits.ndim - 1 and jnp.issubdtype(labels.dtype, jnp.integer):
        if logits.shape[-1] == 1:  # one output unit: the label itself is the 0/1 target
            return labels[..., None].astype(logits.dtype)
        return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return labels.reshape(logits.shape).astype(logits.dtype)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy.

    Args:
      logits: [batch, num_classes].
      labels: [batch] integer classes, or [batch, num_classes] probabilities (soft labels).

    Returns:
      [batch] float32 losses.
    """
    if labels.ndim == logits.ndim - 1:
        return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    return optax.losses.softmax_cross_entropy(logits, labels)


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Sigmoid binary cross-entropy, averaged over outputs.

    Args:
      logits: [batch, outputs]; with one output, labels are the 0/1 targets.
      labels: [batch] integers (one-hot encoded when outputs > 1) or [batch, outputs] in [0, 1].

    Returns:
      [batch] float32 losses.
    """
    losses = optax.losses.sigmoid_binary_cross_entropy(logits, _targets_like(logits, labels))
    return losses.reshape(losses.shape[0], -1).mean(axis=-1)


def l2(predictions: jax.Array, labels: jax.Array) -> jax.Array:
    """Squared error, averaged over outputs; integer labels are one-hot encoded first.

    Returns:
      [batch] float32 losses: mean over outputs of (prediction - target)^2.
    """
    errors = optax.losses.squared_error(predictions, _targets_like(predictions, labels))
    return errors.reshape(errors.shape[0], -1).mean(axis=-1)


def l1(predictions: jax.Array, labels: jax.Array) -> jax.Array:
    """Absolute error, averaged over outputs; integer labels are one-hot encoded first.

    optax has no absolute-error loss, so this one is written here.

    Returns:
      [batch] float32 losses: mean over outputs of |prediction - target|.
    """
    errors = jnp.abs(predictions - _targets_like(predictions, labels))
    return errors.reshape(errors.shape[0], -1).mean(axis=-1)


def nll(log_probabilities: jax.Array, labels: jax.Array) -> jax.Array:
    """Negative log-likelihood of the labels under log-probabilities, PyTorch's ``NLLLoss``.

    ``-log_probabilities[label]`` for integer labels, ``-sum(labels * log_probabilities)`` for soft
    ones. The input is renormalised with ``log_softmax`` first, which leaves log-probabilities as they
    are (their logsumexp is already 0) and gives the same gradient through a model's own
    ``log_softmax``; it also keeps ``--loss nll`` bounded on jaxvision's models, which return logits
    (there it is cross-entropy) instead of driving a logit to infinity.

    Args:
      log_probabilities: [batch, num_classes], e.g. ``jax.nn.log_softmax(logits)``.
      labels: [batch] integer classes, or [batch, num_classes] probabilities (soft labels).

    Returns:
      [batch] float32 losses; ``nll(log_softmax(logits), labels) == cross_entropy(logits, labels)``.
    """
    log_probabilities = jax.nn.log_softmax(log_probabilities, axis=-1)
    if labels.ndim == log_probabilities.ndim - 1:
        return -jnp.take_along_axis(log_probabilities, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return -jnp.sum(labels.astype(log_probabilities.dtype) * log_probabilities, axis=-1)


LOSSES: dict[str, Loss] = {
    "cross_entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "l2": l2,
    "l1": l1,
    "nll": nll,
}


def get_loss(name: str | Loss) -> Loss:
    """Returns the loss called ``name``; a callable is returned unchanged."""
    if callable(name):
        return name
    if name not in LOSSES:
        raise unknown_name_error("loss", name, LOSSES)
    return LOSSES[name]


@dataclasses.dataclass(frozen=True)
class _Smoothed:
    """A softmax loss trained on smoothed targets; a frozen dataclass, so equal ones share a compiled step."""

    loss: Loss
    smoothing: float

    def __call__(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        if labels.ndim == logits.ndim - 1:
            labels = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
        return self.loss(logits, optax.smooth_labels(labels.astype(jnp.float32), self.smoothing))


def smoothed(loss: str | Loss, smoothing: float) -> Loss:
    """``loss`` on label-smoothed targets (Szegedy et al., 2016): ``(1 - s) * one_hot + s / classes``.

    Integer and soft labels (mixup) are both smoothed. Only softmax losses take it.

    Raises:
      ValueError: ``smoothing`` outside [0, 1), or a loss other than cross_entropy or nll.
    """
    if not (isinstance(smoothing, (int, float)) and math.isfinite(smoothing) and 0.0 <= smoothing < 1.0):
        raise ValueError(f"Invalid label_smoothing={smoothing!r}: expected a number in [0, 1), e.g. 0.1 "
                         "(--label-smoothing 0.1)")
    loss = get_loss(loss)
    if loss not in (cross_entropy, nll):
        name = next((key for key, value in LOSSES.items() if value is loss), getattr(loss, "__name__", repr(loss)))
        raise ValueError(f"Invalid label_smoothing={smoothing} with loss {name!r}: label smoothing needs a softmax "
                         "loss (cross_entropy or nll); drop --label-smoothing or pass --loss cross_entropy")
    return _Smoothed(loss, float(smoothing)) if smoothing else loss


def predicted_classes(logits: jax.Array) -> jax.Array:
    """Class predictions ``[batch]``: argmax, or ``logit > 0`` for a single output unit."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1)


def hard_labels(labels: jax.Array) -> jax.Array:
    """Integer labels ``[batch]`` from integer or soft ``[batch, classes]`` labels."""
    return labels if labels.ndim == 1 else jnp.argmax(labels, axis=-1)
