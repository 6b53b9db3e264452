"""Affine matrices and the one resample that applies them: ``warp_affine(image, matrix)``.

Every geometric augmentation here is a 3x3 *forward* matrix (input pixel -> output pixel) in
``(x, y, 1)`` pixel coordinates: x is the column, y the row (pointing down), and pixel centres sit on
integers, so the image centre is ``((width - 1) / 2, (height - 1) / 2)``. A chain of geometric ops is
the product of their matrices (``compose``), so it costs one interpolation however long it is.

Fill modes for output pixels whose source lies outside the image:
  constant: ``cval`` (0 by default; for normalised images 0 is the dataset mean, a neutral grey);
  edge: the nearest border pixel is repeated;
  reflect: mirrored about the border pixels, like ``np.pad(mode="reflect")``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

FILL_MODES = ("constant", "edge", "reflect")


def identity() -> jax.Array:
    """The 3x3 identity."""
    return jnp.eye(3, dtype=jnp.float32)


def translation(dx: jax.Array | float, dy: jax.Array | float) -> jax.Array:
    """Moves content ``dx`` pixels right and ``dy`` pixels down."""
    dx, dy = jnp.asarray(dx, jnp.float32), jnp.asarray(dy, jnp.float32)
    one, zero = jnp.ones_like(dx), jnp.zeros_like(dx)
    return jnp.stack([jnp.stack([one, zero, dx]), jnp.stack([zero, one, dy]), jnp.stack([zero, zero, one])])


def about_center(linear: jax.Array, height: int, width: int) -> jax.Array:
    """``linear`` (3x3, no translation) applied about the image centre instead of pixel (0, 0)."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return translation(cx, cy) @ linear @ translation(-cx, -cy)


def rotation(degrees: jax.Array | float, height: int, width: int) -> jax.Array:
    """Rotates content counter-clockwise as displayed (y down) by ``degrees`` about the centre."""
    radians = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    # Snap the float error of cos(pi/2) (~4e-8) so multiples of 90 degrees are exact permutations.
    cos = jnp.round(jnp.cos(radians) * 2**20) / 2**20
    sin = jnp.round(jnp.sin(radians) * 2**20) / 2**20
    zero, one = jnp.zeros_like(cos), jnp.ones_like(cos)
    linear = jnp.stack([jnp.stack([cos, sin, zero]), jnp.stack([-sin, cos, zero]), jnp.stack([zero, zero, one])])
    return about_center(linear, height, width)


def shearing(degrees_x: jax.Array | float, degrees_y: jax.Array | float, height: int, width: int) -> jax.Array:
    """Shears about the centre: ``x += tan(degrees_x) * y`` and ``y += tan(degrees_y) * x``."""
    shear_x = jnp.tan(jnp.deg2rad(jnp.asarray(degrees_x, jnp.float32)))
    shear_y = jnp.tan(jnp.deg2rad(jnp.asarray(degrees_y, jnp.float32)))
    zero, one = jnp.zeros_like(shear_x), jnp.ones_like(shear_x)
    linear = jnp.stack([jnp.stack([one, shear_x, zero]), jnp.stack([shear_y, one, zero]), jnp.stack([zero, zero, one])])
    return about_center(linear, height, width)


def scaling(scale_x: jax.Array | float, scale_y: jax.Array | float, height: int, width: int) -> jax.Array:
    """Scales about the centre by ``scale_x`` horizontally and ``scale_y`` vertically (-1 flips)."""
    scale_x, scale_y = jnp.asarray(scale_x, jnp.float32), jnp.asarray(scale_y, jnp.float32)
    zero, one = jnp.zeros_like(scale_x), jnp.ones_like(scale_x)
    linear = jnp.stack([jnp.stack([scale_x, zero, zero]), jnp.stack([zero, scale_y, zero]), jnp.stack([zero, zero, one])])
    return about_center(linear, height, width)


def crop_and_resize(
    center_x: jax.Array, center_y: jax.Array, crop_width: jax.Array, crop_height: jax.Array, height: int, width: int
) -> jax.Array:
    """Maps the box of ``crop_width x crop_height`` pixels centred at (center_x, center_y) onto the image.

    Box edges go to image edges (half a pixel outside the outer pixel centres), as ``tf.image``'s
    ``crop_and_resize`` with ``align_corners=False`` does; the full-image box is the identity.
    """
    scale_x, scale_y = width / crop_width, height / crop_height
    zero, one = jnp.zeros_like(scale_x), jnp.ones_like(scale_x)
    linear = jnp.stack([jnp.stack([scale_x, zero, zero]), jnp.stack([zero, scale_y, zero]), jnp.stack([zero, zero, one])])
    return translation((width - 1) / 2.0, (height - 1) / 2.0) @ linear @ translation(-center_x, -center_y)


def compose(*matrices: jax.Array) -> jax.Array:
    """The matrix of applying ``matrices[0]`` first, then ``matrices[1]``, and so on."""
    result = identity()
    for matrix in matrices:
        result = matrix @ result
    return result


def invert_affine(matrix: jax.Array) -> jax.Array:
    """Closed-form inverse of an affine 3x3 (last row 0, 0, 1); cheaper than an LU under vmap."""
    a, b, tx = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    c, d, ty = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    zero, one = jnp.zeros_like(a), jnp.ones_like(a)
    return jnp.stack(
        [
            jnp.stack([ia, ib, -(ia * tx + ib * ty)]),
            jnp.stack([ic, id_, -(ic * tx + id_ * ty)]),
            jnp.stack([zero, zero, one]),
        ]
    )


def _fold_index(index: jax.Array, size: int, mode: str) -> tuple[jax.Array, jax.Array]:
    """An in-range index for each (possibly out-of-range) integer index, and whether it was in range."""
    inside = (index >= 0) & (index < size)
    if mode == "reflect" and size > 1:
        period = 2 * (size - 1)
        index = jnp.abs(index) % period
        index = jnp.where(index > size - 1, period - index, index)
    return jnp.clip(index, 0, size - 1), inside


def warp_affine(
    image: jax.Array, matrix: jax.Array, *, mode: str = "constant", cval: float = 0.0, order: int = 1
) -> jax.Array:
    """Resamples one image under a forward affine matrix: ``out[p] = image[inverse(matrix) @ p]``.

    Args:
      image: [height, width, channels] float.
      matrix: 3x3 forward matrix in (x, y, 1) pixel coordinates (see the module docstring).
      mode: "constant", "edge" or "reflect": what lies outside the image.
      cval: the fill value of mode "constant".
      order: 1 for bilinear, 0 for nearest neighbour (exact, and 4x cheaper, for integer matrices
        such as flips and whole-pixel shifts).

    Returns:
      The warped image, same shape and dtype.
    """
    height, width, channels = image.shape
    inverse = invert_affine(matrix.astype(jnp.float32))
    ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    flat = image.reshape(height * width, channels)
    if order == 0:
        corners = [(jnp.round(source_y).astype(jnp.int32), jnp.round(source_x).astype(jnp.int32), None)]
    else:
        x0, y0 = jnp.floor(source_x), jnp.floor(source_y)
        fx, fy = source_x - x0, source_y - y0
        x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
        corners = [
            (y0, x0, (1 - fy) * (1 - fx)),
            (y0, x0 + 1, (1 - fy) * fx),
            (y0 + 1, x0, fy * (1 - fx)),
            (y0 + 1, x0 + 1, fy * fx),
        ]
    result = jnp.zeros((height, width, channels), image.dtype)
    for row, column, weight in corners:
        row, row_inside = _fold_index(row, height, mode)
        column, column_inside = _fold_index(column, width, mode)
        values = jnp.take(flat, (row * width + column).reshape(-1), axis=0).reshape(height, width, channels)
        if mode == "constant":
            values = jnp.where((row_inside & column_inside)[..., None], values, jnp.asarray(cval, image.dtype))
        result = result + (values if weight is None else weight[..., None].astype(image.dtype) * values)
    return result
