"""Test-time augmentation: view sets, averaging over views, and mask-aware evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import Batch, create_train_state, evaluate, get_model, make_optimizer, predict
from jaxvision.augment import count_views, evaluate_tta, predict_tta, view_matrices


@pytest.fixture(scope="module")
def state():
    model = get_model("mlp", num_classes=3, hidden_sizes=(8,))
    return create_train_state(model, (8, 8, 1), make_optimizer("sgd", 0.1), jax.random.key(0))


def images(size=5, seed=0):
    return jax.random.normal(jax.random.key(seed), (size, 8, 8, 1))


def test_view_counts_follow_the_ladder_and_specs():
    assert [count_views(v) for v in (1, 2, 10, 30, 150)] == [1, 2, 10, 30, 150]
    assert count_views("crops:9,scales:2") == 18
    assert view_matrices(150, 32, 32).shape == (150, 3, 3)
    np.testing.assert_array_equal(view_matrices(10, 8, 8)[0], np.eye(3))
    np.testing.assert_array_equal(view_matrices("crops:5,shift:3", 8, 8)[1], [[1, 0, -3], [0, 1, -3], [0, 0, 1]])
    assert count_views("10") == 10  # as a command line passes it
    for bad in (3, "flip,crops:4", "rotate", "shift:0"):
        with pytest.raises(ValueError, match="Invalid"):
            count_views(bad)


def test_one_view_is_plain_softmax_and_two_views_average_the_mirror(state):
    x = images()
    plain = jax.nn.softmax(predict(state, x))
    np.testing.assert_allclose(predict_tta(state, x, views=1), plain, atol=1e-6)
    mirrored = jax.nn.softmax(predict(state, x[:, :, ::-1]))
    probabilities = predict_tta(state, x, views=2)
    np.testing.assert_allclose(probabilities, (plain + mirrored) / 2, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_evaluate_tta_with_one_view_matches_evaluate_and_honours_the_mask(state):
    x, labels = images(6), jnp.array([0, 1, 2, 0, 1, 2])
    full = [Batch.of(x, labels)]
    garbage = 100 * jnp.ones((2, 8, 8, 1))

    def padded(views):
        # The same examples with two padding rows of garbage that must not count, labelled with what the
        # model predicts for them: counted, they would raise the accuracy.
        predicted = jnp.argmax(predict_tta(state, garbage, views=views), axis=-1)
        return Batch(
            images=jnp.concatenate([x, garbage]),
            labels=jnp.concatenate([labels, predicted]),
            mask=jnp.array([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32),
        )

    expected = evaluate(state, full)
    assert expected["accuracy"] < 1
    for result in (evaluate_tta(state, full, views=1), evaluate_tta(state, [padded(1)], views=1)):
        assert result["count"] == 6
        assert result["accuracy"] == pytest.approx(expected["accuracy"])
        assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    # 15 views: the real rows' mean-over-views probabilities, counted here, padding left out.
    views = "crops:5,scales:3"
    many = evaluate_tta(state, [padded(views)], views=views)
    probabilities = np.asarray(predict_tta(state, x, views=views), np.float64)
    assert many["count"] == 6
    assert many["accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == np.asarray(labels)), abs=1e-9)
    assert many["loss"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(6), np.asarray(labels)])), rel=1e-5)
    assert many["loss"] != pytest.approx(expected["loss"], rel=1e-3)  # the views changed the predictions
