"""Photometric augmentations of one ``[height, width, channels]`` image: brightness, contrast, colour, ...

These ops are defined on pixel values in [0, 1] (as ``tf.image`` and dm-pix define them): hue and
saturation go through HSV, gamma clips to [0, 1]. Training batches hold *normalised* images, so the
pipeline (``spec.py``) un-normalises with the dataset's mean and std before a run of photometric ops
and normalises again after it; called directly, they act on whatever values they are given.

Colour ops (saturation, hue, grayscale) change only 3-channel images; on any other channel count
they return the image unchanged, since a grey image has no hue or saturation to change.
Magnitude 0 always returns the image unchanged.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp


def _is_rgb(image: jax.Array) -> bool:
    return image.shape[-1] == 3


def _symmetric(key: jax.Array, limit: float) -> jax.Array:
    return jax.random.uniform(key, (), jnp.float32, -limit, limit)


# -------------------------------------------------------------------------------- deterministic ops


def adjust_brightness(image: jax.Array, delta: float | jax.Array) -> jax.Array:
    """Adds ``delta`` to every pixel (dm-pix; as ``tf.image.adjust_brightness``)."""
    return pix.adjust_brightness(image, delta)


def adjust_contrast(image: jax.Array, factor: float | jax.Array) -> jax.Array:
    """Scales each channel's deviation from its mean by ``factor`` (dm-pix; as ``tf.image.adjust_contrast``)."""
    return pix.adjust_contrast(image, factor)


def adjust_saturation(image: jax.Array, factor: float | jax.Array) -> jax.Array:
    """Multiplies HSV saturation by ``factor``, clipped to [0, 1] (dm-pix; as ``tf.image.adjust_saturation``)."""
    return pix.adjust_saturation(image, factor) if _is_rgb(image) else image


def adjust_hue(image: jax.Array, delta: float | jax.Array) -> jax.Array:
    """Turns HSV hue by ``delta`` of a full turn, in [-0.5, 0.5] (dm-pix; as ``tf.image.adjust_hue``)."""
    return pix.adjust_hue(image, delta) if _is_rgb(image) else image


def adjust_gamma(image: jax.Array, gamma: float | jax.Array) -> jax.Array:
    """``clip(image, 0, 1) ** gamma`` (dm-pix; as ``tf.image.adjust_gamma``)."""
    return pix.adjust_gamma(image, gamma)


def to_grayscale(image: jax.Array) -> jax.Array:
    """Luma (ITU-R 601 weights) repeated over the 3 channels, so the shape is kept (dm-pix)."""
    return pix.rgb_to_grayscale(image, keep_dims=True) if _is_rgb(image) else image


def vignette(image: jax.Array, strength: float | jax.Array) -> jax.Array:
    """Darkens towards the corners: multiplies by ``1 - strength * r^2``, r = 0 at the centre, 1 at a corner.

    dm-pix has no vignette; this is the usual quadratic fall-off of a lens.
    """
    height, width, _ = image.shape
    ys, xs = jnp.meshgrid(jnp.linspace(-1.0, 1.0, height), jnp.linspace(-1.0, 1.0, width), indexing="ij")
    radius_squared = (xs**2 + ys**2) / 2.0
    return image * (1.0 - jnp.asarray(strength, image.dtype) * radius_squared[..., None].astype(image.dtype))


# --------------------------------------------------------------------------------------- random ops


def random_brightness(key: jax.Array, image: jax.Array, *, max_delta: float) -> jax.Array:
    """Adds a delta drawn uniformly from [-max_delta, max_delta] to every pixel."""
    return adjust_brightness(image, _symmetric(key, max_delta))


def random_contrast(key: jax.Array, image: jax.Array, *, max_fraction: float) -> jax.Array:
    """Adjusts contrast by a factor drawn uniformly from [1 - max_fraction, 1 + max_fraction]."""
    return adjust_contrast(image, 1.0 + _symmetric(key, max_fraction))


def random_saturation(key: jax.Array, image: jax.Array, *, max_fraction: float) -> jax.Array:
    """Adjusts saturation by a factor drawn uniformly from [1 - max_fraction, 1 + max_fraction]."""
    return adjust_saturation(image, 1.0 + _symmetric(key, max_fraction))


def random_hue(key: jax.Array, image: jax.Array, *, max_delta: float) -> jax.Array:
    """Turns hue by a delta drawn uniformly from [-max_delta, max_delta] (at most 0.5, half a turn)."""
    return adjust_hue(image, _symmetric(key, max_delta))


def random_gamma(key: jax.Array, image: jax.Array, *, max_log_gamma: float) -> jax.Array:
    """Applies gamma ``exp(u)``, u uniform in [-max_log_gamma, max_log_gamma], so brightening and darkening are equally likely."""
    return adjust_gamma(image, jnp.exp(_symmetric(key, max_log_gamma)))


def random_grayscale(key: jax.Array, image: jax.Array, *, probability: float) -> jax.Array:
    """Converts to grayscale (kept 3 channels) with ``probability``."""
    return jnp.where(jax.random.bernoulli(key, probability), to_grayscale(image), image)


def random_vignette(key: jax.Array, image: jax.Array, *, max_strength: float) -> jax.Array:
    """Vignettes with a strength drawn uniformly from [0, max_strength]."""
    return vignette(image, jax.random.uniform(key, (), jnp.float32, 0.0, max_strength))


def random_jitter(key: jax.Array, image: jax.Array, *, strength: float) -> jax.Array:
    """Colour jitter: brightness, contrast and saturation, each by up to ``strength``, in that order.

    Like torchvision's ``ColorJitter(strength, strength, strength)``, but in a fixed order so that
    it stays one straight-line program (no per-example permutation of ops).
    """
    brightness_key, contrast_key, saturation_key = jax.random.split(key, 3)
    image = random_brightness(brightness_key, image, max_delta=strength)
    image = random_contrast(contrast_key, image, max_fraction=strength)
    return random_saturation(saturation_key, image, max_fraction=strength)
