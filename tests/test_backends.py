"""The backend seam: every zoo model on both kernel sets, same values, same transforms, same NaNs."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

import jaxvision
from jaxvision import backends, models

DATA = os.path.join(os.path.dirname(__file__), "data")
# Every CNN of the zoo at a small input (ImageNet ones at the smallest input their layout takes).
ZOO_CNNS = {
    "lenet5": (28, 28, 1), "simple_cnn": (28, 28, 1), "mnist_cnn": (28, 28, 1), "resnet20": (32, 32, 3),
    "vgg11_cifar": (32, 32, 3), "vgg11_bn_cifar": (32, 32, 3), "alexnet_cifar": (32, 32, 3), "resnet18": (64, 64, 3),
    "convnet": (32, 32, 3), "unet_small": (32, 32, 3),
}


def _variables(model, shape, batch=3):
    x = jax.random.normal(jax.random.key(0), (batch, *shape))
    return x, model.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x, train=False)


def test_no_model_file_holds_backend_code():
    root = os.path.join(os.path.dirname(jaxvision.__file__), "models")
    for name in os.listdir(root):
        if name.endswith(".py"):
            text = open(os.path.join(root, name)).read()
            for word in ("custom_vjp", "custom_jvp", "default_backend", "xla_cpu"):
                assert word not in text, f"{name} contains {word}"


def test_auto_takes_the_cpu_kernels_on_cpu_and_names_are_checked():
    assert backends.resolve_kernels("auto") == ("cpu" if jax.default_backend() == "cpu" else "reference")
    assert backends.kernels_of(models.get_model("lenet5", kernels="cpu")) == "cpu"
    assert backends.kernels_of(models.get_model("resnet20", kernels="reference")) == "reference"
    assert backends.kernels_of(models.get_model("mlp")) is None
    with pytest.raises(ValueError, match=r"Unknown kernels 'gpu'\. Known: auto, cpu, reference"):
        models.get_model("lenet5", kernels="gpu")


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("name", sorted(ZOO_CNNS))
def test_cpu_kernels_compute_the_reference_values_and_gradients(name):
    # In float64, so that the comparison is of the arithmetic, not of float32 rounding (which
    # train-mode batch norm on a small batch amplifies through a deep network).
    with jax.enable_x64(True):
        reference, cpu = (models.get_model(name, kernels=k, dtype=jnp.float64, param_dtype=jnp.float64)
                          for k in ("reference", "cpu"))
        x = jax.random.normal(jax.random.key(0), (4, *ZOO_CNNS[name]), jnp.float64)
        variables = reference.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x, train=False)

        def loss(model):
            def f(params):
                logits, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"],
                                        rngs={"dropout": jax.random.key(3)})
                return jnp.sum(jnp.sin(logits))
            return jax.jit(jax.value_and_grad(f))(variables["params"])

        ours, theirs = loss(cpu), loss(reference)
        assert jax.tree.leaves(ours)[0].dtype == jnp.float64
        chex.assert_trees_all_close(ours, theirs, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ZOO_CNNS))
def test_jvp_and_hessian_vector_products_run_through_every_cnn_with_the_default_kernels(name):
    model = models.get_model(name)  # kernels="auto": the CPU kernels on a CPU
    x, variables = _variables(model, ZOO_CNNS[name])
    tangent = jax.tree.map(lambda p: jax.random.normal(jax.random.key(4), p.shape), variables["params"])

    def logits(params):
        return model.apply({**variables, "params": params}, x, train=False)

    out, out_dot = jax.jit(lambda p, t: jax.jvp(logits, (p,), (t,)))(variables["params"], tangent)
    chex.assert_shape(out_dot, out.shape)
    # The oracle: JAX's own rules through flax's reference layers, on the same variables.
    reference = models.get_model(name, kernels="reference")

    def reference_logits(params):
        return reference.apply({**variables, "params": params}, x, train=False)

    expected = jax.jit(lambda p, t: jax.jvp(reference_logits, (p,), (t,)))(variables["params"], tangent)
    chex.assert_trees_all_close((out, out_dot), expected, rtol=1e-3, atol=1e-3 * float(jnp.abs(expected[1]).max()))
    hvp = jax.jit(lambda p, t: jax.jvp(jax.grad(lambda q: jnp.sum(logits(q) ** 2)), (p,), (t,))[1])
    chex.assert_tree_all_finite(hvp(variables["params"], tangent))


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
@pytest.mark.parametrize("name", sorted(ZOO_CNNS))
def test_a_nan_pixel_poisons_exactly_its_own_examples_logits(name, kernels):
    model = models.get_model(name, kernels=kernels)
    x, variables = _variables(model, ZOO_CNNS[name])
    poisoned = np.array(x)
    poisoned[1, ZOO_CNNS[name][0] // 2, 3, 0] = np.nan
    # Op by op, as flax's reference ops compute it: NaN in example 1's logits, nowhere else.
    logits = np.asarray(model.apply(variables, jnp.asarray(poisoned), train=False))
    assert np.isnan(logits[1]).all()
    assert np.isfinite(logits[[0, 2]]).all()
    if not variables.get("batch_stats"):  # batch norm's batch statistics mix examples in training
        train_logits = np.asarray(model.apply(variables, jnp.asarray(poisoned), train=True,
                                              rngs={"dropout": jax.random.key(5)}))
        assert np.isfinite(train_logits[[0, 2]]).all() and not np.isfinite(train_logits[1]).all()


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("name", sorted(ZOO_CNNS))
def test_jitted_cpu_kernels_keep_a_nan_that_jitted_flax_layers_may_drop(name):
    # Under jit XLA:CPU's vectorised reductions (nn.max_pool's reduce_window among them) drop a NaN on
    # larger maps, so with flax's own layers a NaN pixel can leave its example's logits finite. The CPU
    # kernels' max pool takes elementwise maxima, which keep it: their logits are non-finite for the
    # NaN example, wherever the reference's are, and nowhere else.
    x, variables = _variables(models.get_model(name, kernels="reference"), ZOO_CNNS[name])
    poisoned = np.array(x)
    poisoned[1, ZOO_CNNS[name][0] // 2, 3, 0] = np.nan
    poisoned[2, 2, 2, 0] = np.inf

    def finite(kernels):
        model = models.get_model(name, kernels=kernels)
        outputs = np.isfinite(np.asarray(jax.jit(lambda v, a: model.apply(v, a, train=False))(variables, poisoned)))
        # Per-pixel outputs (the U-Net): which pixels a NaN reaches follows each max pool's NaN handling,
        # which images it poisons does not.
        return outputs.reshape(len(outputs), -1).all(-1) if outputs.ndim > 2 else outputs.all(-1)

    ours, reference = finite("cpu"), finite("reference")
    assert ours[0]
    assert not (ours & ~reference).any(), (ours, reference)  # non-finite wherever the reference is
    if not name.startswith("resnet"):
        assert not ours[1]
    # The ResNets pool only with flax's overlapping pool or none: there XLA:CPU's fusions drop the NaN
    # under jit with either kernel set, as with flax's own layers.


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
def test_variables_keep_the_names_and_shapes_they_had_before_the_seam(kernels):
    golden = json.load(open(os.path.join(DATA, "zoo_variable_shapes_6028a6d.json")))
    for name, entry in golden.items():
        model = models.get_model(name, num_classes=10, kernels=kernels)
        shape = tuple(entry["input_shape"])
        variables = jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                                                      jnp.zeros((1, *shape)), train=False))
        shapes = {"/".join(k): list(v.shape) for k, v in flatten_dict(dict(variables)).items()}
        assert shapes == entry["variables"], name


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
def test_a_checkpoint_saved_before_the_seam_restores_and_predicts_the_same(kernels):
    model = models.get_model("lenet5", kernels=kernels)
    like = jaxvision.create_train_state(model, (28, 28, 1), jaxvision.make_optimizer("adam", 1e-3), jax.random.key(9))
    state = jaxvision.restore_checkpoint(os.path.join(DATA, "lenet5_checkpoint_6028a6d", "step_1"), like)
    assert int(state.step) == 1
    x = jax.random.normal(jax.random.key(3), (4, 28, 28, 1))
    expected = np.load(os.path.join(DATA, "lenet5_checkpoint_6028a6d_logits.npy"))
    np.testing.assert_allclose(jaxvision.predict(state, x), expected, rtol=1e-5, atol=1e-5)
