"""Each loss against a hand or NumPy computation."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import losses


def numpy_log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


LOGITS = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]], np.float32)
LABELS = np.array([0, 2])


def test_cross_entropy_with_integer_labels_matches_numpy():
    expected = -numpy_log_softmax(LOGITS)[np.arange(2), LABELS]
    np.testing.assert_allclose(losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS)), expected, rtol=1e-6)


def test_cross_entropy_by_hand_for_uniform_logits_is_log_num_classes():
    value = losses.cross_entropy(jnp.zeros((1, 4)), jnp.array([3]))
    np.testing.assert_allclose(value, [np.log(4.0)], rtol=1e-6)


def test_cross_entropy_with_one_hot_soft_labels_equals_integer_labels():
    soft = np.eye(3, dtype=np.float32)[LABELS]
    np.testing.assert_allclose(
        losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(soft)),
        losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS)),
        rtol=1e-6,
    )


def test_cross_entropy_with_soft_labels_matches_numpy_and_is_not_their_argmax():
    import jax

    # Genuinely soft: mixup-style 0.3/0.7 and a three-way split; argmax would be a different loss.
    soft = np.array([[0.3, 0.7, 0.0], [0.2, 0.3, 0.5]], np.float32)
    expected = -(soft * numpy_log_softmax(LOGITS)).sum(-1)
    got = losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(soft))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    collapsed = -numpy_log_softmax(LOGITS)[np.arange(2), soft.argmax(-1)]
    assert np.all(np.abs(expected - collapsed) > 0.1)  # the oracle tells the two apart
    # Its gradient to the logits is softmax - labels, the soft labels themselves.
    grad = jax.grad(lambda z: losses.cross_entropy(z, jnp.asarray(soft)).sum())(jnp.asarray(LOGITS))
    np.testing.assert_allclose(grad, np.exp(numpy_log_softmax(LOGITS)) - soft, rtol=1e-5, atol=1e-6)


def test_binary_cross_entropy_single_output_by_hand():
    logits = np.array([[0.0], [2.0]], np.float32)
    labels = np.array([1, 0])
    # -log(sigmoid(0)) = log 2; -log(1 - sigmoid(2)) = log(1 + e^2)
    expected = [np.log(2.0), np.log1p(np.exp(2.0))]
    np.testing.assert_allclose(losses.binary_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)), expected, rtol=1e-6)


def test_binary_cross_entropy_multi_output_one_hot_matches_numpy():
    p = 1 / (1 + np.exp(-LOGITS))
    targets = np.eye(3)[LABELS]
    expected = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean(-1)
    np.testing.assert_allclose(losses.binary_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS)), expected, rtol=1e-5)


def test_l2_and_l1_against_one_hot_targets_by_hand():
    predictions = np.array([[0.5, 0.0, 1.0]], np.float32)
    labels = np.array([2])  # target [0, 0, 1]
    np.testing.assert_allclose(losses.l2(jnp.asarray(predictions), jnp.asarray(labels)), [(0.25 + 0 + 0) / 3], rtol=1e-6)
    np.testing.assert_allclose(losses.l1(jnp.asarray(predictions), jnp.asarray(labels)), [(0.5 + 0 + 0) / 3], rtol=1e-6)


def test_l2_and_l1_regression_targets():
    predictions = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    targets = np.array([[0.0, 4.0], [3.0, 1.0]], np.float32)
    np.testing.assert_allclose(losses.l2(jnp.asarray(predictions), jnp.asarray(targets)), [(1 + 4) / 2, (0 + 4) / 2])
    np.testing.assert_allclose(losses.l1(jnp.asarray(predictions), jnp.asarray(targets)), [(1 + 2) / 2, (0 + 2) / 2])


def test_unknown_loss_name_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'cross_entropy'"):
        losses.get_loss("crossentropy")


def test_nll_on_log_probabilities_by_hand_and_equal_to_cross_entropy_after_log_softmax():
    import jax

    log_probabilities = np.log(np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], np.float32))
    labels = jnp.array([1, 2])
    # -log 0.7 and -log 0.25: the probability each example gives its own label.
    np.testing.assert_allclose(losses.nll(jnp.asarray(log_probabilities), labels), [-np.log(0.7), np.log(4.0)], rtol=1e-6)
    assert losses.get_loss("nll") is losses.nll
    log_softmax = jnp.asarray(numpy_log_softmax(LOGITS))
    np.testing.assert_allclose(losses.nll(log_softmax, jnp.asarray(LABELS)), losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS)), rtol=1e-6)
    soft = jnp.asarray(np.array([[0.5, 0.5, 0.0], [0.0, 0.1, 0.9]], np.float32))
    np.testing.assert_allclose(losses.nll(log_softmax, soft), losses.cross_entropy(jnp.asarray(LOGITS), soft), rtol=1e-6)
    # Raw logits are renormalised first, so --loss nll on a model that returns logits is cross-entropy.
    np.testing.assert_allclose(losses.nll(jnp.asarray(LOGITS), jnp.asarray(LABELS)), losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS)), rtol=1e-6)
    # The same gradient reaches the logits through log_softmax as cross-entropy sends them: softmax - one-hot.
    grad_nll = jax.grad(lambda z: losses.nll(jax.nn.log_softmax(z), jnp.asarray(LABELS)).sum())(jnp.asarray(LOGITS))
    np.testing.assert_allclose(grad_nll, np.exp(numpy_log_softmax(LOGITS)) - np.eye(3)[LABELS], rtol=1e-5, atol=1e-6)
