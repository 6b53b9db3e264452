"""Per-network XLA compile options of the train and eval steps and of initialisations."""

import chex
import jax
import pytest

from jaxvision import Batch, create_train_state, eval_step, get_model, make_optimizer, train_step
from jaxvision import train as train_module
from jaxvision.step_compilation import step_compiler_options, steps_for

LEGACY = {"xla_cpu_use_fusion_emitters": False}


def make_state(name, input_shape):
    model = get_model(name, num_classes=10)
    return create_train_state(model, input_shape, make_optimizer("momentum", 0.05), jax.random.key(0))


@pytest.fixture(scope="module")
def lenet_state():
    return make_state("lenet5", (28, 28, 1))


def lenet_batch(seed=1, size=16):
    images = jax.random.normal(jax.random.key(seed), (size, 28, 28, 1))
    return Batch.of(images, jax.random.randint(jax.random.key(seed + 1), (size,), 0, 10))


def test_on_cpu_networks_without_batch_norm_take_the_legacy_emitters_and_resnets_do_not(lenet_state):
    assert jax.default_backend() == "cpu"
    assert step_compiler_options(lenet_state) == LEGACY
    assert step_compiler_options(make_state("mlp", (28, 28, 1))) == LEGACY
    resnet = make_state("resnet20", (32, 32, 3))
    assert resnet.batch_stats
    assert step_compiler_options(resnet) == {}


def test_other_backends_keep_xla_defaults(lenet_state, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert step_compiler_options(lenet_state) == {}
    assert train_module.initialization_compiler_options() == {"xla_backend_optimization_level": 0}


def test_initialisations_compile_with_the_legacy_emitters_on_cpu():
    assert train_module.initialization_compiler_options() == {"xla_backend_optimization_level": 0, **LEGACY}


def test_steps_for_computes_what_the_default_steps_compute(lenet_state):
    # LeNet-5 pools (layers.pool_2d), where the two emitters' loops differ most.
    train_fn, eval_fn = steps_for(lenet_state)
    key = jax.random.key(2)
    ours, default = lenet_state, lenet_state
    for step in range(3):
        batch = lenet_batch(seed=10 + step)
        ours, our_metrics = train_fn(ours, batch, key)
        default, default_metrics = train_step(default, batch, key)
        chex.assert_trees_all_close(our_metrics, default_metrics, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(ours.params, default.params, rtol=1e-4, atol=1e-6)
    assert int(ours.step) == 3
    batch = lenet_batch(seed=20)
    chex.assert_trees_all_close(eval_fn(ours, batch), eval_step(default, batch), rtol=1e-5, atol=1e-5)


def test_steps_for_shares_one_pair_per_option_set_and_takes_overrides(lenet_state):
    other = make_state("lenet5", (28, 28, 1))
    assert steps_for(lenet_state) is steps_for(other)
    default_pair = steps_for(lenet_state, compiler_options={})
    assert default_pair is not steps_for(lenet_state)
    assert default_pair is steps_for(make_state("resnet20", (32, 32, 3)))


def test_the_options_reach_xla(lenet_state):
    # An option XLA does not know fails the compile: proof that steps_for passes its options on.
    train_fn, _ = steps_for(lenet_state, compiler_options={"xla_cpu_no_such_option": True})
    with pytest.raises(Exception, match="xla_cpu_no_such_option"):
        train_fn(lenet_state, lenet_batch(), jax.random.key(0))



def _scaled_sum(x, *, scale):
    return scale * x.sum()


def test_jit_with_step_options_shares_one_function_per_options_and_passes_them_on(lenet_state):
    from jaxvision.step_compilation import jit_with_step_options

    other = make_state("lenet5", (28, 28, 1))
    chosen = jit_with_step_options(_scaled_sum, lenet_state, static_argnames="scale")
    assert chosen is jit_with_step_options(_scaled_sum, other, static_argnames=("scale",))
    assert chosen is not jit_with_step_options(_scaled_sum, lenet_state, static_argnames="scale", compiler_options={})
    assert float(chosen(jax.numpy.arange(4.0), scale=2.0)) == 12.0  # scale is static: a Python float works
    bogus = jit_with_step_options(_scaled_sum, lenet_state, static_argnames="scale",
                                  compiler_options={"xla_cpu_no_such_option": True})
    with pytest.raises(Exception, match="xla_cpu_no_such_option"):
        bogus(jax.numpy.arange(4.0), scale=2.0)
