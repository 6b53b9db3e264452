"""Every random augmentation under jit and vmap: same key, same draw; other keys and examples, other draws."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import augment

# Each op with a magnitude large enough that two draws practically never coincide.
PER_IMAGE_OPS = {
    "flip_left_right": functools.partial(augment.random_flip_left_right, probability=0.5),
    "flip_up_down": functools.partial(augment.random_flip_up_down, probability=0.5),
    "crop_constant": functools.partial(augment.random_crop, padding=2),
    "crop_reflect": functools.partial(augment.random_crop, padding=2, mode="reflect"),
    "resized_crop": functools.partial(augment.random_resized_crop, scale=(0.3, 1.0)),
    "translate": functools.partial(augment.random_translate, max_fraction=0.2),
    "rotate": functools.partial(augment.random_rotate, max_degrees=30.0),
    "shear": functools.partial(augment.random_shear, max_degrees=20.0),
    "stretch": functools.partial(augment.random_stretch, max_fraction=0.3),
    "zoom": functools.partial(augment.random_zoom, max_fraction=0.3),
    "brightness": functools.partial(augment.random_brightness, max_delta=0.3),
    "contrast": functools.partial(augment.random_contrast, max_fraction=0.5),
    "saturation": functools.partial(augment.random_saturation, max_fraction=0.5),
    "hue": functools.partial(augment.random_hue, max_delta=0.3),
    "gamma": functools.partial(augment.random_gamma, max_log_gamma=0.5),
    "grayscale": functools.partial(augment.random_grayscale, probability=0.5),
    "vignette": functools.partial(augment.random_vignette, max_strength=0.8),
    "jitter": functools.partial(augment.random_jitter, strength=0.4),
    "cutout": functools.partial(augment.cutout, size_fraction=0.5),
    "erase": functools.partial(augment.random_erasing, max_area=0.4),
}
NUM_KEYS = 16


def image(seed=0, shape=(12, 10, 3)):
    # Not square, so a swapped height and width fails; in [0, 1] like the photometric ops expect.
    return jax.random.uniform(jax.random.key(seed), shape)


@pytest.mark.parametrize("name", sorted(PER_IMAGE_OPS))
def test_op_under_jit_and_vmap_draws_per_key(name):
    op = PER_IMAGE_OPS[name]
    x = image()
    keys = jax.random.split(jax.random.key(1), NUM_KEYS)
    single = jax.jit(op)(keys[3], x)
    assert single.shape == x.shape and single.dtype == x.dtype
    np.testing.assert_array_equal(jax.jit(op)(keys[3], x), single)  # same key, same output
    batch = jax.jit(jax.vmap(op))(keys, jnp.broadcast_to(x, (NUM_KEYS, *x.shape)))
    np.testing.assert_allclose(batch[3], single, atol=1e-6)  # vmap draws what the single call draws
    distinct = {np.asarray(view).round(5).tobytes() for view in batch}
    assert len(distinct) > 1, f"{name} drew the same output for {NUM_KEYS} different keys"


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_batch_op_under_jit_draws_per_example_and_per_key(name):
    op = functools.partial(getattr(augment, name), alpha=1.0, num_classes=4)
    images = jax.random.uniform(jax.random.key(0), (8, 6, 6, 1))
    labels = jnp.arange(8) % 4
    first = jax.jit(op)(jax.random.key(1), images, labels)
    again = jax.jit(op)(jax.random.key(1), images, labels)
    other = jax.jit(op)(jax.random.key(2), images, labels)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])
    # Each example draws its own mixing weight.
    assert len(np.unique(np.asarray(first[1]).max(axis=1).round(4))) > 1
