"""Gradient descent on one parameter: learning the kilometres-to-miles factor from (km, miles) pairs.

The model is ``miles = factor * kilometres`` with one parameter, the loss the mean squared error over
the pairs. Each step prints the guess and its error on 100 km; three learning rates show what the
seed lecture 001 shows: too small crawls, right converges in a few steps, too large overshoots further
at every step and diverges. ``update`` is one step written out, with seed 002's numbers as its doctest.

    python examples/gradient_descent.py
    python examples/gradient_descent.py --steps 6 --learning-rates 1e-5,1.5e-4,4e-4
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

KILOMETRES_PER_MILE = 1.609344  # exact, by definition of the international mile
KILOMETRES = np.array([1.0, 10.0, 42.195, 100.0], np.float32)
MILES = KILOMETRES / np.float32(KILOMETRES_PER_MILE)
# The loss is a parabola in the factor with curvature 2 * mean(km^2) = 5,941: each step multiplies the
# distance to the answer by (1 - learning_rate * curvature), so steps converge below 2 / 5,941 = 3.4e-4
# and fastest at 1 / 5,941 = 1.7e-4. Hence (too small, right, too large):
LEARNING_RATES = (1e-5, 1.5e-4, 4e-4)
CURVATURE = float(2 * np.mean(KILOMETRES**2))


def update(parameter: float, gradient: float, *, learning_rate: float) -> float:
    """One gradient-descent step: ``parameter - learning_rate * gradient``.

    Seed 002's worked step, theta = -2 - 0.01 * (-36) = -1.64:

    >>> print(f"{update(-2.0, -36.0, learning_rate=0.01):.2f}")
    -1.64

    jaxvision's "sgd" optimiser takes the same step:

    >>> import jax.numpy as jnp, jaxvision
    >>> sgd = jaxvision.make_optimizer("sgd", 0.01)
    >>> theta = jnp.float32(-2.0)
    >>> step, _ = sgd.update(jnp.float32(-36.0), sgd.init(theta), theta)
    >>> print(f"{float(theta + step):.2f}")
    -1.64
    """
    return parameter - learning_rate * gradient


def loss(factor: jax.Array) -> jax.Array:
    """Mean squared error, in square miles, of ``miles = factor * km`` over the pairs."""
    return jnp.mean((factor * KILOMETRES - MILES) ** 2)


def descend(learning_rate: float, *, steps: int, initial: float = 0.5) -> list[float]:
    """Runs ``steps`` steps from ``initial``, printing each guess; returns the guesses, the start included."""
    gradient = jax.jit(jax.grad(loss))
    guesses = [initial]
    multiplier = 1 - learning_rate * CURVATURE
    verdict = "too large" if abs(multiplier) >= 1 else "too small" if multiplier > 0.5 else "right"
    print(f"learning rate {learning_rate:g} ({verdict}: the distance to the answer x {multiplier:+.3f} per step)")
    print("  step   factor   100 km ->   error (miles)      loss")
    for step in range(steps + 1):
        factor = guesses[-1]
        prediction = factor * 100.0
        error = 100.0 / KILOMETRES_PER_MILE - prediction  # what is left to learn, as the slides write it
        print(f"  {step:>4}  {factor:>7.4f}  {prediction:>9.2f}  {error:>+14.2f}  {float(loss(factor)):>9.2e}")
        if step < steps:
            guesses.append(update(factor, float(gradient(jnp.float32(factor))), learning_rate=learning_rate))
    return guesses


def main(steps: int = 8, learning_rates: tuple[float, ...] = LEARNING_RATES) -> dict[float, list[float]]:
    """Descends once per learning rate; returns each one's guesses."""
    print(f"pairs (km -> miles): {', '.join(f'{k:g} -> {m:.3f}' for k, m in zip(KILOMETRES, MILES))}")
    print(f"the answer: 1 / {KILOMETRES_PER_MILE} = {1 / KILOMETRES_PER_MILE:.6f} miles per km\n")
    results = {}
    for learning_rate in learning_rates:
        results[learning_rate] = descend(learning_rate, steps=steps)
        final_error = abs(results[learning_rate][-1] - 1 / KILOMETRES_PER_MILE)
        verdict = "diverged" if final_error > abs(results[learning_rate][0] - 1 / KILOMETRES_PER_MILE) else f"off by {final_error:.2g}"
        print(f"  after {steps} steps: factor {results[learning_rate][-1]:.4f} ({verdict})\n")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--learning-rates", type=lambda text: tuple(float(part) for part in text.split(",")), default=LEARNING_RATES,
        help="comma-separated, e.g. 1e-5,1.5e-4,4e-4 (too small, right, too large)",
    )
    args = parser.parse_args()
    main(args.steps, args.learning_rates)
