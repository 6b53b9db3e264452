"""Photometric ops against tf.image, plus the ops tf.image does not have."""

import jax
import numpy as np
import pytest
import tensorflow as tf

from jaxvision import augment

tf.config.set_visible_devices([], "GPU")


def image(shape=(8, 6, 3), seed=0):
    return np.asarray(jax.random.uniform(jax.random.key(seed), shape), np.float32)


@pytest.mark.parametrize(
    "ours, reference, amount",
    [
        (augment.adjust_brightness, tf.image.adjust_brightness, 0.2),
        (augment.adjust_contrast, tf.image.adjust_contrast, 1.7),
        (augment.adjust_contrast, tf.image.adjust_contrast, 0.4),
        (augment.adjust_saturation, tf.image.adjust_saturation, 0.3),
        (augment.adjust_saturation, tf.image.adjust_saturation, 1.8),
        (augment.adjust_hue, tf.image.adjust_hue, 0.15),
        (augment.adjust_hue, tf.image.adjust_hue, -0.4),
        (augment.adjust_gamma, tf.image.adjust_gamma, 0.6),
    ],
    ids=["brightness", "contrast_up", "contrast_down", "saturation_down", "saturation_up", "hue", "hue_negative", "gamma"],
)
def test_adjustment_matches_tf_image(ours, reference, amount):
    x = image()
    expected = reference(tf.constant(x), amount).numpy()
    np.testing.assert_allclose(jax.jit(ours)(x, amount), expected, atol=1e-5)


def test_grayscale_matches_tf_image_and_keeps_three_channels():
    x = image()
    expected = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(tf.constant(x))).numpy()
    np.testing.assert_allclose(jax.jit(augment.to_grayscale)(x), expected, atol=1e-5)


def test_colour_ops_leave_single_channel_images_unchanged():
    x = image((8, 6, 1))
    for op in (augment.to_grayscale, lambda y: augment.adjust_hue(y, 0.3), lambda y: augment.adjust_saturation(y, 0.2)):
        np.testing.assert_array_equal(op(x), x)


def test_vignette_keeps_the_centre_and_darkens_the_corners():
    x = np.ones((9, 9, 1), np.float32)
    out = np.asarray(jax.jit(augment.vignette)(x, 0.5))
    assert out[4, 4, 0] == pytest.approx(1.0)
    assert out[0, 0, 0] == pytest.approx(0.5)
    np.testing.assert_array_equal(augment.vignette(x, 0.0), x)


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation", "hue", "gamma", "grayscale", "vignette", "jitter"])
def test_magnitude_zero_is_identity(name):
    op = augment.OPS[name]
    x = image()
    out = jax.jit(lambda k, y: op.apply(k, y, 0.0))(jax.random.key(0), x)
    np.testing.assert_allclose(out, x, atol=1e-6)
