"""Per-example gradients with ``vmap(grad)``, and a DP-SGD step built on them.

The gradient of the training loss (``jaxvision.train.loss_and_updates``) is taken for a batch of one
example and vmapped over the batch, so every example gets its own gradient in one compiled program,
without a Python loop. DP-SGD (Abadi et al., 2016, "Deep Learning with Differential Privacy") clips
each of those gradients to an L2 norm, sums them, adds Gaussian noise and averages.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxvision.batch import Batch, BatchAugment, Metrics
from jaxvision.losses import Loss, get_loss, hard_labels, predicted_classes
from jaxvision.train import TrainState, loss_and_updates, split_step_key


def _check_no_batch_norm(state: TrainState) -> None:
    if state.batch_stats:
        raise ValueError(
            "Per-example gradients need examples that do not interact, but this model has batch norm, "
            "whose statistics mix the examples of a batch. Use a model without batch norm (e.g. lenet5, mlp)."
        )


def _per_example_loss_and_grads(
    state: TrainState, params: Any, batch: Batch, dropout_key: jax.Array, loss: Loss
) -> tuple[jax.Array, jax.Array, Any]:
    """([batch] losses, [batch, classes] logits, grads with leaves [batch, ...])."""

    def one(image, label, mask, index):
        single = Batch(images=image[None], labels=label[None], mask=mask[None])
        # Each example draws its own dropout mask.
        key = jax.random.fold_in(dropout_key, index)
        (value, (logits, _)), grads = jax.value_and_grad(
            lambda p: loss_and_updates(state, p, single, key, loss=loss), has_aux=True
        )(params)
        return value, logits[0], grads

    indices = jnp.arange(batch.mask.shape[0])
    return jax.vmap(one)(batch.images, batch.labels, batch.mask, indices)


def per_example_grads(state: TrainState, batch: Batch, *, key: jax.Array | None = None,
                      loss: str | Loss = "cross_entropy") -> Any:
    """The gradient of the training loss of each example of ``batch`` with respect to ``state.params``.

    Example ``i``'s gradient is ``grad(loss of Batch(images[i:i+1], ...))``; the mean over a batch
    without padding is the batch gradient of ``train_step``. Padding examples (mask 0) get zeros.

    Args:
      state: a TrainState whose model has no batch norm.
      batch: a Batch of ``n`` examples.
      key: dropout key; example ``i`` uses ``fold_in(key, i)``. Only models with dropout use it;
        None means ``jax.random.key(0)``.

    Returns:
      A pytree shaped like ``state.params`` with a leading axis of size ``n``.

    Raises:
      ValueError: if the model has batch norm (its statistics couple the examples).
    """
    _check_no_batch_norm(state)
    key = jax.random.key(0) if key is None else key
    return _per_example_grads_jit(state, batch, key, get_loss(loss))


@functools.partial(jax.jit, static_argnums=3)
def _per_example_grads_jit(state: TrainState, batch: Batch, key: jax.Array, loss: Loss) -> Any:
    return _per_example_loss_and_grads(state, state.params, batch, key, loss)[2]


def clip_and_noise(
    grads: Any, mask: jax.Array, key: jax.Array, *, l2_norm_clip: float, noise_multiplier: float
) -> tuple[Any, jax.Array]:
    """The DP-SGD gradient from per-example gradients.

    Each example's gradient is scaled by ``min(1, l2_norm_clip / ||g_i||)`` (its global L2 norm over
    all parameters), the clipped gradients of real examples are summed, Gaussian noise with standard
    deviation ``noise_multiplier * l2_norm_clip`` is added to every coordinate, and the sum is divided
    by the number of real examples.

    Args:
      grads: per-example gradients, leaves [batch, ...].
      mask: [batch] 1 for a real example, 0 for padding.
      key: PRNG key of the noise.
      l2_norm_clip: the clipping norm C > 0.
      noise_multiplier: sigma >= 0; 0 gives clipped SGD without noise.

    Returns:
      (the noisy mean gradient, shaped like one example's gradient; [batch] per-example norms before clipping).
    """
    leaves, treedef = jax.tree.flatten(grads)
    norms = jnp.sqrt(sum(jnp.sum(jnp.square(leaf.reshape(leaf.shape[0], -1)), axis=1) for leaf in leaves))
    scale = jnp.minimum(1.0, l2_norm_clip / jnp.maximum(norms, 1e-12)) * mask
    noise_keys = jax.random.split(key, len(leaves))
    count = jnp.maximum(jnp.sum(mask), 1.0)
    noisy = [
        (jnp.tensordot(scale, leaf, axes=1) + noise_multiplier * l2_norm_clip * jax.random.normal(k, leaf.shape[1:], leaf.dtype)) / count
        for leaf, k in zip(leaves, noise_keys)
    ]
    return jax.tree.unflatten(treedef, noisy), norms


def dp_train_step_unjitted(
    state: TrainState, batch: Batch, key: jax.Array, *, l2_norm_clip: float, noise_multiplier: float,
    loss: Loss = get_loss("cross_entropy"), augment: BatchAugment | None = None,
) -> tuple[TrainState, Metrics]:
    """One DP-SGD update: per-example gradients, clipped, summed, noised, averaged, then the optimiser.

    Same contract as ``train_step``: the step is folded into ``key``. The augmentation and dropout
    keys come from ``split_step_key(k0, step)`` and the noise key from ``fold_in(k1, step)``, where
    ``k0, k1 = split(key)``, so the noise is reproducible from the explicit key and never repeats.

    Returns:
      (new state, {"loss", "accuracy", "grad_norm": mean per-example norm before clipping,
      "clipped_fraction": share of real examples whose gradient was clipped}).
    """
    _check_no_batch_norm(state)
    base_key, noise_base = jax.random.split(key)
    augment_key, dropout_key = split_step_key(base_key, state.step)
    noise_key = jax.random.fold_in(noise_base, state.step)
    if augment is not None:
        batch = augment(augment_key, batch)
    losses, logits, grads = _per_example_loss_and_grads(state, state.params, batch, dropout_key, loss)
    grads, norms = clip_and_noise(grads, batch.mask, noise_key, l2_norm_clip=l2_norm_clip, noise_multiplier=noise_multiplier)
    count = jnp.maximum(jnp.sum(batch.mask), 1.0)
    correct = predicted_classes(logits) == hard_labels(batch.labels)
    metrics = {
        "loss": jnp.sum(losses * batch.mask) / count,
        "accuracy": jnp.sum(correct * batch.mask) / count,
        "grad_norm": jnp.sum(norms * batch.mask) / count,
        "clipped_fraction": jnp.sum((norms > l2_norm_clip) * batch.mask) / count,
    }
    return state.apply_gradients(grads=grads), metrics


dp_train_step = jax.jit(dp_train_step_unjitted, static_argnames=("l2_norm_clip", "noise_multiplier", "loss", "augment"))
dp_train_step.__doc__ = dp_train_step_unjitted.__doc__


def make_dp_train_step(*, l2_norm_clip: float, noise_multiplier: float, loss: str | Loss = "cross_entropy",
                       augment: BatchAugment | None = None):
    """A jitted ``(state, batch, key) -> (state, metrics)`` DP-SGD step, like ``make_train_step``'s.

    Raises:
      ValueError: for a non-positive clip norm or a negative noise multiplier.
    """
    if not l2_norm_clip > 0:
        raise ValueError(f"Invalid l2_norm_clip={l2_norm_clip}: expected a positive number, e.g. 1.0.")
    if not noise_multiplier >= 0:
        raise ValueError(f"Invalid noise_multiplier={noise_multiplier}: expected a number >= 0, e.g. 1.1.")
    return jax.jit(functools.partial(dp_train_step_unjitted, l2_norm_clip=l2_norm_clip, noise_multiplier=noise_multiplier,
                                     loss=get_loss(loss), augment=augment))


__all__ = ["clip_and_noise", "dp_train_step", "dp_train_step_unjitted", "make_dp_train_step", "per_example_grads"]
