"""Geometric augmentations of one ``[height, width, channels]`` image: flips, crops, rotation, shear, ...

Each random op comes in two forms that draw the same thing from the same key:
  ``sample_<op>(key, height, width, *, magnitude...) -> 3x3 forward matrix`` (see ``affine.py``), which
  the pipeline multiplies with its neighbours' matrices so a chain of them costs one resample; and
  ``random_<op>(key, image, *, magnitude..., mode) -> image``, the op on its own.
Magnitude 0 always gives the identity matrix, hence the unchanged image.
"""

from __future__ import annotations

import math

import dm_pix as pix
import jax
import jax.numpy as jnp

from jaxvision.augment import affine


def _symmetric(key: jax.Array, limit: float, shape: tuple[int, ...] = ()) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


# ---------------------------------------------------------------------------------------- samplers


def sample_flip(key: jax.Array, height: int, width: int, *, probability: float = 0.5, vertical: bool = False) -> jax.Array:
    """A mirror image (left-right, or up-down when ``vertical``) with ``probability``, else the identity."""
    sign = jnp.where(jax.random.bernoulli(key, probability), -1.0, 1.0)
    return affine.scaling(1.0, sign, height, width) if vertical else affine.scaling(sign, 1.0, height, width)


def sample_crop_offsets(key: jax.Array, *, padding: int) -> jax.Array:
    """Top-left corner (row, column) of a crop of the image padded by ``padding``, each in [0, 2 * padding]."""
    return jax.random.randint(key, (2,), 0, 2 * padding + 1)


def sample_crop(key: jax.Array, height: int, width: int, *, padding: int) -> jax.Array:
    """Pad by ``padding`` and crop back to size at a random place: a whole-pixel shift in [-padding, padding]."""
    offsets = sample_crop_offsets(key, padding=padding).astype(jnp.float32)
    return affine.translation(padding - offsets[1], padding - offsets[0])


def sample_translation(key: jax.Array, height: int, width: int, *, max_fraction: float) -> jax.Array:
    """A shift of up to ``max_fraction`` of the width (horizontally) and height (vertically)."""
    fractions = _symmetric(key, max_fraction, (2,))
    return affine.translation(fractions[0] * width, fractions[1] * height)


def sample_rotation(key: jax.Array, height: int, width: int, *, max_degrees: float) -> jax.Array:
    """A rotation about the centre by an angle uniform in [-max_degrees, max_degrees]."""
    return affine.rotation(_symmetric(key, max_degrees), height, width)


def sample_shear(key: jax.Array, height: int, width: int, *, max_degrees: float) -> jax.Array:
    """Horizontal and vertical shears by independent angles uniform in [-max_degrees, max_degrees]."""
    degrees = _symmetric(key, max_degrees, (2,))
    return affine.shearing(degrees[0], degrees[1], height, width)


def sample_stretch(key: jax.Array, height: int, width: int, *, max_fraction: float) -> jax.Array:
    """Anisotropic scaling: each axis by an independent factor uniform in [1 - max_fraction, 1 + max_fraction]."""
    factors = 1.0 + _symmetric(key, max_fraction, (2,))
    return affine.scaling(factors[0], factors[1], height, width)


def sample_zoom(key: jax.Array, height: int, width: int, *, max_fraction: float) -> jax.Array:
    """Isotropic scaling by a factor uniform in [1 - max_fraction, 1 + max_fraction]."""
    factor = 1.0 + _symmetric(key, max_fraction)
    return affine.scaling(factor, factor, height, width)


def sample_resized_crop(
    key: jax.Array,
    height: int,
    width: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> jax.Array:
    """A box of random area and aspect ratio, at a random place, resized to the whole image.

    Inception-style (Szegedy et al., 2015): area fraction uniform in ``scale``, aspect ratio
    log-uniform in ``ratio``. Instead of retrying boxes that do not fit, each side is clipped to the
    image, which keeps the op branch-free. ``scale=(1, 1), ratio=(1, 1)`` is the identity.
    """
    area_key, ratio_key, x_key, y_key = jax.random.split(key, 4)
    area = jax.random.uniform(area_key, (), jnp.float32, scale[0], scale[1])
    log_ratio = jax.random.uniform(ratio_key, (), jnp.float32, math.log(ratio[0]), math.log(ratio[1]))
    aspect = jnp.exp(log_ratio)
    crop_width = jnp.minimum(width * jnp.sqrt(area * aspect), width)
    crop_height = jnp.minimum(height * jnp.sqrt(area / aspect), height)
    # Box edges stay inside the image's edges (pixel centres -0.5 .. size - 0.5).
    center_x = jax.random.uniform(x_key, (), jnp.float32, crop_width / 2, width - crop_width / 2) - 0.5
    center_y = jax.random.uniform(y_key, (), jnp.float32, crop_height / 2, height - crop_height / 2) - 0.5
    return affine.crop_and_resize(center_x, center_y, crop_width, crop_height, height, width)


# -------------------------------------------------------------------------------- deterministic ops


def flip_left_right(image: jax.Array) -> jax.Array:
    """Mirrors one image left to right (dm-pix)."""
    return pix.flip_left_right(image)


def flip_up_down(image: jax.Array) -> jax.Array:
    """Mirrors one image top to bottom (dm-pix)."""
    return pix.flip_up_down(image)


def rotate(image: jax.Array, degrees: float | jax.Array, *, mode: str = "constant") -> jax.Array:
    """Rotates one image counter-clockwise (as displayed) by ``degrees`` about its centre, bilinearly."""
    height, width, _ = image.shape
    return affine.warp_affine(image, affine.rotation(degrees, height, width), mode=mode)


def shear(image: jax.Array, degrees_x: float | jax.Array, degrees_y: float | jax.Array = 0.0, *, mode: str = "constant") -> jax.Array:
    """Shears one image about its centre: ``x += tan(degrees_x) * y``, ``y += tan(degrees_y) * x``."""
    height, width, _ = image.shape
    return affine.warp_affine(image, affine.shearing(degrees_x, degrees_y, height, width), mode=mode)


# --------------------------------------------------------------------------------------- random ops


def random_flip_left_right(key: jax.Array, image: jax.Array, *, probability: float = 0.5) -> jax.Array:
    """Mirrors one image left to right with ``probability``."""
    return jnp.where(jax.random.bernoulli(key, probability), flip_left_right(image), image)


def random_flip_up_down(key: jax.Array, image: jax.Array, *, probability: float = 0.5) -> jax.Array:
    """Mirrors one image top to bottom with ``probability``."""
    return jnp.where(jax.random.bernoulli(key, probability), flip_up_down(image), image)


def random_crop(key: jax.Array, image: jax.Array, *, padding: int, mode: str = "constant") -> jax.Array:
    """Pads one image by ``padding`` pixels on every side and crops a random window of the original size.

    Args:
      key: PRNG key for this image.
      image: [height, width, channels] float.
      padding: pixels added on each side; 0 returns the image unchanged.
      mode: "constant" (zeros: the mean of a normalised image), "edge" or "reflect".

    Returns:
      The cropped image, same shape; the same draw as ``sample_crop`` with this key.
    """
    if padding == 0:
        return image
    height, width, channels = image.shape
    pad_mode = {"constant": "constant", "edge": "edge", "reflect": "reflect"}[mode]
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode=pad_mode)
    offsets = sample_crop_offsets(key, padding=padding)
    return jax.lax.dynamic_slice(padded, (offsets[0], offsets[1], 0), (height, width, channels))


def _random_warp(sampler, key: jax.Array, image: jax.Array, mode: str, **magnitude) -> jax.Array:
    height, width, _ = image.shape
    return affine.warp_affine(image, sampler(key, height, width, **magnitude), mode=mode)


def random_translate(key: jax.Array, image: jax.Array, *, max_fraction: float, mode: str = "constant") -> jax.Array:
    """Shifts one image by up to ``max_fraction`` of its size along each axis (bilinear)."""
    return _random_warp(sample_translation, key, image, mode, max_fraction=max_fraction)


def random_rotate(key: jax.Array, image: jax.Array, *, max_degrees: float, mode: str = "constant") -> jax.Array:
    """Rotates one image by an angle drawn uniformly from [-max_degrees, max_degrees] (bilinear).

    Args:
      key: PRNG key for this image.
      image: [height, width, channels] float.
      max_degrees: largest rotation; 0 returns the image unchanged.
      mode: what lies outside the image: "constant" (0), "edge" or "reflect".

    Returns:
      The rotated image, same shape and dtype.
    """
    return _random_warp(sample_rotation, key, image, mode, max_degrees=max_degrees)


def random_shear(key: jax.Array, image: jax.Array, *, max_degrees: float, mode: str = "constant") -> jax.Array:
    """Shears one image by angles drawn uniformly from [-max_degrees, max_degrees] along each axis.

    Args:
      key: PRNG key for this image.
      image: [height, width, channels] float.
      max_degrees: largest shear angle; 0 returns the image unchanged.
      mode: what lies outside the image: "constant" (0), "edge" or "reflect".

    Returns:
      The sheared image, same shape and dtype.
    """
    return _random_warp(sample_shear, key, image, mode, max_degrees=max_degrees)


def random_stretch(key: jax.Array, image: jax.Array, *, max_fraction: float, mode: str = "constant") -> jax.Array:
    """Scales each axis of one image by its own factor in [1 - max_fraction, 1 + max_fraction]."""
    return _random_warp(sample_stretch, key, image, mode, max_fraction=max_fraction)


def random_zoom(key: jax.Array, image: jax.Array, *, max_fraction: float, mode: str = "constant") -> jax.Array:
    """Scales one image about its centre by a factor in [1 - max_fraction, 1 + max_fraction]."""
    return _random_warp(sample_zoom, key, image, mode, max_fraction=max_fraction)


def random_resized_crop(
    key: jax.Array,
    image: jax.Array,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    mode: str = "edge",
) -> jax.Array:
    """Crops a box of random area fraction (in ``scale``) and aspect ratio (in ``ratio``), resized back.

    Returns:
      The image of the box, bilinearly resized to the input's shape.
    """
    return _random_warp(sample_resized_crop, key, image, mode, scale=scale, ratio=ratio)
