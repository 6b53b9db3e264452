"""Photometric ops against tf.image, plus the ops tf.image does not have."""

import colorsys

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


# ----------------------------------------- the random ops draw from [-m, m] around the identity

DRAWS = 512


def _per_example_outputs(name, magnitude, source):
    """The op run by a pipeline on DRAWS copies of ``source``, one key per example (as in training)."""
    pipeline = augment.parse_augment_spec(f"{name}:{magnitude}")
    images = np.broadcast_to(source, (DRAWS, *source.shape))
    return np.asarray(jax.jit(pipeline.augment_images)(jax.random.key(7), images), np.float64)


def _hsv(pixel):
    return colorsys.rgb_to_hsv(*(float(c) for c in pixel))


def _deviation_from_mean(images):
    return images - images.mean(axis=(-3, -2), keepdims=True)


def _contrast_factors(outputs, source):
    # adjust_contrast scales each channel's deviation from its mean: least squares recovers the factor.
    x = _deviation_from_mean(source[None].astype(np.float64))
    return (_deviation_from_mean(outputs) * x).sum(axis=(1, 2, 3)) / (x * x).sum()


def _drawn_brightness(outputs, source):
    return (outputs - source).mean(axis=(1, 2, 3))


def _drawn_contrast(outputs, source):
    return _contrast_factors(outputs, source) - 1.0


def _drawn_saturation(outputs, source):
    # Every pixel is HSV (30 degrees, 0.5, 1): its saturation becomes 0.5 * factor.
    return np.array([_hsv(out[0, 0])[1] / 0.5 - 1.0 for out in outputs])


def _drawn_hue(outputs, source):
    # Every pixel has hue 0.5 (cyan): a turn by delta in [-0.4, 0.4] gives hue 0.5 + delta, no wrap.
    return np.array([_hsv(out[0, 0])[0] - 0.5 for out in outputs])


def _drawn_gamma(outputs, source):
    # Every pixel is 0.5: out = 0.5 ** gamma, so log gamma = log(log out / log 0.5).
    return np.log(np.log(outputs[:, 0, 0, 0]) / np.log(0.5))


def _drawn_jitter(outputs, source):
    # A grey image (R = G = B) has no saturation to change: jitter is brightness, then contrast.
    brightness = outputs.mean(axis=(1, 2, 3)) - source.mean()
    return np.stack([brightness, _contrast_factors(outputs, source) - 1.0])


def _grey_ramp():
    return np.repeat(np.linspace(0.2, 0.8, 48, dtype=np.float32).reshape(8, 6, 1), 3, axis=-1)


@pytest.mark.parametrize(
    "name, magnitude, source, drawn",
    [
        ("brightness", 0.3, image(), _drawn_brightness),
        ("contrast", 0.5, image(), _drawn_contrast),
        ("saturation", 0.6, np.full((4, 4, 3), [1.0, 0.75, 0.5], np.float32), _drawn_saturation),
        ("hue", 0.4, np.full((4, 4, 3), [0.0, 1.0, 1.0], np.float32), _drawn_hue),
        ("gamma", 0.5, np.full((4, 4, 3), 0.5, np.float32), _drawn_gamma),
        ("jitter", 0.3, _grey_ramp(), _drawn_jitter),
    ],
    ids=["brightness", "contrast", "saturation", "hue", "gamma", "jitter"],
)
def test_random_photometric_draws_cover_minus_m_to_m_around_the_identity(name, magnitude, source, drawn):
    # Recovered from the outputs: the delta (brightness, hue), factor - 1 (contrast, saturation) or log
    # gamma of each example. Uniform on [-m, m]: within it, both signs about equally often, and the
    # extremes reached (512 draws leave a 10%-wide end empty with probability 0.9^512).
    values = np.atleast_2d(drawn(_per_example_outputs(name, magnitude, source), source))
    for parameter in values:
        assert np.all(np.abs(parameter) <= magnitude * (1 + 1e-4) + 1e-5), (parameter.min(), parameter.max())
        assert parameter.min() < -0.8 * magnitude and parameter.max() > 0.8 * magnitude, (parameter.min(), parameter.max())
        assert 0.4 < np.mean(parameter < 0) < 0.6
        assert len(np.unique(parameter.round(6))) > DRAWS // 2  # per example, not one draw per batch
