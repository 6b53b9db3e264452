"""A linear probe: the backbone's features computed once, then a Dense head trained on the cache.

A frozen-backbone run recomputes every image's features at every epoch; the probe pays for them once
and then trains a [D, classes] matrix, so many epochs cost about as much as one forward pass of the
backbone.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxvision.batch import Batch
from jaxvision.fit import HISTORY_KEYS
from jaxvision.transfer.features import POOLED
from jaxvision.transfer.freezing import default_head


def cache_features(
    extract: Callable[[jax.Array], dict[str, jax.Array]], batches: Iterable[Batch]
) -> tuple[np.ndarray, np.ndarray]:
    """Every real example's pooled features, computed once.

    Args:
      extract: from ``feature_extractor(model, variables)``.
      batches: Batch objects (e.g. ``splits.eval_batches("train")``); examples whose mask is 0
        (padding) are dropped.

    Returns:
      ``(features [N, D] float32, labels [N])`` as NumPy arrays, in the batches' order.

    Raises:
      ValueError: if the batches hold no real example.
    """
    features, labels = [], []
    for batch in batches:
        keep = np.asarray(batch.mask) == 1
        features.append(np.asarray(extract(batch.images)[POOLED], np.float32)[keep])
        labels.append(np.asarray(batch.labels)[keep])
    if not features or not sum(len(f) for f in features):
        raise ValueError("No examples to cache: the batches were empty or all padding; pass the split's batches.")
    return np.concatenate(features), np.concatenate(labels)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Invalid {name}={value!r}: expected an integer >= 1, e.g. {name}=10.")
    return int(value)


def _checked_cache(what: str, features: Any, labels: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    features, labels = np.asarray(features, np.float32), np.asarray(labels)
    if features.ndim != 2 or not len(features):
        raise ValueError(f"Invalid {what} features of shape {features.shape}: expected [N, D] with N >= 1, "
                         f"from cache_features.")
    if labels.shape != (len(features),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Invalid {what} labels of shape {labels.shape} and dtype {labels.dtype}: expected "
                         f"[{len(features)}] integer classes, one per feature row.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"Invalid {what} labels from {labels.min()} to {labels.max()}: expected classes in "
                         f"[0, {num_classes - 1}]; pass num_classes={labels.max() + 1} or fix the labels.")
    return features, labels.astype(np.int32)


def _head(num_classes: int) -> nn.Dense:
    # The zoo's heads are plain nn.Dense: LeCun-normal kernel, zero bias.
    return nn.Dense(num_classes)


def train_linear_probe(
    features: Any,
    labels: Any,
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    validation: tuple[Any, Any] | None = None,
    progress: bool = False,
) -> tuple[dict[str, jax.Array], dict[str, list[float]]]:
    """Trains a Dense head on cached features with softmax cross-entropy.

    ``init_key, shuffle_key = jax.random.split(key)``: the head starts as ``nn.Dense(num_classes)``
    initialised from ``init_key`` (the zoo heads' initialiser); epoch e visits the examples in the order
    ``jax.random.permutation(jax.random.fold_in(shuffle_key, e), N)``, in consecutive batches of
    ``batch_size``, the last one smaller when ``batch_size`` does not divide N (every example is
    seen once per epoch; each batch's loss is the mean over its examples). One jitted program runs a
    whole epoch (``lax.scan`` over its steps).

    Args:
      features: [N, D] from ``cache_features``.
      labels: [N] integer classes.
      num_classes: the head's outputs.
      epochs: passes over the cache.
      batch_size: examples per step.
      optimizer: an optax transformation, e.g. ``make_optimizer("sgd", 0.1)``.
      key: PRNG key for the head's initialisation and the shuffling.
      validation: optional ``(features, labels)`` evaluated after every epoch.
      progress: show a progress bar over the epochs.

    Returns:
      ``(head_params, history)``: ``{"kernel": [D, num_classes], "bias": [num_classes]}`` (for
      ``install_head``), and per-epoch lists ``train_loss``, ``train_accuracy`` (averaged over the
      epoch's steps, as the parameters moved), ``val_loss``, ``val_accuracy`` (NaN without
      ``validation``) and ``seconds``, as ``fit``'s history.

    Raises:
      ValueError: one line, for a bad argument (shapes, label range, counts).
    """
    num_classes = _positive_int("num_classes", num_classes)
    epochs, batch_size = _positive_int("epochs", epochs), _positive_int("batch_size", batch_size)
    features, labels = _checked_cache("training", features, labels, num_classes)
    if validation is not None:
        val_features, val_labels = _checked_cache("validation", *validation, num_classes)
        if val_features.shape[1] != features.shape[1]:
            raise ValueError(f"Invalid validation features of width {val_features.shape[1]}: expected "
                             f"{features.shape[1]} like the training features (the same extractor).")
    count, width = features.shape
    steps = math.ceil(count / batch_size)
    head = _head(num_classes)
    init_key, shuffle_key = jax.random.split(key)
    params = head.init(init_key, jnp.zeros((1, width), jnp.float32))["params"]
    opt_state = optimizer.init(params)
    train_x, train_y = jnp.asarray(features), jnp.asarray(labels)

    def loss_and_correct(params, x, y, weight):
        logits = head.apply({"params": params}, x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
        return jnp.sum(losses * weight) / jnp.sum(weight), jnp.sum(correct * weight)

    @jax.jit
    def run_epoch(params, opt_state, epoch_key):
        # Padding the permutation to a whole number of batches keeps one shape for every step; the
        # padded slots have weight 0, so they change neither the loss nor the gradient.
        order = jax.random.permutation(epoch_key, count)
        padded = steps * batch_size - count
        order = jnp.concatenate([order, jnp.zeros(padded, order.dtype)]).reshape(steps, batch_size)
        weights = jnp.concatenate([jnp.ones(count), jnp.zeros(padded)]).reshape(steps, batch_size)

        def step(carry, batch):
            params, opt_state = carry
            indices, weight = batch
            x, y = train_x[indices], train_y[indices]
            (loss, correct), grads = jax.value_and_grad(loss_and_correct, has_aux=True)(params, x, y, weight)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (loss, correct)

        (params, opt_state), (losses, correct) = jax.lax.scan(step, (params, opt_state), (order, weights))
        return params, opt_state, jnp.mean(losses), jnp.sum(correct) / count

    @jax.jit
    def evaluate(params, x, y):
        loss, correct = loss_and_correct(params, x, y, jnp.ones(x.shape[0]))
        return loss, correct / x.shape[0]

    history: dict[str, list[float]] = {name: [] for name in HISTORY_KEYS}
    bar = tqdm(range(epochs), disable=not progress, unit="epoch", desc="linear probe")
    for epoch in bar:
        start = time.perf_counter()
        params, opt_state, loss, accuracy = run_epoch(params, opt_state, jax.random.fold_in(shuffle_key, epoch))
        val_loss, val_accuracy = (math.nan, math.nan)
        if validation is not None:
            val_loss, val_accuracy = evaluate(params, jnp.asarray(val_features), jnp.asarray(val_labels))
        history["train_loss"].append(float(loss))
        history["train_accuracy"].append(float(accuracy))
        history["val_loss"].append(float(val_loss))
        history["val_accuracy"].append(float(val_accuracy))
        history["seconds"].append(time.perf_counter() - start)
        bar.set_postfix(loss=f"{float(loss):.4f}", accuracy=f"{float(accuracy):.3f}")
    return dict(params), history


def install_head(variables: Any, head_params: Any, *, head: str | None = None) -> dict[str, Any]:
    """``variables`` with the head's parameters replaced (e.g. by ``train_linear_probe``'s).

    Args:
      variables: the model's variables.
      head_params: ``{"kernel": [D, classes], "bias": [classes]}``.
      head: the head's top-level name; None: ``default_head(variables["params"])``.

    Returns:
      New variables (the arrays are shared, not copied).

    Raises:
      ValueError: if the head is missing, or the new parameters' shapes differ from the old head's
        (for another number of classes, call ``with_new_head`` first).
    """
    params = variables["params"]
    name = default_head(params)[0] if head is None else head
    if name not in params:
        raise ValueError(f"No head {name!r} among the top-level parameters ({', '.join(params)}): pass head= "
                         f"the final Dense's name.")
    old = {key: tuple(np.shape(value)) for key, value in params[name].items()}
    new = {key: tuple(np.shape(value)) for key, value in head_params.items()}
    if old != new:
        raise ValueError(f"Head parameters of shapes {new} do not fit {name} {old}: train the probe with the "
                         f"model's width and classes, or call jaxvision.transfer.with_new_head first.")
    installed = {collection: dict(tree) for collection, tree in variables.items()}
    installed["params"][name] = dict(head_params)
    return installed
