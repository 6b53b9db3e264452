"""Mixup, cutmix, cutout and erasing: labels that sum to 1 and match the pixels, and soft-label losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import augment, cross_entropy

NUM_CLASSES = 5


def constant_images(batch=8, size=8):
    # Image i is filled with the value i, so every pixel tells which example it came from.
    return jnp.broadcast_to(jnp.arange(batch, dtype=jnp.float32)[:, None, None, None], (batch, size, size, 1))


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixed_labels_sum_to_one_per_example(name):
    op = jax.jit(lambda key, x, y: getattr(augment, name)(key, x, y, alpha=0.4, num_classes=NUM_CLASSES))
    labels = jnp.arange(8) % NUM_CLASSES
    _, mixed = op(jax.random.key(3), constant_images(), labels)
    assert mixed.shape == (8, NUM_CLASSES)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-6)
    assert float(mixed.min()) >= 0.0


def test_cutmix_label_weights_equal_the_pasted_pixel_fractions():
    images = constant_images()
    labels = jnp.arange(8)  # one class per example, so each label weight is one source's share
    mixed_images, mixed_labels = jax.jit(lambda k: augment.cutmix(k, images, labels, alpha=1.0, num_classes=8))(jax.random.key(0))
    for i in range(8):
        pixels = np.asarray(mixed_images[i, ..., 0]).ravel()
        shares = np.bincount(pixels.astype(int), minlength=8) / pixels.size
        np.testing.assert_allclose(mixed_labels[i], shares, atol=1e-6)


def test_mixup_images_mix_with_the_label_weights():
    images = constant_images()
    labels = jnp.arange(8)
    mixed_images, mixed_labels = jax.jit(lambda k: augment.mixup(k, images, labels, alpha=1.0, num_classes=8))(jax.random.key(0))
    # Pixel value = sum over sources of (weight * source index).
    np.testing.assert_allclose(mixed_images[:, 0, 0, 0], mixed_labels @ jnp.arange(8.0), atol=1e-5)


def test_soft_label_cross_entropy_equals_hard_label_loss_when_the_mix_is_trivial():
    logits = jax.random.normal(jax.random.key(0), (6, NUM_CLASSES))
    labels = jnp.array([0, 1, 2, 3, 4, 0])
    hard = cross_entropy(logits, labels)
    # alpha = 0 draws no mix at all; a batch of one can only mix an example with itself.
    _, soft = augment.mixup(jax.random.key(1), jnp.zeros((6, 4, 4, 1)), labels, alpha=0.0, num_classes=NUM_CLASSES)
    np.testing.assert_allclose(cross_entropy(logits, soft), hard, rtol=1e-6)
    for i in range(6):
        _, self_mixed = augment.cutmix(jax.random.key(i), jnp.ones((1, 4, 4, 1)), labels[i : i + 1], alpha=1.0, num_classes=NUM_CLASSES)
        np.testing.assert_allclose(cross_entropy(logits[i : i + 1], self_mixed), hard[i : i + 1], rtol=1e-6)


def test_the_train_step_trains_on_mixups_soft_labels_not_their_argmax():
    from jaxvision import create_train_state, get_model, make_optimizer, make_train_step, predict
    from jaxvision.batch import Batch
    from jaxvision.train import split_step_key

    pipeline = augment.parse_augment_spec("mixup:1.0", num_classes=NUM_CLASSES)
    model = get_model("mlp", num_classes=NUM_CLASSES, hidden_sizes=(16,))  # no dropout: train mode is eval mode
    state = create_train_state(model, (4, 4, 1), make_optimizer("sgd", 0.1), jax.random.key(0))
    # Large inputs for logits far from uniform, where soft and argmax labels give clearly different losses.
    batch = Batch.of(5 * jax.random.normal(jax.random.key(1), (16, 4, 4, 1)), jnp.arange(16) % NUM_CLASSES)
    key = jax.random.key(2)
    _, metrics = make_train_step(augment=pipeline)(state, batch, key)
    # The batch the step trained on: the pipeline under the step's augmentation key.
    mixed = pipeline(split_step_key(key, state.step)[0], batch)
    labels = np.asarray(mixed.labels)
    assert np.sum(labels.max(axis=1) < 0.9) >= 4  # genuinely soft for a good part of the batch
    logits = np.asarray(predict(state, mixed.images), np.float64)
    log_softmax = logits - logits.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    expected = np.mean(-(labels * log_softmax).sum(-1))
    collapsed = np.mean(-log_softmax[np.arange(16), labels.argmax(-1)])
    assert abs(expected - collapsed) > 100 * 1e-5 * expected  # far outside the tolerance below
    np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5)


def test_cutout_zeroes_at_most_a_square_of_the_given_side():
    x = jnp.ones((10, 10, 2))
    outs = jax.jit(jax.vmap(lambda k: augment.cutout(k, x, size_fraction=0.4)))(jax.random.split(jax.random.key(0), 16))
    zeroed = np.asarray((outs[..., 0] == 0).sum(axis=(1, 2)))
    assert zeroed.max() == 16 and zeroed.min() >= 4  # a 4x4 square, partly hanging over the border at worst
    np.testing.assert_array_equal(augment.cutout(jax.random.key(0), x, size_fraction=0.0), x)


def test_random_erasing_changes_a_box_in_about_half_the_examples():
    x = jnp.zeros((12, 12, 1))
    outs = jax.jit(jax.vmap(lambda k: augment.random_erasing(k, x, max_area=0.3)))(jax.random.split(jax.random.key(0), 200))
    erased = np.asarray((outs != 0).any(axis=(1, 2, 3)))
    assert 0.35 < erased.mean() < 0.65
