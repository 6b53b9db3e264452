"""The activations sigmoid, tanh, ReLU, leaky ReLU (0.1), ELU and maxout, plotted with their derivatives.

The derivatives come from ``jax.grad``, not from formulas, and the printed values can be checked by hand:
sigmoid'(0) = 1/4 (so a deep stack of sigmoids shrinks gradients at least 4x per layer), tanh'(0) = 1,
ReLU' is 0 for every negative input (a "dead" unit learns nothing), leaky ReLU keeps 0.1 of it, and
ELU(-1) = e^-1 - 1 = -0.632 with ELU'(-1) = e^-1 = 0.368. Maxout is not a fixed function but a layer:
the max of k learned linear pieces, so it can take the shape of ReLU, leaky ReLU, |x| or, as drawn
here, any convex piecewise-linear function. ``jaxvision train --activation maxout`` uses it in the MLP.

    python examples/activation_functions.py --output activations.png
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxvision
from jaxvision.models import ACTIVATIONS, Maxout

NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "elu")
# One maxout unit of 3 pieces, max(-x - 1, x / 4, x - 1/2), with its weights set by hand rather than learned.
MAXOUT_SLOPES = (-1.0, 0.25, 1.0)
MAXOUT_OFFSETS = (-1.0, 0.0, -0.5)
POINTS = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)  # away from the kinks at 0, where a derivative is a convention


def maxout_unit(x: jax.Array) -> jax.Array:
    """The ``Maxout(features=1, pieces=3)`` layer on scalar inputs, with ``MAXOUT_SLOPES`` and ``MAXOUT_OFFSETS``."""
    params = {"Dense_0": {"kernel": jnp.array([MAXOUT_SLOPES]), "bias": jnp.array(MAXOUT_OFFSETS)}}
    return Maxout(features=1, pieces=len(MAXOUT_SLOPES)).apply({"params": params}, jnp.reshape(x, (1, 1)))[0, 0]


def functions() -> dict[str, Callable[[jax.Array], jax.Array]]:
    """Name -> scalar function, jaxvision's own activations and the maxout unit."""
    return {**{name: ACTIVATIONS[name] for name in NAMES}, "maxout": maxout_unit}


def mlp_parameter_count(activation: str) -> int:
    """Parameters of the 3-4-2 MLP with ``activation``: 26 for an elementwise one."""
    model = jaxvision.get_model("mlp", num_classes=2, hidden_sizes=(4,), activation=activation)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 3)))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables))


def main(output: str | None = None, num_points: int = 401) -> dict[str, dict[str, list[float]]]:
    """Prints each activation and its derivative at ``POINTS``; plots both over [-3, 3] to ``output`` if given."""
    table = {}
    print(f"{'':>10}  " + "  ".join(f"x={x:<+5g}" for x in POINTS))
    for name, function in functions().items():
        derivative = jax.vmap(jax.grad(function))
        values = jax.vmap(function)(jnp.array(POINTS))
        slopes = derivative(jnp.array(POINTS))
        table[name] = {"value": values.tolist(), "derivative": slopes.tolist()}
        print(f"{name:>10}  " + "  ".join(f"{v:>+7.3f}" for v in values.tolist()))
        print(f"{'d/dx':>10}  " + "  ".join(f"{d:>+7.3f}" for d in slopes.tolist()))
    print(f"at 0: sigmoid' = {float(jax.grad(ACTIVATIONS['sigmoid'])(0.0)):.2f}, tanh' = {float(jax.grad(jnp.tanh)(0.0)):.2f}")
    print(f"3-4-2 MLP parameters: relu {mlp_parameter_count('relu')}, maxout {mlp_parameter_count('maxout')} (2 pieces: twice the hidden weights)")

    if output is not None:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt

        x = jnp.linspace(-3.0, 3.0, num_points)
        figure, axes = plt.subplots(2, 3, figsize=(12, 6.5), layout="constrained")
        for axis, (name, function) in zip(axes.flat, functions().items()):
            axis.plot(x, jax.vmap(function)(x), label=name, linewidth=2)
            axis.plot(x, jax.vmap(jax.grad(function))(x), "--", label=f"d/dx {name}", linewidth=2)
            axis.axhline(0, color="gray", linewidth=0.5)
            axis.axvline(0, color="gray", linewidth=0.5)
            title = "maxout: max(-x - 1, x/4, x - 1/2)" if name == "maxout" else name.replace("leaky_relu", "leaky ReLU (0.1)")
            axis.set_title(title)
            axis.set_ylim(-1.6, 3.1)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8, loc="upper left")
        directory = os.path.dirname(output)
        if directory:
            os.makedirs(directory, exist_ok=True)
        figure.savefig(output, dpi=100)
        plt.close(figure)
        print(f"activations and derivatives -> {output}")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join("runs", "activations.png"), help="PNG of the activations and derivatives")
    main(parser.parse_args().output)
