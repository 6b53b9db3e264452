"""The one compile path: which XLA options a network's steps get, and that they reach XLA."""

import chex
import jax
import pytest

from jaxvision import Batch, create_train_state, get_model, make_optimizer, make_train_step, train_step
from jaxvision.backends import compile as compile_module
from jaxvision.backends.compile import LEGACY_CPU_EMITTERS, compile_step, initialization_compiler_options, step_compiler_options

ON_CPU = jax.default_backend() == "cpu"


def _state(name, shape, kernels="auto", **overrides):
    model = get_model(name, num_classes=3, kernels=kernels, **overrides)
    return create_train_state(model, shape, make_optimizer("sgd", 0.1), jax.random.key(0))


@pytest.mark.cpu_kernels
@pytest.mark.skipif(not ON_CPU, reason="the legacy emitters are XLA:CPU's")
def test_cpu_layers_without_batch_norm_take_the_legacy_emitters_and_everything_else_xla_defaults():
    assert step_compiler_options(_state("lenet5", (28, 28, 1))) == LEGACY_CPU_EMITTERS
    assert step_compiler_options(_state("resnet20", (32, 32, 3))) == {}
    assert step_compiler_options(_state("lenet5", (28, 28, 1), kernels="reference")) == {}
    assert step_compiler_options(_state("mlp", (8, 8, 1))) == LEGACY_CPU_EMITTERS  # nothing to inject: the platform's
    assert initialization_compiler_options(get_model("lenet5")) == {**compile_module.INIT_COMPILER_OPTIONS, **LEGACY_CPU_EMITTERS}
    assert initialization_compiler_options(get_model("lenet5", kernels="reference")) == compile_module.INIT_COMPILER_OPTIONS


def test_other_backends_keep_xla_defaults(monkeypatch):
    state = _state("lenet5", (28, 28, 1), kernels="cpu")
    monkeypatch.setattr(compile_module.jax, "default_backend", lambda: "gpu")
    assert step_compiler_options(state) == {}


def test_compile_step_shares_one_function_per_options_and_takes_overrides():
    state = _state("lenet5", (28, 28, 1))
    assert make_train_step() == make_train_step() and hash(make_train_step()) == hash(make_train_step())
    assert compile_step(train_step.unjitted, state) is compile_step(train_step.unjitted, state)
    assert (compile_step(train_step.unjitted, state, compiler_options={}) is not compile_step(train_step.unjitted, state)
            or not ON_CPU)


@pytest.mark.skipif(not ON_CPU, reason="the option is XLA:CPU's")
def test_the_options_reach_xla():
    state = _state("lenet5", (28, 28, 1), kernels="cpu")
    batch = Batch.of(jax.numpy.zeros((2, 28, 28, 1)), jax.numpy.array([0, 1]))
    jitted = compile_step(train_step.unjitted, state)
    text = jitted.lower(state, batch, jax.random.key(0)).compile().as_text()
    default = jax.jit(train_step.unjitted).lower(state, batch, jax.random.key(0)).compile().as_text()
    assert text != default  # the legacy emitters generate other code
    bogus = make_train_step(compiler_options={"xla_no_such_option": True})
    with pytest.raises(Exception, match="xla_no_such_option"):
        bogus(state, batch, jax.random.key(0))


def test_explicit_xla_defaults_compute_what_the_chosen_options_compute():
    state = _state("lenet5", (28, 28, 1))
    batch = Batch.of(jax.random.normal(jax.random.key(1), (4, 28, 28, 1)), jax.numpy.array([0, 1, 2, 0]))
    chosen = train_step(state, batch, jax.random.key(2))
    defaults = make_train_step(compiler_options={})(state, batch, jax.random.key(2))
    chex.assert_trees_all_close(chosen, defaults, rtol=1e-5, atol=1e-6)
