"""Optimisers and schedules: update rules by hand, schedule values, errors."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import make_optimizer, make_schedule


def one_update(optimizer, params, grads):
    state = optimizer.init(params)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def test_sgd_takes_minus_learning_rate_times_gradient():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.25])}
    new, state = one_update(make_optimizer("sgd", 0.1), params, grads)
    np.testing.assert_allclose(new["w"], [1.0 - 0.05, -2.0 - 0.025], rtol=1e-6)
    np.testing.assert_allclose(state.hyperparams["learning_rate"], 0.1)


def test_sgd_weight_decay_is_l2_added_to_the_gradient():
    params = {"w": jnp.array([2.0])}
    new, _ = one_update(make_optimizer("sgd", 0.1, weight_decay=0.5), params, {"w": jnp.array([1.0])})
    np.testing.assert_allclose(new["w"], [2.0 - 0.1 * (1.0 + 0.5 * 2.0)], rtol=1e-6)


def test_momentum_accumulates_velocity_by_hand():
    optimizer = make_optimizer("momentum", 0.1, momentum=0.9)
    params = {"w": jnp.array([0.0])}
    state = optimizer.init(params)
    grad = {"w": jnp.array([1.0])}
    for _ in range(2):
        updates, state = optimizer.update(grad, state, params)
        params = optax.apply_updates(params, updates)
    # velocity 1 then 1.9: w = -0.1 * (1 + 1.9)
    np.testing.assert_allclose(params["w"], [-0.29], rtol=1e-6)


def test_adam_first_step_moves_each_weight_by_the_learning_rate():
    params = {"w": jnp.array([1.0, 1.0])}
    new, _ = one_update(make_optimizer("adam", 0.01), params, {"w": jnp.array([3.0, -0.2])})
    np.testing.assert_allclose(new["w"], [0.99, 1.01], rtol=1e-5)


def test_adamw_decays_weights_decoupled_from_the_gradient():
    params = {"w": jnp.array([2.0])}
    new, _ = one_update(make_optimizer("adamw", 0.1, weight_decay=0.5), params, {"w": jnp.array([0.0])})
    # zero gradient: Adam's step is 0, decay is lr * wd * w = 0.1 * 0.5 * 2
    np.testing.assert_allclose(new["w"], [2.0 - 0.1], rtol=1e-5)


def test_schedules_by_hand():
    step = make_schedule("step", 100)
    assert [float(step(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    exponential = make_schedule("exponential", 100)
    assert float(exponential(0)) == pytest.approx(1.0)
    assert float(exponential(50)) == pytest.approx(0.1, rel=1e-4)
    assert float(exponential(100)) == pytest.approx(0.01, rel=1e-4)
    cosine = make_schedule("warmup_cosine", 100)
    assert float(cosine(0)) == 0.0
    assert float(cosine(5)) == pytest.approx(0.5)
    assert float(cosine(10)) == pytest.approx(1.0)
    assert float(cosine(55)) == pytest.approx(0.5, abs=1e-6)
    assert float(make_schedule("constant", 10)(7)) == 1.0


def test_schedule_scales_the_injected_learning_rate():
    optimizer = make_optimizer("sgd", 0.2, total_steps=100, schedule="step")
    params = {"w": jnp.array([0.0])}
    state = optimizer.init(params)
    moves = []
    for _ in range(60):
        updates, state = optimizer.update({"w": jnp.array([1.0])}, state, params)
        moves.append(float(-updates["w"][0]))
    assert moves[0] == pytest.approx(0.2) and moves[59] == pytest.approx(0.02)


def test_invalid_optimizer_arguments_say_how_to_fix():
    with pytest.raises(ValueError, match="Did you mean 'adam'"):
        make_optimizer("adm", 0.1)
    with pytest.raises(ValueError, match="Invalid learning_rate=-1"):
        make_optimizer("sgd", -1)
    with pytest.raises(ValueError, match="Unknown schedule"):
        make_optimizer("sgd", 0.1, schedule="cosine")
