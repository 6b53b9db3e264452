"""Populations: a vmapped population trains what N separate single runs train, a population of one is
``fit``, per-member early stopping, the ensemble's mean-softmax prediction, and ``jaxvision sweep``."""

from __future__ import annotations

import argparse
import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision import fit, models
from jaxvision.backends import compile as backend_compile
from jaxvision.batch import Batch
from jaxvision.ensemble import ensemble_predict, evaluate_population, fit_population
from jaxvision.optimizers import make_optimizer
from jaxvision.population import (
    STRATEGIES,
    MemberConfig,
    _population_train_step,
    create_population,
    epoch_order,
    gather_member_batches,
    member_grid,
    member_keys,
)
from jaxvision.train import create_train_state, make_train_step

INPUT_SHAPE = (8, 8, 1)
BATCH_SIZE = 16
NUM_TRAIN = 96


@dataclasses.dataclass
class ArrayData:
    """In-memory splits with what ``fit_population`` needs: ``arrays``, ``eval_batches``, ``batch_size``."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    batch_size: int = BATCH_SIZE
    eval_batch_size: int = 24

    def arrays(self, split):
        return getattr(self, split)

    def eval_batches(self, split):
        images, labels = getattr(self, split)
        for start in range(0, len(labels), self.eval_batch_size):
            chunk = slice(start, start + self.eval_batch_size)
            real = len(labels[chunk])
            padding = self.eval_batch_size - real
            yield Batch(
                images=np.pad(images[chunk], [(0, padding), (0, 0), (0, 0), (0, 0)]),
                labels=np.pad(labels[chunk], (0, padding)),
                mask=np.concatenate([np.ones(real), np.zeros(padding)]).astype(np.float32),
            )


def _examples(rng, weights, count, label_noise=0.0):
    images = rng.normal(size=(count, *INPUT_SHAPE)).astype(np.float32)
    labels = np.argmax(images.reshape(count, -1) @ weights, axis=1).astype(np.int32)
    flip = rng.random(count) < label_noise
    labels[flip] = rng.integers(0, 4, flip.sum())
    return images, labels


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(int(np.prod(INPUT_SHAPE)), 4))
    return ArrayData(_examples(rng, weights, NUM_TRAIN, 0.3), _examples(rng, weights, 40), _examples(rng, weights, 36))


def _model(**overrides):
    return models.get_model("mlp", num_classes=4, hidden_sizes=(16,), **overrides)


def _single_run(model, optimizer, seed, data, epochs):
    """The reference: create_train_state + the train step ``fit`` builds (``make_train_step()``: compiled
    with the same options as the population's programs) on the member's batches, one after another."""
    init_key, train_key, data_key = member_keys(seed)
    state = create_train_state(model, INPUT_SHAPE, optimizer, init_key)
    step_fn = make_train_step()
    images, labels = data.train
    for epoch in range(epochs):
        order = np.asarray(epoch_order(data_key, epoch, len(labels)))
        for step in range(len(labels) // BATCH_SIZE):
            rows = order[step * BATCH_SIZE : (step + 1) * BATCH_SIZE]
            state, _ = step_fn(state, Batch.of(images[rows], labels[rows]), train_key)
    return state


def _assert_trees_close(got, expected, **tolerance):
    jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, **tolerance), got, expected)


def test_identical_members_are_copies_of_a_single_run(data):
    model, optimizer = _model(), make_optimizer("adam", 1e-2)
    single = _single_run(model, optimizer, 0, data, epochs=2)
    for strategy in ("vmap", "loop"):
        population = create_population(model, INPUT_SHAPE, optimizer, member_grid([0, 0, 0]))
        result = fit_population(population, data, epochs=2, strategy=strategy, progress=False, evaluate_test=False)
        for i in range(3):
            member = result.population.member(i)
            jax.tree.map(np.testing.assert_array_equal, member.params, result.population.member(0).params)
            # Other programs than the single run's step (vmapped, or gathering the batch on device, which
            # XLA fuses differently): the same values up to float32 rounding.
            _assert_trees_close(member.params, single.params, rtol=1e-5, atol=1e-6)
            assert int(member.step) == int(single.step) == 2 * (NUM_TRAIN // BATCH_SIZE)


class MemberOrderSource:
    """``fit``'s BatchSource in a population member's data order: epoch e trains on
    ``epoch_order(data_key, e, n)`` in chunks of ``batch_size``, the remainder dropped."""

    def __init__(self, data, data_key):
        self.data, self.data_key = data, data_key
        self.steps_per_epoch = len(data.train[1]) // data.batch_size

    def train_batches(self, epoch):
        images, labels = self.data.train
        order = np.asarray(epoch_order(self.data_key, epoch, len(labels)))
        size = self.data.batch_size
        for step in range(self.steps_per_epoch):
            rows = order[step * size : (step + 1) * size]
            yield Batch.of(images[rows], labels[rows])

    def eval_batches(self, split):
        return self.data.eval_batches(split)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    "optimizer, learning_rate, epochs, patience",
    # SGD at 3.0 diverges from the first epoch on: patience 1 stops after epoch 2 and restores epoch 1.
    [("adam", 1e-2, 3, None), ("sgd", 3.0, 4, 1)],
    ids=["all_epochs", "early_stopping"],
)
def test_a_population_of_one_gives_fits_result(data, strategy, optimizer, learning_rate, epochs, patience):
    model, optimizer, seed = _model(dropout_rate=0.2), make_optimizer(optimizer, learning_rate), 3
    init_key, train_key, data_key = member_keys(seed)
    population = create_population(model, INPUT_SHAPE, optimizer, member_grid([seed]))
    state = create_train_state(model, INPUT_SHAPE, optimizer, init_key)
    jax.tree.map(np.testing.assert_array_equal, population.member(0).params, state.params)

    single = fit(state, MemberOrderSource(data, data_key), epochs=epochs, key=train_key, patience=patience,
                 progress=False, evaluate_test=False)
    result = fit_population(population, data, epochs=epochs, patience=patience, strategy=strategy, progress=False,
                            evaluate_test=False)
    if patience is not None:
        assert single.stopped_early and single.best_epoch == 0 and len(single.history["val_loss"]) == 2
    else:
        assert not single.stopped_early and single.best_epoch == epochs - 1
    assert int(result.best_epoch[0]) == single.best_epoch
    assert bool(result.stopped_epoch[0] >= 0) == single.stopped_early
    member = result.population.member(0)
    assert int(member.step) == int(single.state.step) == (single.best_epoch + 1) * (NUM_TRAIN // BATCH_SIZE)
    # A vmapped step and the unbatched one round differently in float32, and how much depends on the host: on
    # one 2-core AVX2 host an Adam moment of ~0.03 differed by 1.9e-6 after 2 epochs (the code before issue 20
    # too). Another data order or key moves parameters by far more than 1e-5.
    _assert_trees_close(member.params, single.state.params, rtol=1e-5, atol=1e-5)
    _assert_trees_close(member.opt_state, single.state.opt_state, rtol=1e-5, atol=1e-5)
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert result.history[name].shape == (len(single.history[name]), 1), name
        np.testing.assert_allclose(result.history[name][:, 0], single.history[name], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(result.validation["loss"], [single.history["val_loss"][single.best_epoch]], rtol=1e-5)


def test_members_with_different_learning_rates_match_separate_runs(data):
    model = _model()
    rates = [1e-3, 3e-3, 1e-2]
    population = create_population(model, INPUT_SHAPE, make_optimizer("adam", 1e-3), member_grid([0], learning_rates=rates))
    np.testing.assert_allclose(population.state.opt_state.hyperparams["learning_rate"], rates, rtol=1e-7)
    result = fit_population(population, data, epochs=2, strategy="vmap", progress=False, evaluate_test=False)
    for i, rate in enumerate(rates):
        single = _single_run(model, make_optimizer("adam", rate), 0, data, epochs=2)
        _assert_trees_close(result.population.member(i).params, single.params, rtol=1e-5, atol=1e-6)


def test_dropout_rate_and_weight_decay_are_per_member_data(data):
    members = (MemberConfig(seed=1, dropout_rate=0.0, weight_decay=0.0), MemberConfig(seed=1, dropout_rate=0.5, weight_decay=1e-2))
    population = create_population(_model(), INPUT_SHAPE, make_optimizer("sgd", 0.1), members)
    vmapped = fit_population(population, data, epochs=1, strategy="vmap", progress=False, evaluate_test=False)
    looped = fit_population(population, data, epochs=1, strategy="loop", progress=False, evaluate_test=False)
    for i, member in enumerate(members):
        single = _single_run(
            _model(dropout_rate=member.dropout_rate), make_optimizer("sgd", 0.1, weight_decay=member.weight_decay), 1, data, epochs=1
        )
        _assert_trees_close(vmapped.population.member(i).params, single.params, rtol=1e-5, atol=1e-6)
        _assert_trees_close(looped.population.member(i).params, single.params, rtol=1e-6, atol=1e-7)


def test_members_with_different_seeds_differ_in_init_and_data_order(data):
    population = create_population(_model(), INPUT_SHAPE, make_optimizer("sgd", 0.1), member_grid([0, 1]))
    assert not np.allclose(population.member(0).params["Dense_0"]["kernel"], population.member(1).params["Dense_0"]["kernel"])
    orders = [np.asarray(epoch_order(member_keys(seed)[2], 0, NUM_TRAIN)) for seed in (0, 1)]
    assert sorted(orders[0]) == list(range(NUM_TRAIN)) and not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], np.asarray(epoch_order(member_keys(0)[2], 1, NUM_TRAIN)))  # new order each epoch


def test_a_member_whose_validation_loss_rises_stops_and_keeps_its_best_parameters(data):
    # Member 1's learning rate makes SGD diverge: its validation loss rises from the first epoch on.
    members = member_grid([0], learning_rates=[0.03, 3.0])
    population = create_population(_model(), INPUT_SHAPE, make_optimizer("sgd", 0.1), members)
    result = fit_population(population, data, epochs=4, patience=1, strategy="vmap", progress=False)
    val_loss = result.history["val_loss"]
    assert val_loss.shape == (4, 2)
    assert val_loss[1, 1] > val_loss[0, 1] and np.all(np.diff(val_loss[:, 0]) < 0)
    np.testing.assert_array_equal(result.best_epoch, [3, 0])
    np.testing.assert_array_equal(result.stopped_epoch, [-1, 1])
    steps = NUM_TRAIN // BATCH_SIZE
    assert [int(result.population.member(i).step) for i in range(2)] == [4 * steps, steps]
    # The stopped member holds exactly its epoch-1 parameters; the other trained on undisturbed.
    after_one = fit_population(population, data, epochs=1, strategy="vmap", progress=False, evaluate_test=False)
    after_four = fit_population(population, data, epochs=4, strategy="vmap", progress=False, evaluate_test=False)
    jax.tree.map(np.testing.assert_array_equal, result.population.member(1).params, after_one.population.member(1).params)
    jax.tree.map(np.testing.assert_array_equal, result.population.member(0).params, after_four.population.member(0).params)
    assert result.best_member == 0
    row = result.table()[1]
    assert row["stopped_early"] and row["best_epoch"] == 1 and row["learning_rate"] == 3.0


def test_ensemble_predicts_the_mean_softmax_of_its_members(data):
    population = create_population(_model(), INPUT_SHAPE, make_optimizer("adam", 1e-2), member_grid([0, 1, 2]))
    population = fit_population(population, data, epochs=1, strategy="vmap", progress=False, evaluate_test=False).population
    images, labels = data.test
    logits = np.stack([np.asarray(population.member(i).apply_fn(population.member(i).variables, images, train=False)) for i in range(3)])
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    expected = probabilities.mean(0)
    np.testing.assert_allclose(ensemble_predict(population, jnp.asarray(images)), expected, rtol=1e-5, atol=1e-6)

    result = evaluate_population(population, data.eval_batches("test"))
    assert result["count"] == len(labels)
    np.testing.assert_allclose(result["ensemble_accuracy"], np.mean(expected.argmax(-1) == labels))
    np.testing.assert_allclose(result["ensemble_loss"], -np.mean(np.log(expected[np.arange(len(labels)), labels])), rtol=1e-5)
    np.testing.assert_allclose(result["accuracy"], np.mean(logits.argmax(-1) == labels, axis=1))
    loop = evaluate_population(population, data.eval_batches("test"), strategy="loop")
    np.testing.assert_allclose(loop["loss"], result["loss"], rtol=1e-5)


def test_population_step_compiles_once_and_keeps_the_contract(data):
    members = member_grid([0, 1], dropout_rates=[0.1, 0.3])
    population = create_population(_model(dropout_rate=0.1), INPUT_SHAPE, make_optimizer("adam", 1e-3), members)
    step = jax.jit(chex.assert_max_traces(_population_train_step, n=1), static_argnames="step")
    images, labels = (jnp.asarray(a) for a in data.train)
    orders = jnp.stack([epoch_order(member_keys(m.seed)[2], 0, NUM_TRAIN) for m in members])
    keys = jnp.stack([member_keys(m.seed)[1] for m in members])
    for s in range(3):
        batch = gather_member_batches(images, labels, orders, jnp.int32(s), BATCH_SIZE)
        chex.assert_shape(batch.images, (4, BATCH_SIZE, *INPUT_SHAPE))
        # A fresh, equal step every call: still one trace.
        population, metrics = step(population, batch, keys, step=make_train_step())
        chex.assert_shape((metrics["loss"], metrics["accuracy"]), (4,))
    assert population.dropout_rate.tolist() == pytest.approx([0.1, 0.1, 0.3, 0.3])


def test_auto_strategy_times_both_and_trains_like_the_one_it_picks(data):
    # On CPU "auto" runs a few steps of each strategy and throws them away (the steps are pure).
    population = create_population(_model(), INPUT_SHAPE, make_optimizer("sgd", 0.1), member_grid([0, 1]))
    auto = fit_population(population, data, epochs=1, strategy="auto", progress=False, evaluate_test=False)
    assert auto.strategy in STRATEGIES
    chosen = fit_population(population, data, epochs=1, strategy=auto.strategy, progress=False, evaluate_test=False)
    jax.tree.map(np.testing.assert_array_equal, auto.population.state.params, chosen.population.state.params)
    assert [int(auto.population.member(i).step) for i in range(2)] == [NUM_TRAIN // BATCH_SIZE] * 2


def test_member_grid_varies_seeds_fastest():
    grid = member_grid([0, 1], learning_rates=[1e-3, 1e-2])
    assert [(m.learning_rate, m.seed) for m in grid] == [(1e-3, 0), (1e-3, 1), (1e-2, 0), (1e-2, 1)]
    assert grid[0].describe() == {"seed": 0, "learning_rate": 1e-3}


def test_invalid_populations_say_how_to_fix():
    with pytest.raises(ValueError, match="at least one seed"):
        member_grid([])
    with pytest.raises(ValueError, match="no dropout_rate field"):
        create_population(models.get_model("perceptron", num_classes=4), INPUT_SHAPE, make_optimizer("sgd", 0.1), member_grid([0], dropout_rates=[0.5]))
    with pytest.raises(ValueError, match="inject_hyperparams"):
        create_population(_model(), INPUT_SHAPE, optax.sgd(0.1), member_grid([0], learning_rates=[0.1, 0.2]))


def test_sweep_command_prints_a_table_and_writes_json(tmp_path, capsys):
    from jaxvision.cli import sweep

    parser = argparse.ArgumentParser()
    sweep.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["sweep", "--model", "mlp", "--dataset", "digits", "--seeds", "2", "--learning-rates", "1e-3,1e-2", "--epochs", "1",
         "--batch-size", "64", "--strategy", "vmap", "--no-progress", "--output-dir", str(tmp_path)]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "ensemble of 4" in out and "learning_rate" in out
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert len(summary["members"]) == 4 and summary["strategy"] == "vmap"
    assert {m["learning_rate"] for m in summary["members"]} == {1e-3, 1e-2}
    # 1 epoch at lr 1e-2 on digits already beats chance (0.1) by far: measured 0.92-0.93 for those
    # members, 0.73-0.76 at 1e-3, and 0.94 for the ensemble of all four.
    assert max(m["test_accuracy"] for m in summary["members"]) > 0.8
    assert summary["ensemble"]["test_accuracy"] > 0.8


def test_sweep_rejects_a_bad_list_with_a_fix():
    from jaxvision.cli import sweep

    parser = argparse.ArgumentParser()
    sweep.add_parser(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep", "--learning-rates", "1e-3,-1"])


@pytest.mark.slow
def test_sweep_on_real_mnist(tmp_path, mnist_dir):
    from jaxvision.cli import sweep

    parser = argparse.ArgumentParser()
    sweep.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["sweep", "--model", "mlp", "--dataset", "mnist", "--data-dir", mnist_dir, "--seeds", "2", "--epochs", "1", "--no-progress",
         "--output-dir", str(tmp_path)]
    )
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert all(m["test_accuracy"] > 0.9 for m in summary["members"])
    assert summary["ensemble"]["test_accuracy"] > 0.9


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_population_programs_compile_with_the_step_options(data, monkeypatch, strategy):
    # An option XLA does not know, chosen for this network, must fail every population program's compile.
    monkeypatch.setattr(backend_compile, "compiler_options", lambda model, *, has_batch_norm: {"xla_cpu_no_such_option": True})
    population = create_population(_model(), INPUT_SHAPE, make_optimizer("sgd", 0.1), member_grid([0, 1]))
    with pytest.raises(Exception, match="xla_cpu_no_such_option"):
        fit_population(population, data, epochs=1, strategy=strategy, progress=False, evaluate_test=False)
    with pytest.raises(Exception, match="xla_cpu_no_such_option"):
        evaluate_population(population, data.eval_batches("validation"), strategy=strategy)
