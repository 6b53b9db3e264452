"""Geometric ops: identities, and agreement with np.rot90, np.pad and scipy.ndimage.affine_transform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from jaxvision import augment
from jaxvision.augment import affine, geometric

KEY = jax.random.key(0)


def image(shape=(12, 10, 3), seed=0):
    return jax.random.uniform(jax.random.key(seed), shape)


def test_flip_twice_is_identity():
    x = image()
    np.testing.assert_array_equal(augment.flip_left_right(augment.flip_left_right(x)), x)
    np.testing.assert_array_equal(augment.flip_up_down(augment.flip_up_down(x)), x)
    np.testing.assert_array_equal(augment.flip_left_right(x), np.asarray(x)[:, ::-1])


def test_flip_matrix_warp_equals_array_flip():
    x = image()
    mirror = affine.scaling(-1.0, 1.0, 12, 10)
    np.testing.assert_array_equal(augment.warp_affine(x, mirror, order=0), np.asarray(x)[:, ::-1])
    np.testing.assert_allclose(augment.warp_affine(x, mirror), np.asarray(x)[:, ::-1], atol=1e-6)


@pytest.mark.parametrize(
    "op",
    [
        lambda x: augment.rotate(x, 0.0),
        lambda x: augment.shear(x, 0.0, 0.0),
        lambda x: augment.random_rotate(KEY, x, max_degrees=0.0),
        lambda x: augment.random_shear(KEY, x, max_degrees=0.0),
        lambda x: augment.random_translate(KEY, x, max_fraction=0.0),
        lambda x: augment.random_stretch(KEY, x, max_fraction=0.0),
        lambda x: augment.random_zoom(KEY, x, max_fraction=0.0),
        lambda x: augment.random_crop(KEY, x, padding=0),
        lambda x: augment.random_resized_crop(KEY, x, scale=(1.0, 1.0), ratio=(1.0, 1.0)),
        lambda x: augment.random_flip_left_right(KEY, x, probability=0.0),
    ],
    ids=["rotate_0", "shear_0", "random_rotate_0", "random_shear_0", "translate_0", "stretch_0", "zoom_0", "crop_no_padding", "resized_crop_full", "flip_p0"],
)
def test_magnitude_zero_is_identity(op):
    x = image()
    np.testing.assert_allclose(jax.jit(op)(x), x, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 8, 3), (7, 7, 1)])
def test_rotate_90_equals_np_rot90(shape):
    x = image(shape)
    np.testing.assert_allclose(augment.rotate(x, 90.0), np.rot90(np.asarray(x)), atol=1e-5)
    np.testing.assert_allclose(augment.rotate(x, -90.0), np.rot90(np.asarray(x), k=-1), atol=1e-5)
    np.testing.assert_allclose(augment.rotate(x, 180.0), np.rot90(np.asarray(x), k=2), atol=1e-5)


def _scipy_warp(x: np.ndarray, forward: np.ndarray, mode: str) -> np.ndarray:
    # scipy pulls out[o] = in[matrix @ o + offset] in (row, column) order; ours is (x, y) forward.
    inverse = np.linalg.inv(forward)
    matrix = np.array([[inverse[1, 1], inverse[1, 0]], [inverse[0, 1], inverse[0, 0]]])
    offset = np.array([inverse[1, 2], inverse[0, 2]])
    channels = [scipy.ndimage.affine_transform(x[..., c], matrix, offset=offset, order=1, mode=mode, cval=0.0) for c in range(x.shape[-1])]
    return np.stack(channels, axis=-1)


def test_known_affine_matches_scipy_inside_and_outside_the_image():
    height, width = 12, 10
    x = np.asarray(image((height, width, 2)), np.float64)
    forward = np.asarray(
        affine.compose(
            affine.rotation(23.0, height, width),
            affine.shearing(8.0, -5.0, height, width),
            affine.scaling(1.1, 0.9, height, width),
            affine.translation(1.3, -0.7),
        ),
        np.float64,
    )
    ours = np.asarray(augment.warp_affine(jnp.asarray(x, jnp.float32), jnp.asarray(forward, jnp.float32)))
    # Inside the image (every source point within the outer pixel centres) any scipy mode agrees.
    inverse = np.linalg.inv(forward)
    ys, xs = np.mgrid[0:height, 0:width]
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    inside = (source_x >= 0) & (source_x <= width - 1) & (source_y >= 0) & (source_y <= height - 1)
    assert inside.sum() > 40
    np.testing.assert_allclose(ours[inside], _scipy_warp(x, forward, "nearest")[inside], atol=1e-4)
    # Everywhere, constant fill interpolates towards 0 as scipy's grid-constant does.
    np.testing.assert_allclose(ours, _scipy_warp(x, forward, "grid-constant"), atol=1e-4)


def test_edge_and_reflect_fill_match_scipy():
    height, width = 9, 11
    x = np.asarray(image((height, width, 1)), np.float64)
    forward = np.asarray(affine.compose(affine.rotation(31.0, height, width), affine.translation(2.4, -1.6)), np.float64)
    for ours_mode, scipy_mode in (("edge", "nearest"), ("reflect", "mirror")):
        ours = augment.warp_affine(jnp.asarray(x, jnp.float32), jnp.asarray(forward, jnp.float32), mode=ours_mode)
        np.testing.assert_allclose(ours, _scipy_warp(x, forward, scipy_mode), atol=1e-4, err_msg=ours_mode)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_crop_equals_np_pad_then_slice_and_its_matrix_form(mode):
    x = image()
    key = jax.random.key(7)
    padding = 3
    offsets = np.asarray(geometric.sample_crop_offsets(key, padding=padding))
    padded = np.pad(np.asarray(x), ((padding, padding), (padding, padding), (0, 0)), mode=mode)
    expected = padded[offsets[0] : offsets[0] + 12, offsets[1] : offsets[1] + 10]
    np.testing.assert_array_equal(augment.random_crop(key, x, padding=padding, mode=mode), expected)
    matrix = geometric.sample_crop(key, 12, 10, padding=padding)
    np.testing.assert_array_equal(augment.warp_affine(x, matrix, mode=mode, order=0), expected)


def test_resized_crop_box_is_inside_the_image():
    keys = jax.random.split(KEY, 64)
    matrices = jax.vmap(lambda k: geometric.sample_resized_crop(k, 12, 10, scale=(0.1, 1.0)))(keys)
    inverses = jax.vmap(affine.invert_affine)(matrices)
    # The output's outer edges map to the box's edges, which must stay within the image's edges.
    corners = jnp.array([[-0.5, -0.5, 1.0], [9.5, 11.5, 1.0]])
    mapped = jnp.einsum("bij,kj->bki", inverses, corners)
    assert float(mapped[..., 0].min()) >= -0.5 - 1e-4 and float(mapped[..., 0].max()) <= 9.5 + 1e-4
    assert float(mapped[..., 1].min()) >= -0.5 - 1e-4 and float(mapped[..., 1].max()) <= 11.5 + 1e-4
