"""The train and eval steps: learning, recompiles, keys, checkpoint/resume, XOR."""

import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvision
from jaxvision import Batch, create_train_state, eval_step, get_model, make_optimizer, train_step
from jaxvision.backends import compile as compile_module
from jaxvision.train import make_eval_step, make_train_step, split_step_key

# The module, not the function of the same name that jaxvision re-exports.
fit_module = importlib.import_module("jaxvision.fit")

XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_LABELS = np.array([0, 1, 1, 0])


def train_xor(model, *, loss, steps=400, learning_rate=0.05, seed=0):
    state = create_train_state(model, (2,), make_optimizer("adam", learning_rate), jax.random.key(seed))
    batch = Batch.of(XOR_INPUTS, XOR_LABELS)
    step, evaluate = make_train_step(loss=loss), make_eval_step(loss=loss)
    for _ in range(steps):
        state, _ = step(state, batch, jax.random.key(1))
    return float(evaluate(state, batch)["correct"]) / 4


def test_relu_mlp_learns_xor_but_a_perceptron_cannot():
    assert train_xor(get_model("mlp", num_classes=2, hidden_sizes=(8,)), loss="cross_entropy") == 1.0
    # A linear boundary separates at most 3 of XOR's 4 points, whatever the training.
    for seed in range(3):
        assert train_xor(get_model("perceptron", num_classes=1), loss="binary_cross_entropy", seed=seed) <= 0.75


def make_state(model_name="mlp", input_shape=(8, 8, 1), **overrides):
    model = get_model(model_name, num_classes=10, **overrides)
    return create_train_state(model, input_shape, make_optimizer("sgd", 0.1), jax.random.key(0))


def random_batch(shape=(32, 8, 8, 1), seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return Batch.of(jax.random.normal(k1, shape), jax.random.randint(k2, shape[:1], 0, 10))


def test_one_jitted_step_lowers_the_loss_on_a_fixed_batch():
    state, batch = make_state(), random_batch()
    before = eval_step(state, batch)
    state, metrics = train_step(state, batch, jax.random.key(0))
    after = eval_step(state, batch)
    assert int(state.step) == 1
    np.testing.assert_allclose(metrics["loss"], before["loss_sum"] / 32, rtol=1e-5)
    assert float(after["loss_sum"]) < float(before["loss_sum"])


def test_masked_examples_do_not_change_the_update():
    state, batch = make_state(), random_batch()
    half = Batch(images=batch.images[:16], labels=batch.labels[:16], mask=batch.mask[:16])
    garbage = batch.replace(images=batch.images.at[16:].set(1e3), mask=batch.mask.at[16:].set(0.0))
    a, _ = train_step(state, half, jax.random.key(0))
    b, _ = train_step(state, garbage, jax.random.key(0))
    chex.assert_trees_all_close(a.params, b.params, atol=1e-6)


def test_dropout_keys_come_from_the_step_so_the_same_step_repeats_exactly():
    state, batch = make_state(dropout_rate=0.5), random_batch()
    a, _ = train_step(state, batch, jax.random.key(7))
    b, _ = train_step(state, batch, jax.random.key(7))
    chex.assert_trees_all_equal(a.params, b.params)
    later = state.replace(step=state.step + 1)  # same parameters, next step: new dropout mask
    c, _ = train_step(later, batch, jax.random.key(7))
    assert not np.allclose(jax.tree.leaves(a.params)[0], jax.tree.leaves(c.params)[0])


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    batches = [random_batch(seed=s) for s in range(6)]
    key = jax.random.key(3)
    uninterrupted = make_state(dropout_rate=0.3)
    for batch in batches:
        uninterrupted, _ = train_step(uninterrupted, batch, key)

    resumed = make_state(dropout_rate=0.3)
    for batch in batches[:3]:
        resumed, _ = train_step(resumed, batch, key)
    path = jaxvision.save_checkpoint(str(tmp_path), resumed)
    restored = jaxvision.restore_checkpoint(path, like=make_state(dropout_rate=0.3))
    assert int(restored.step) == 3
    for batch in batches[3:]:
        restored, _ = train_step(restored, batch, key)
    chex.assert_trees_all_close(restored.params, uninterrupted.params, atol=1e-7)


def test_fit_compiles_each_step_once_across_epochs():
    splits = jaxvision.data.load_splits("digits", batch_size=64, eval_batch_size=100)
    state = create_train_state(get_model("mlp", num_classes=10), splits.meta.image_shape, make_optimizer("adam", 1e-3), jax.random.key(0))
    traces = []

    def counting_cross_entropy(logits, labels):  # runs once per trace of a step, never per call
        traces.append(logits.shape)
        return jaxvision.cross_entropy(logits, labels)

    # eval batches of 100 over 144 validation and 360 test examples: the last of each is padded.
    result = fit_module.fit(state, splits, epochs=3, key=jax.random.key(1), loss=counting_cross_entropy, progress=False)
    assert len(result.history["train_loss"]) == 3
    # One trace of the train step (batch 64; digits' last partial batch is dropped) and one of the
    # eval step (batch 100, padded), across 3 epochs of training, validation and the test split.
    assert sorted(traces) == [(64, 10), (100, 10)]


def test_train_step_users_fit_and_explicit_steps_share_one_compile_path():
    # jaxvision.train_step, make_train_step() and fit's step compute bit-identical updates.
    model = get_model("lenet5", num_classes=4)
    state = create_train_state(model, (28, 28, 1), make_optimizer("adam", 1e-3), jax.random.key(0))
    batch = Batch.of(jax.random.normal(jax.random.key(1), (8, 28, 28, 1)), jnp.arange(8) % 4)
    default = train_step(state, batch, jax.random.key(2))
    built = make_train_step(loss="cross_entropy")(state, batch, jax.random.key(2))
    chex.assert_trees_all_equal(default, built)
    assert compile_module.step_compiler_options(state) == (
        compile_module.LEGACY_CPU_EMITTERS if jax.default_backend() == "cpu" else {})


def test_augmentation_and_dropout_draw_from_different_keys():
    # An augmentation that adds noise drawn from its key, and dropout drawing from its own: the step
    # must match a hand-built loss whose augmentation key and dropout key are split_step_key's two.
    model = get_model("mlp", num_classes=3, hidden_sizes=(32,), dropout_rate=0.5)
    state = create_train_state(model, (4,), make_optimizer("sgd", 0.1), jax.random.key(0))
    batch = Batch.of(jax.random.normal(jax.random.key(1), (16, 4)), jnp.arange(16) % 3)

    def noisy(key, b):
        return b.replace(images=b.images + jax.random.normal(key, b.images.shape))

    key = jax.random.key(7)
    _, metrics = make_train_step(augment=noisy)(state, batch, key)
    augment_key, dropout_key = split_step_key(key, state.step)
    images = noisy(augment_key, batch).images
    logits = model.apply({"params": state.params}, images, train=True, rngs={"dropout": dropout_key})
    expected = jnp.mean(jaxvision.cross_entropy(logits, batch.labels))
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
    # Had both drawn from one key, the loss would be this other number.
    same = model.apply({"params": state.params}, noisy(dropout_key, batch).images, train=True,
                       rngs={"dropout": dropout_key})
    assert abs(float(jnp.mean(jaxvision.cross_entropy(same, batch.labels))) - float(metrics["loss"])) > 1e-4


@pytest.mark.parametrize("batch_size, expected_steps", [(1, 1293), (64, 20), (10_000, 1)])
def test_full_batch_single_example_and_minibatch_are_batch_sizes(batch_size, expected_steps):
    splits = jaxvision.data.load_splits("digits", batch_size=batch_size)
    assert splits.steps_per_epoch == expected_steps
    batch = next(iter(splits.train_batches(0)))
    assert batch.images.shape[0] == min(batch_size, splits.meta.num_train)


def test_steps_lowered_against_the_abstract_initial_state_run_on_the_real_one():
    # What benchmarks/time_to_accuracy.py does to compile the three programs concurrently.
    from jaxvision.train import compile_initialization, lower_train_state

    model = get_model("mlp", num_classes=2, hidden_sizes=(8,))
    optimizer, key = make_optimizer("adam", 0.05), jax.random.key(3)
    lowered = lower_train_state(model, (2,), optimizer, key)
    batch = Batch.of(XOR_INPUTS, XOR_LABELS)
    step = jax.jit(train_step.unjitted).lower(lowered.out_info, batch, key).compile()
    state = compile_initialization(lowered, model)(key)
    chex.assert_trees_all_equal(state, create_train_state(model, (2,), optimizer, key))
    new_state, metrics = step(state, batch, key)
    chex.assert_trees_all_equal((new_state, metrics), train_step(state, batch, key))
