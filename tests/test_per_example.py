"""Per-example gradients against a loop of single-example gradients, and the DP-SGD step."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models
from jaxvision.augment import parse_augment_spec
from jaxvision.batch import Batch
from jaxvision.losses import cross_entropy, get_loss
from jaxvision.optimizers import make_optimizer
from jaxvision.per_example import clip_and_noise, dp_train_step, make_dp_train_step, per_example_grads
from jaxvision.train import create_train_state, loss_and_updates, make_train_step, train_step

BATCH = 6


@pytest.fixture(scope="module", params=["reference", "cpu"])
def state(request):
    # vmap of grad through flax's layers and through the XLA:CPU kernels (jaxvision.backends.cpu).
    model = models.get_model("lenet5", num_classes=4, kernels=request.param)
    return create_train_state(model, (28, 28, 1), make_optimizer("sgd", 0.1), jax.random.key(0))


@pytest.fixture(scope="module")
def small_state():
    model = models.get_model("mlp", num_classes=4, hidden_sizes=(8,))
    return create_train_state(model, (28, 28, 1), make_optimizer("sgd", 0.1), jax.random.key(0))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return Batch.of(rng.normal(size=(BATCH, 28, 28, 1)), rng.integers(0, 4, BATCH).astype(np.int32))


@functools.partial(jax.jit, static_argnames="loss")
def _batch_grads(state, batch, loss=cross_entropy):
    return jax.grad(lambda p: loss_and_updates(state, p, batch, jax.random.key(0), loss=loss)[0])(state.params)


def _single_example_grads(state, batch, i, loss=cross_entropy):
    single = Batch(images=batch.images[i : i + 1], labels=batch.labels[i : i + 1], mask=batch.mask[i : i + 1])
    return _batch_grads(state, single, loss=loss)


def test_per_example_grads_equal_a_loop_of_single_example_grads(state, batch):
    grads = per_example_grads(state, batch)
    for i in range(BATCH):
        expected = _single_example_grads(state, batch, i)
        jax.tree.map(lambda g, e: np.testing.assert_allclose(g[i], e, rtol=1e-5, atol=1e-6), grads, expected)


def test_per_example_grads_of_another_loss_are_that_losss_gradients(small_state, batch):
    grads = per_example_grads(small_state, batch, loss="l2")
    cross_entropy_grads = per_example_grads(small_state, batch)
    for i in (0, BATCH - 1):
        expected = _single_example_grads(small_state, batch, i, loss=get_loss("l2"))
        jax.tree.map(lambda g, e: np.testing.assert_allclose(g[i], e, rtol=1e-5, atol=1e-7), grads, expected)
    assert not np.allclose(grads["Dense_1"]["kernel"], cross_entropy_grads["Dense_1"]["kernel"], atol=1e-4)


def test_mean_of_per_example_grads_is_the_batch_gradient(state, batch):
    grads = per_example_grads(state, batch)
    batch_grads = _batch_grads(state, batch)
    jax.tree.map(lambda g, e: np.testing.assert_allclose(jnp.mean(g, axis=0), e, rtol=1e-5, atol=1e-6), grads, batch_grads)


def test_padding_examples_get_zero_gradients(state, batch):
    padded = batch.replace(mask=batch.mask.at[-2:].set(0.0))
    grads = per_example_grads(state, padded)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.asarray(leaf[-2:]) == 0) and np.any(np.asarray(leaf[0]) != 0)


def test_per_example_grads_run_under_an_outer_jit(small_state, batch):
    direct = per_example_grads(small_state, batch)
    jitted = jax.jit(per_example_grads)(small_state, batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), direct, jitted)


def test_clipping_matches_a_numpy_computation():
    rng = np.random.default_rng(1)
    grads = {"a": rng.normal(size=(5, 3)).astype(np.float32), "b": rng.normal(size=(5, 2, 2)).astype(np.float32)}
    mask = np.array([1, 1, 1, 1, 0], np.float32)
    clip = 1.5
    noisy, norms = clip_and_noise(grads, jnp.asarray(mask), jax.random.key(0), l2_norm_clip=clip, noise_multiplier=0.0)
    flat = np.concatenate([grads["a"], grads["b"].reshape(5, -1)], axis=1)
    expected_norms = np.linalg.norm(flat, axis=1)
    scale = np.minimum(1.0, clip / expected_norms) * mask
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-6)
    np.testing.assert_allclose(noisy["a"], (scale[:, None] * grads["a"]).sum(0) / 4, rtol=1e-5)
    np.testing.assert_allclose(noisy["b"], (scale[:, None, None] * grads["b"]).sum(0) / 4, rtol=1e-5)


def test_noise_has_the_dp_sgd_scale_and_comes_from_the_key():
    grads = {"w": jnp.zeros((10, 20_000))}  # run eagerly: a handful of ops
    mask = jnp.ones(10)
    clip, sigma = 2.0, 1.5
    first, _ = clip_and_noise(grads, mask, jax.random.key(3), l2_norm_clip=clip, noise_multiplier=sigma)
    again, _ = clip_and_noise(grads, mask, jax.random.key(3), l2_norm_clip=clip, noise_multiplier=sigma)
    other, _ = clip_and_noise(grads, mask, jax.random.key(4), l2_norm_clip=clip, noise_multiplier=sigma)
    np.testing.assert_array_equal(first["w"], again["w"])
    assert not np.allclose(first["w"], other["w"])
    # Sum of clipped grads + N(0, (sigma C)^2), divided by the 10 examples.
    assert abs(float(jnp.std(first["w"])) - sigma * clip / 10) < 0.02 * sigma * clip / 10
    assert abs(float(jnp.mean(first["w"]))) < 0.01


def test_dp_step_without_clipping_or_noise_is_the_train_step(small_state, batch):
    state = small_state
    dp_step = make_dp_train_step(l2_norm_clip=1e6, noise_multiplier=0.0)
    dp_state, dp_metrics = dp_step(state, batch, jax.random.key(2))
    plain_state, plain_metrics = train_step(state, batch, jax.random.key(2))
    np.testing.assert_allclose(dp_metrics["loss"], plain_metrics["loss"], rtol=1e-6)
    assert float(dp_metrics["clipped_fraction"]) == 0.0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), dp_state.params, plain_state.params)


@pytest.mark.parametrize("loss", ["l2", "cross_entropy"])
def test_dp_step_without_clipping_or_noise_is_the_train_step_of_its_loss_and_augmentation(small_state, batch, loss):
    # The same loss and the same augmentation keys as make_train_step's (split_step_key of the base key).
    augment = parse_augment_spec("flip,crop:4,rotate:20")
    dp_step = make_dp_train_step(l2_norm_clip=1e6, noise_multiplier=0.0, loss=loss, augment=augment)
    base_key, _ = jax.random.split(jax.random.key(2))  # the DP step keeps the other half for its noise
    dp_state, dp_metrics = dp_step(small_state, batch, jax.random.key(2))
    plain_state, plain_metrics = make_train_step(loss=loss, augment=augment)(small_state, batch, base_key)
    unaugmented_state, _ = make_train_step(loss=loss)(small_state, batch, base_key)
    np.testing.assert_allclose(dp_metrics["loss"], plain_metrics["loss"], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), dp_state.params, plain_state.params)
    assert not np.allclose(dp_state.params["Dense_0"]["kernel"], unaugmented_state.params["Dense_0"]["kernel"], atol=1e-6)


def test_dp_step_is_reproducible_from_its_key_and_clips(small_state, batch):
    state = small_state
    first, metrics = dp_train_step(state, batch, jax.random.key(5), l2_norm_clip=0.01, noise_multiplier=1.0)
    again, _ = dp_train_step(state, batch, jax.random.key(5), l2_norm_clip=0.01, noise_multiplier=1.0)
    other, _ = dp_train_step(state, batch, jax.random.key(6), l2_norm_clip=0.01, noise_multiplier=1.0)
    jax.tree.map(np.testing.assert_array_equal, first.params, again.params)
    assert not np.allclose(first.params["Dense_1"]["kernel"], other.params["Dense_1"]["kernel"])
    assert float(metrics["clipped_fraction"]) == 1.0 and float(metrics["grad_norm"]) > 0.01


def test_invalid_dp_options_say_how_to_fix():
    with pytest.raises(ValueError, match=r"l2_norm_clip=0.*e\.g\. 1\.0"):
        make_dp_train_step(l2_norm_clip=0.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match=r"noise_multiplier=-1"):
        make_dp_train_step(l2_norm_clip=1.0, noise_multiplier=-1.0)
