"""XOR: a single perceptron cannot separate it, a small ReLU MLP can.

    python examples/xor_mlp.py
"""

import jax
import numpy as np

import jaxvision
from jaxvision import Batch

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
LABELS = np.array([0, 1, 1, 0])


def train(model_name: str, loss: str, num_classes: int, steps: int = 500, **overrides) -> float:
    """Full-batch Adam on the four XOR points; returns the training accuracy."""
    model = jaxvision.get_model(model_name, num_classes=num_classes, **overrides)
    state = jaxvision.create_train_state(model, (2,), jaxvision.make_optimizer("adam", 0.05), jax.random.key(0), loss=loss)
    batch = Batch.of(INPUTS, LABELS)
    for _ in range(steps):
        state, metrics = jaxvision.train_step(state, batch, jax.random.key(1))
    return float(jaxvision.eval_step(state, batch)["correct"]) / len(LABELS)


def main(steps: int = 500) -> dict[str, float]:
    results = {
        "perceptron": train("perceptron", "binary_cross_entropy", num_classes=1, steps=steps),
        "mlp 2-8-2 relu": train("mlp", "cross_entropy", num_classes=2, steps=steps, hidden_sizes=(8,)),
    }
    for name, accuracy in results.items():
        print(f"{name:>15}: {accuracy:.0%} of XOR's 4 points")
    return results


if __name__ == "__main__":
    main()
