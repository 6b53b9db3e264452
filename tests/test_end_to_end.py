"""End to end: mock TFDS data through the whole stack, the examples, and (slow) real MNIST."""

import os
import runpy

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import jaxvision
from jaxvision import data

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def example(name):
    return runpy.run_path(os.path.join(EXAMPLES, name), run_name="example")


def test_fit_on_mock_mnist_runs_every_stage_and_counts_the_test_set():
    with tfds.testing.mock_data(num_examples=96):
        splits = data.load_splits("mnist", batch_size=16, eval_batch_size=40)
        model = jaxvision.get_model("lenet5", num_classes=splits.meta.num_classes, dropout_rate=0.1)
        optimizer = jaxvision.make_optimizer("momentum", 0.01, total_steps=2 * splits.steps_per_epoch, schedule="step")
        state = jaxvision.create_train_state(model, splits.meta.image_shape, optimizer, jax.random.key(0))
        result = jaxvision.fit(state, splits, epochs=2, key=jax.random.key(1), progress=False)
    assert len(result.history["val_loss"]) == 2
    assert result.test["count"] == splits.meta.num_test == 96
    assert int(result.state.step) == 2 * splits.steps_per_epoch


def test_early_stopping_restores_the_best_epoch():
    splits = data.load_splits("digits", batch_size=32)
    # A learning rate far too high makes validation loss rise after the first epoch or so.
    optimizer = jaxvision.make_optimizer("sgd", 5.0)
    state = jaxvision.create_train_state(jaxvision.get_model("mlp", num_classes=10), splits.meta.image_shape, optimizer, jax.random.key(0))
    result = jaxvision.fit(state, splits, epochs=30, key=jax.random.key(0), patience=2, progress=False)
    val_losses = result.history["val_loss"]
    assert result.stopped_early and len(val_losses) == result.best_epoch + 1 + 2
    assert val_losses[result.best_epoch] == min(val_losses)
    restored = jaxvision.evaluate(result.state, splits.eval_batches("validation"))
    assert restored["loss"] == pytest.approx(val_losses[result.best_epoch], rel=1e-5)


def test_xor_example_perceptron_fails_and_mlp_succeeds():
    results = example("xor_mlp.py")["main"](steps=400)
    assert results["perceptron"] <= 0.75 and results["mlp 2-8-2 relu"] == 1.0


def test_mnist_example_runs_on_mock_data_and_reports_the_test_accuracy_of_its_state(monkeypatch):
    evaluated = []

    def recording_evaluate(state, batches, **kwargs):
        batches = list(batches)
        evaluated.append((state, batches))
        return evaluate(state, batches, **kwargs)

    evaluate = jaxvision.evaluate
    monkeypatch.setattr(jaxvision, "evaluate", recording_evaluate)
    with tfds.testing.mock_data(num_examples=64):
        accuracy = example("mnist_lenet5.py")["main"](dataset="mnist", epochs=1, batch_size=16)
    # Recount the last (test) evaluation from the final state's eval-mode logits: every real test
    # image once, padding never.
    state, batches = evaluated[-1]
    correct = count = 0
    for batch in batches:
        predicted = np.argmax(np.asarray(jaxvision.predict(state, batch.images)), axis=-1)
        mask = np.asarray(batch.mask) == 1
        correct += int(np.sum(predicted[mask] == np.asarray(batch.labels)[mask]))
        count += int(mask.sum())
    assert count == 64
    assert accuracy == pytest.approx(correct / count, abs=1e-9)


@pytest.mark.slow
def test_lenet5_reaches_98_5_percent_on_real_mnist_in_one_epoch(mnist_dir):
    splits = data.load_splits("mnist", data_dir=mnist_dir, batch_size=64)
    optimizer = jaxvision.make_optimizer("adam", 3e-3, schedule="onecycle", total_steps=splits.steps_per_epoch)
    state = jaxvision.create_train_state(jaxvision.get_model("lenet5"), splits.meta.image_shape, optimizer, jax.random.key(0))
    result = jaxvision.fit(state, splits, epochs=1, key=jax.random.key(1), progress=False)
    assert result.test["count"] == 10_000
    assert result.test["accuracy"] >= 0.985, result.test
