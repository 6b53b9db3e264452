"""Segmentation metrics from one confusion matrix, and a soft Dice loss for training, in jax.numpy.

Every metric is a function of the ``[num_classes, num_classes]`` pixel confusion matrix (row = true
class, column = predicted class), so an evaluation sums per-batch matrices (on device, under jit) and
computes the figures once at the end: means of per-batch IoUs would weight small batches wrongly.

A class absent from both the truth and the prediction has no IoU or Dice (0 / 0): it is NaN in the
per-class arrays and left out of the means, as in torchmetrics and mmsegmentation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def confusion_matrix(labels: jax.Array, predictions: jax.Array, num_classes: int, *, ignore_index: int | None = None) -> jax.Array:
    """Pixel counts ``[num_classes, num_classes]``, row = true class, column = predicted class.

    Args:
      labels: [...] integer true classes (e.g. [batch, height, width]).
      predictions: [...] integer predicted classes, same shape (``argmax`` of the logits).
      num_classes: number of classes C.
      ignore_index: a class index in [0, C) whose pixels are not counted (a "void" or "unlabelled"
        class), or None.

    Returns:
      [C, C] int32 counts. Labels or predictions outside [0, C) are never counted, so VOC's 255 border
      needs no ``ignore_index`` (and cannot corrupt another cell, as it would in a plain bincount).
    """
    labels = labels.reshape(-1).astype(jnp.int32)
    predictions = predictions.reshape(-1).astype(jnp.int32)
    counted = (labels >= 0) & (labels < num_classes) & (predictions >= 0) & (predictions < num_classes)
    if ignore_index is not None:
        counted &= labels != ignore_index
    cells = jnp.where(counted, labels * num_classes + predictions, 0)
    counts = jnp.bincount(cells, weights=counted.astype(jnp.int32), length=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def _true_false_positives(matrix: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    matrix = matrix.astype(jnp.float32)
    true_positive = jnp.diagonal(matrix)
    return true_positive, matrix.sum(0) - true_positive, matrix.sum(1) - true_positive


def _ratio_or_nan(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), jnp.nan)


def pixel_accuracy(matrix: jax.Array) -> jax.Array:
    """Fraction of counted pixels whose class is right: ``trace / sum``; NaN when nothing was counted."""
    matrix = matrix.astype(jnp.float32)
    return _ratio_or_nan(jnp.trace(matrix), matrix.sum())


def per_class_iou(matrix: jax.Array) -> jax.Array:
    """[C] Jaccard index ``TP / (TP + FP + FN)`` per class; NaN for classes in neither truth nor prediction."""
    true_positive, false_positive, false_negative = _true_false_positives(matrix)
    return _ratio_or_nan(true_positive, true_positive + false_positive + false_negative)


def mean_iou(matrix: jax.Array) -> jax.Array:
    """Mean of ``per_class_iou`` over the classes present in the truth or the prediction."""
    return jnp.nanmean(per_class_iou(matrix))


def per_class_dice(matrix: jax.Array) -> jax.Array:
    """[C] Dice (F1) ``2 TP / (2 TP + FP + FN)`` per class; NaN for classes in neither truth nor prediction."""
    true_positive, false_positive, false_negative = _true_false_positives(matrix)
    return _ratio_or_nan(2 * true_positive, 2 * true_positive + false_positive + false_negative)


def mean_dice(matrix: jax.Array) -> jax.Array:
    """Mean of ``per_class_dice`` over the classes present in the truth or the prediction."""
    return jnp.nanmean(per_class_dice(matrix))


def soft_dice_loss(logits: jax.Array, labels: jax.Array, *, smooth: float = 1.0, weights: jax.Array | None = None) -> jax.Array:
    """Multi-class soft Dice loss (Milletari et al., 2016, V-Net), per image, from softmax probabilities.

    ``1 - mean_c (2 sum p_c t_c + smooth) / (sum p_c + sum t_c + smooth)`` over each image's pixels,
    ``t_c`` the one-hot truth. ``smooth`` keeps classes absent from an image (both sums near 0) at a
    ratio near 1 rather than 0/0, so they do not dominate the gradient.

    Args:
      logits: [batch, height, width, num_classes].
      labels: [batch, height, width] integer classes.
      smooth: additive smoothing, > 0.
      weights: optional [batch, height, width] pixel weights; 0 leaves a pixel out of both sums (an
        ignored pixel).

    Returns:
      [batch] float32 losses in [0, 1); near 0 when the probabilities match the truth.
    """
    probabilities = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    truth = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if weights is not None:
        probabilities = probabilities * weights[..., None]
        truth = truth * weights[..., None]
    intersection = (probabilities * truth).sum((1, 2))
    sizes = probabilities.sum((1, 2)) + truth.sum((1, 2))
    return 1.0 - ((2 * intersection + smooth) / (sizes + smooth)).mean(-1)
