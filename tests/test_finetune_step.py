"""The train step's fine-tuning parts: frozen modules, the EMA, label smoothing, clipping and accumulation.

Oracles: hand-computed SGD updates and NumPy losses; the jaxpr's convolutions for "no backbone gradient".
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import Batch, create_train_state, get_model, make_optimizer, make_train_step
from jaxvision.fit import evaluate
from jaxvision.losses import cross_entropy, l2, smoothed
from jaxvision.train import make_eval_step, with_ema


def _batch(n=8, shape=(8, 8, 1), classes=10, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, *shape)).astype(np.float32)
    labels = rng.integers(0, classes, size=n).astype(np.int32)
    return Batch(images=jnp.asarray(images), labels=jnp.asarray(labels), mask=jnp.ones(n, jnp.float32))


HEAD = "Dense_2"  # the MLP's and LeNet-5's last layer (the ImageNet-style zoo models call theirs "head")


def _mlp_state(optimizer, seed=0):
    model = get_model("mlp", num_classes=10, kernels="reference", dropout_rate=0.0)
    return create_train_state(model, (8, 8, 1), optimizer, jax.random.key(seed))


def test_frozen_parameters_stay_bitwise_even_with_weight_decay_and_momentum():
    state = _mlp_state(optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.5, momentum=0.9)))
    frozen = tuple(name for name in state.params if name != HEAD)
    assert len(frozen) == 2
    step = make_train_step(frozen=frozen)
    new = state
    for i in range(3):
        new, metrics = step(new, _batch(seed=i), jax.random.key(1))
    for name in frozen:
        chex.assert_trees_all_equal(new.params[name], state.params[name])
    assert not np.allclose(new.params[HEAD]["kernel"], state.params[HEAD]["kernel"])


def test_frozen_step_equals_a_hand_computed_head_update():
    """SGD on the head alone: kernel - lr * dL/dkernel with the backbone's features held fixed."""
    state = _mlp_state(optax.sgd(0.1))
    frozen = tuple(name for name in state.params if name != HEAD)
    batch = _batch()
    new, _ = make_train_step(frozen=frozen)(state, batch, jax.random.key(0))

    def loss(head):
        logits = state.apply_fn({"params": {**state.params, HEAD: head}}, batch.images, train=True,
                                rngs={"dropout": jax.random.key(0)})
        return jnp.mean(cross_entropy(logits, batch.labels))

    grads = jax.grad(loss)(state.params[HEAD])
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, state.params[HEAD], grads)
    chex.assert_trees_all_close(new.params[HEAD], expected, rtol=1e-6, atol=1e-7)


def _count_convolutions(jaxpr) -> int:
    count = 0
    for equation in jaxpr.eqns:
        if equation.primitive.name == "conv_general_dilated":
            count += 1
        for value in equation.params.values():
            inner = getattr(value, "jaxpr", None)
            if inner is not None:
                count += _count_convolutions(getattr(inner, "jaxpr", inner))
    return count


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
def test_a_frozen_backbone_computes_no_backbone_gradient(kernels):
    """With everything but the head frozen, the step holds exactly the forward pass's convolutions; with all
    trainable, also their kernel and input gradients (reference LeNet-5: 2 forward, 5 in all)."""
    model = get_model("lenet5", num_classes=10, kernels=kernels)
    state = create_train_state(model, (28, 28, 1), optax.sgd(0.1), jax.random.key(0))
    batch = _batch(n=4, shape=(28, 28, 1))
    frozen = tuple(name for name in state.params if name != HEAD)

    def convolutions(function, *args):
        return _count_convolutions(jax.make_jaxpr(function)(*args).jaxpr)

    forward = convolutions(lambda v, x: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(0)}),
                           state.variables, batch.images)
    frozen_step = convolutions(make_train_step(frozen=frozen).unjitted, state, batch, jax.random.key(0))
    full_step = convolutions(make_train_step().unjitted, state, batch, jax.random.key(0))
    assert forward >= 1
    assert frozen_step == forward
    assert full_step > forward
    if kernels == "reference":
        assert (forward, full_step) == (2, 5)


def test_ema_follows_the_warmed_up_rule():
    state = with_ema(_mlp_state(optax.sgd(0.1)))
    chex.assert_trees_all_equal(state.ema_params, state.params)
    step = make_train_step(ema_decay=0.9)
    expected = jax.tree.map(np.asarray, state.params)
    for i in range(3):
        rate = min(0.9, (1 + i) / (10 + i))  # TensorFlow's ExponentialMovingAverage with num_updates
        state, _ = step(state, _batch(seed=i), jax.random.key(0))
        expected = jax.tree.map(lambda e, p: rate * e + (1 - rate) * np.asarray(p), expected, state.params)
    chex.assert_trees_all_close(state.ema_params, expected, rtol=1e-6, atol=1e-7)


def test_evaluation_uses_the_ema_weights():
    state = with_ema(_mlp_state(optax.sgd(0.5)))
    for i in range(5):
        state, _ = make_train_step(ema_decay=0.5)(state, _batch(seed=i), jax.random.key(0))
    batches = [_batch(seed=10)]
    with_average = evaluate(state, batches, step=make_eval_step())
    raw = evaluate(state.replace(params=state.ema_params, ema_params={}), batches, step=make_eval_step())
    without = evaluate(state.replace(ema_params={}), batches, step=make_eval_step())
    assert with_average == raw
    assert with_average["loss"] != without["loss"]


def test_ema_without_a_started_average_says_how_to_start_one():
    with pytest.raises(ValueError, match="with_ema"):
        make_train_step(ema_decay=0.9)(_mlp_state(optax.sgd(0.1)), _batch(), jax.random.key(0))


def test_label_smoothing_matches_numpy():
    logits = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 3, 4, 1])
    eps = 0.2
    targets = np.full((4, 5), eps / 5) + (1 - eps) * np.eye(5)[labels]
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -(targets * log_softmax).sum(-1)
    np.testing.assert_allclose(smoothed("cross_entropy", eps)(jnp.asarray(logits), jnp.asarray(labels)), expected,
                               rtol=1e-5)
    soft = np.eye(5)[labels] * 0.7 + 0.3 * np.eye(5)[[1, 1, 1, 1]]
    expected_soft = -(((1 - eps) * soft + eps / 5) * log_softmax).sum(-1)
    np.testing.assert_allclose(smoothed("cross_entropy", eps)(jnp.asarray(logits), jnp.asarray(soft)), expected_soft,
                               rtol=1e-5)


def test_label_smoothing_refuses_other_losses_and_bad_amounts():
    with pytest.raises(ValueError, match="softmax loss"):
        smoothed(l2, 0.1)
    with pytest.raises(ValueError, match=r"label_smoothing=1.0"):
        make_train_step(label_smoothing=1.0)
    assert smoothed("cross_entropy", 0.0) is cross_entropy


def test_clipping_caps_the_update_norm():
    state = _mlp_state(make_optimizer("sgd", 1.0, clip_grad_norm=1e-3))
    new, _ = make_train_step()(state, _batch(), jax.random.key(0))
    delta = jax.tree.map(lambda a, b: a - b, new.params, state.params)
    norm = float(optax.global_norm(delta))
    np.testing.assert_allclose(norm, 1e-3, rtol=1e-4)


def test_two_accumulated_half_batches_equal_one_full_batch():
    """Mean losses over equal halves average to the full batch's mean: the same SGD update."""
    full = _batch(n=8)
    halves = [Batch(images=full.images[s], labels=full.labels[s], mask=full.mask[s]) for s in (slice(0, 4), slice(4, 8))]
    accumulated = _mlp_state(make_optimizer("sgd", 0.1, accumulate_steps=2))
    step = make_train_step()
    after_first, _ = step(accumulated, halves[0], jax.random.key(0))
    chex.assert_trees_all_equal(after_first.params, accumulated.params)  # nothing moves until the K-th batch
    after_second, _ = step(after_first, halves[1], jax.random.key(0))
    single, _ = step(_mlp_state(make_optimizer("sgd", 0.1)), full, jax.random.key(0))
    chex.assert_trees_all_close(after_second.params, single.params, rtol=1e-5, atol=1e-6)


def test_accumulation_and_clipping_are_checked():
    with pytest.raises(ValueError, match="accumulate_steps=0"):
        make_optimizer("adam", 1e-3, accumulate_steps=0)
    with pytest.raises(ValueError, match="clip_grad_norm=-1"):
        make_optimizer("adam", 1e-3, clip_grad_norm=-1)


def _resnet20_weights():
    from jaxvision.finetune import Weights

    model = get_model("resnet20", num_classes=10, kernels="reference")
    state = create_train_state(model, (32, 32, 3), optax.sgd(0.1), jax.random.key(0))
    rng = np.random.default_rng(0)
    # Non-trivial running statistics, so that "inference mode" and "train mode" batch norm differ.
    stats = jax.tree.map(lambda x: jnp.asarray(rng.uniform(0.5, 1.5, x.shape), x.dtype), state.batch_stats)
    return model, Weights(variables={"params": state.params, "batch_stats": stats}, source="test", kind="run",
                          model_name="resnet20", num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3, channels=3,
                          image_size=(32, 32), resize="stretch")


def test_fine_tuning_the_last_stage_keeps_frozen_parameters_and_statistics_bitwise():
    from jaxvision.finetune import fine_tune_start

    model, weights = _resnet20_weights()
    begin = fine_tune_start(model, weights, num_classes=5, input_shape=(32, 32, 3),
                            optimizer=optax.adamw(1e-2, weight_decay=0.1), key=jax.random.key(1), finetune="last:1")
    assert "stage3_block1" not in begin.frozen and "stage2_block3" in begin.frozen and "stem_conv" in begin.frozen
    step = make_train_step(frozen=begin.frozen)
    state = begin.state
    for i in range(2):
        state, _ = step(state, _batch(n=4, shape=(32, 32, 3), classes=5, seed=i), jax.random.key(2))
    for name in begin.frozen:
        if name in state.params:
            chex.assert_trees_all_equal(state.params[name], begin.state.params[name])
        if name in state.batch_stats:
            chex.assert_trees_all_equal(state.batch_stats[name], begin.state.batch_stats[name])
    assert state.params["head"]["kernel"].shape[-1] == 5
    trained = [name for name in state.batch_stats if name not in begin.frozen]
    assert trained and all(
        not np.array_equal(state.batch_stats[n]["bn1"]["mean"], begin.state.batch_stats[n]["bn1"]["mean"])
        for n in trained)
    for name in trained:
        assert not np.array_equal(state.params[name]["conv1"]["kernel"], begin.state.params[name]["conv1"]["kernel"])


def test_a_new_head_keeps_the_backbone_and_refuses_a_kept_head_of_another_size():
    from jaxvision.finetune import fine_tune_start

    model, weights = _resnet20_weights()
    begin = fine_tune_start(model, weights, num_classes=3, input_shape=(32, 32, 3), optimizer=optax.sgd(0.1),
                            key=jax.random.key(1), finetune="linear")
    for name, value in weights.variables["params"].items():
        if name != "head":
            chex.assert_trees_all_equal(begin.state.params[name], value)
    assert begin.state.params["head"]["kernel"].shape == (64, 3)
    with pytest.raises(ValueError, match="Cannot keep the head"):
        fine_tune_start(model, weights, num_classes=3, input_shape=(32, 32, 3), optimizer=optax.sgd(0.1),
                        key=jax.random.key(1), keep_head=True)
