"""Regularisers that hide or mix image content: cutout and random erasing per image; mixup and cutmix per batch.

Mixup and cutmix blend two examples and their labels, so they return soft labels
``[batch, num_classes]`` (each row sums to 1), which ``jaxvision.losses.cross_entropy`` accepts.
The partner of each example is drawn by a random permutation of the batch, and each example draws
its own mixing weight, so one batch holds many different mixes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def soft_labels(labels: jax.Array, num_classes: int) -> jax.Array:
    """``[batch, num_classes]`` float32: integer labels one-hot encoded, soft labels passed through."""
    if labels.ndim == 1:
        return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return labels.astype(jnp.float32)


def _box_mask(height: int, width: int, top: jax.Array, left: jax.Array, box_height: jax.Array, box_width: jax.Array) -> jax.Array:
    """[height, width] bool: True inside rows [top, top + box_height) and columns [left, left + box_width)."""
    rows = jnp.arange(height)[:, None]
    columns = jnp.arange(width)[None, :]
    return (rows >= top) & (rows < top + box_height) & (columns >= left) & (columns < left + box_width)


# ---------------------------------------------------------------------------------------- per image


def cutout(key: jax.Array, image: jax.Array, *, size_fraction: float) -> jax.Array:
    """Zeroes a square of side ``size_fraction * min(height, width)`` centred at a random pixel.

    DeVries & Taylor (2017): the square may hang over the border, so less may be hidden. 0 is the
    dataset mean of a normalised image. ``size_fraction=0`` returns the image unchanged.
    """
    height, width, _ = image.shape
    side = int(round(size_fraction * min(height, width)))
    if side == 0:
        return image
    row_key, column_key = jax.random.split(key)
    center_row = jax.random.randint(row_key, (), 0, height)
    center_column = jax.random.randint(column_key, (), 0, width)
    mask = _box_mask(height, width, center_row - side // 2, center_column - side // 2, side, side)
    return jnp.where(mask[..., None], jnp.zeros_like(image), image)


def random_erasing(
    key: jax.Array, image: jax.Array, *, max_area: float, probability: float = 0.5, ratio: tuple[float, float] = (0.3, 3.3)
) -> jax.Array:
    """With ``probability``, fills a random box with standard normal noise (Zhong et al., 2017).

    Args:
      key: PRNG key for this image.
      image: [height, width, channels] float, normalised (so N(0, 1) noise looks like the data).
      max_area: largest box area as a fraction of the image; the area is uniform in
        [min(0.02, max_area), max_area]. 0 returns the image unchanged.
      probability: chance that a box is erased at all.
      ratio: range of the box's aspect ratio, drawn log-uniformly.

    Returns:
      The image with at most one box erased.
    """
    if max_area == 0:
        return image
    height, width, _ = image.shape
    apply_key, area_key, ratio_key, row_key, column_key, noise_key = jax.random.split(key, 6)
    area = jax.random.uniform(area_key, (), jnp.float32, min(0.02, max_area), max_area) * height * width
    aspect = jnp.exp(jax.random.uniform(ratio_key, (), jnp.float32, math.log(ratio[0]), math.log(ratio[1])))
    box_height = jnp.clip(jnp.round(jnp.sqrt(area / aspect)), 1, height).astype(jnp.int32)
    box_width = jnp.clip(jnp.round(jnp.sqrt(area * aspect)), 1, width).astype(jnp.int32)
    top = jax.random.randint(row_key, (), 0, height - box_height + 1)
    left = jax.random.randint(column_key, (), 0, width - box_width + 1)
    mask = _box_mask(height, width, top, left, box_height, box_width) & jax.random.bernoulli(apply_key, probability)
    noise = jax.random.normal(noise_key, image.shape, image.dtype)
    return jnp.where(mask[..., None], noise, image)


# ----------------------------------------------------------------------------------------- per batch


def _partners(key: jax.Array, batch_size: int) -> jax.Array:
    return jax.random.permutation(key, batch_size)


def mixup(
    key: jax.Array, images: jax.Array, labels: jax.Array, *, alpha: float, num_classes: int
) -> tuple[jax.Array, jax.Array]:
    """Mixup (Zhang et al., 2018): ``lam * x_i + (1 - lam) * x_j`` and the same mix of labels.

    Args:
      key: PRNG key for the batch.
      images: [batch, height, width, channels].
      labels: [batch] integers or [batch, num_classes] soft labels.
      alpha: each example's ``lam`` is drawn from Beta(alpha, alpha); 0 returns the inputs unchanged
        (with labels made soft).
      num_classes: width of the soft labels.

    Returns:
      (mixed images, soft labels [batch, num_classes] whose rows sum to 1).
    """
    targets = soft_labels(labels, num_classes)
    if alpha == 0:
        return images, targets
    permutation_key, weight_key = jax.random.split(key)
    partners = _partners(permutation_key, images.shape[0])
    lam = jax.random.beta(weight_key, alpha, alpha, (images.shape[0],), jnp.float32)
    mixed = lam[:, None, None, None] * images + (1 - lam[:, None, None, None]) * images[partners]
    return mixed.astype(images.dtype), lam[:, None] * targets + (1 - lam[:, None]) * targets[partners]


def cutmix(
    key: jax.Array, images: jax.Array, labels: jax.Array, *, alpha: float, num_classes: int
) -> tuple[jax.Array, jax.Array]:
    """CutMix (Yun et al., 2019): pastes a box of a partner image; labels mix by the pasted area.

    Each example draws ``lam`` from Beta(alpha, alpha) and a box of ``1 - lam`` of the image's area
    and the image's aspect, centred anywhere and clipped to the border; the label weight is the area
    actually kept, so clipping is accounted for.

    Returns:
      (images with pasted boxes, soft labels [batch, num_classes] whose rows sum to 1).
    """
    targets = soft_labels(labels, num_classes)
    if alpha == 0:
        return images, targets
    batch_size, height, width, _ = images.shape
    permutation_key, weight_key, row_key, column_key = jax.random.split(key, 4)
    partners = _partners(permutation_key, batch_size)
    lam = jax.random.beta(weight_key, alpha, alpha, (batch_size,), jnp.float32)
    side = jnp.sqrt(1.0 - lam)
    box_height = jnp.round(side * height).astype(jnp.int32)
    box_width = jnp.round(side * width).astype(jnp.int32)
    center_row = jax.random.randint(row_key, (batch_size,), 0, height)
    center_column = jax.random.randint(column_key, (batch_size,), 0, width)
    top = jnp.clip(center_row - box_height // 2, 0, height)
    bottom = jnp.clip(center_row - box_height // 2 + box_height, 0, height)
    left = jnp.clip(center_column - box_width // 2, 0, width)
    right = jnp.clip(center_column - box_width // 2 + box_width, 0, width)
    masks = jax.vmap(_box_mask, in_axes=(None, None, 0, 0, 0, 0))(height, width, top, left, bottom - top, right - left)
    pasted = jnp.where(masks[..., None], images[partners], images)
    kept = 1.0 - ((bottom - top) * (right - left)).astype(jnp.float32) / (height * width)
    return pasted, kept[:, None] * targets + (1 - kept[:, None]) * targets[partners]
