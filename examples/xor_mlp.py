"""XOR: a single perceptron cannot separate it, a small ReLU MLP can.

With ``--output`` (default runs/xor_mlp.png) it also draws each model's learned decision surface: the
probability of class 1 over the plane, the 0.5 boundary and the four points. The perceptron's
boundary is one straight line, which cannot put (0, 1) and (1, 0) on one side and (0, 0) and (1, 1)
on the other; the MLP's bends around them.

    python examples/xor_mlp.py
    python examples/xor_mlp.py --steps 300 --output xor.png
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

import jaxvision
from jaxvision import Batch

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
LABELS = np.array([0, 1, 1, 0])


def train(model_name: str, loss: str, num_classes: int, steps: int = 500, **overrides) -> tuple[float, jaxvision.TrainState]:
    """Full-batch Adam on the four XOR points; returns the training accuracy and the trained state."""
    model = jaxvision.get_model(model_name, num_classes=num_classes, **overrides)
    state = jaxvision.create_train_state(model, (2,), jaxvision.make_optimizer("adam", 0.05), jax.random.key(0))
    train_step, eval_step = jaxvision.make_train_step(loss=loss), jaxvision.make_eval_step(loss=loss)
    batch = Batch.of(INPUTS, LABELS)
    for _ in range(steps):
        state, metrics = train_step(state, batch, jax.random.key(1))
    return float(eval_step(state, batch)["correct"]) / len(LABELS), state


def class_one_probability(state: jaxvision.TrainState, points: np.ndarray) -> np.ndarray:
    """P(class 1) at ``points`` [n, 2]: the sigmoid of a single logit, or softmax's second entry."""
    logits = np.asarray(jaxvision.predict(state, points), np.float64)
    if logits.shape[-1] == 1:
        return 1 / (1 + np.exp(-logits[:, 0]))
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted[:, 1] / shifted.sum(-1)


def plot_decision_surfaces(states: dict[str, jaxvision.TrainState], accuracies: dict[str, float], path: str) -> None:
    """Saves one panel per model: P(class 1) over [-0.5, 1.5]^2, the 0.5 boundary and the XOR points."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    axis_values = np.linspace(-0.5, 1.5, 201, dtype=np.float32)
    grid_x, grid_y = np.meshgrid(axis_values, axis_values)
    points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)
    figure, axes = plt.subplots(1, len(states), figsize=(5 * len(states), 4.2), squeeze=False, layout="constrained")
    for axis, (name, state) in zip(axes[0], states.items()):
        probability = class_one_probability(state, points).reshape(grid_x.shape)
        filled = axis.contourf(grid_x, grid_y, probability, levels=np.linspace(0, 1, 11), cmap="coolwarm", vmin=0, vmax=1)
        axis.contour(grid_x, grid_y, probability, levels=[0.5], colors="black", linewidths=2)
        for label, marker in ((0, "o"), (1, "s")):
            chosen = LABELS == label
            axis.scatter(INPUTS[chosen, 0], INPUTS[chosen, 1], marker=marker, s=160, c="white", edgecolors="black", linewidths=2, label=f"class {label}", zorder=3)
        axis.set_title(f"{name}: {accuracies[name]:.0%} of the 4 points")
        axis.set_xlabel("x1")
        axis.set_ylabel("x2")
        axis.set_aspect("equal")
        axis.legend(loc="center", fontsize=8, framealpha=0.9)  # the middle is free of points
    figure.colorbar(filled, ax=axes[0].tolist(), label="P(class 1)", shrink=0.9)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(steps: int = 500, output: str | None = None) -> dict[str, float]:
    """Trains both models; prints and returns their accuracies, and draws their surfaces to ``output`` if given."""
    runs = {
        "perceptron": train("perceptron", "binary_cross_entropy", num_classes=1, steps=steps),
        "mlp 2-8-2 relu": train("mlp", "cross_entropy", num_classes=2, steps=steps, hidden_sizes=(8,)),
    }
    results = {name: accuracy for name, (accuracy, _) in runs.items()}
    for name, accuracy in results.items():
        print(f"{name:>15}: {accuracy:.0%} of XOR's 4 points")
    if output is not None:
        plot_decision_surfaces({name: state for name, (_, state) in runs.items()}, results, output)
        print(f"decision surfaces -> {output}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500, help="full-batch Adam steps per model")
    parser.add_argument("--output", default=os.path.join("runs", "xor_mlp.png"), help="PNG of the decision surfaces")
    args = parser.parse_args()
    main(args.steps, args.output)
