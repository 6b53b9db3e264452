"""Model variables drawn by NumPy, shared by the zoo tests.

Drawing with NumPy keeps the tests from compiling a JAX random-number generator per model (seconds each
on a small CPU), and gives batch norm non-trivial scales and statistics so eval-mode checks mean something.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def numpy_variables(model, input_shape, seed=0):
    """Variables of ``model``'s shapes: He-scaled kernels, small random biases and batch-norm means,
    and scales and variances in [0.5, 1.5]."""
    abstract = jax.eval_shape(
        lambda x: model.init(jax.random.key(0), x), jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    )
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            values = rng.normal(size=leaf.shape) * np.sqrt(2.0 / math.prod(leaf.shape[:-1]))
        elif name in ("scale", "var"):
            values = rng.uniform(0.5, 1.5, size=leaf.shape)
        else:  # bias, mean
            values = rng.normal(size=leaf.shape) * 0.1
        return np.asarray(values).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)
