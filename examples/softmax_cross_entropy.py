"""Softmax cross-entropy by hand: the loss -log p of the true class, and its gradient checked against jax.grad.

For a linear classifier with scores ``s = W x``, ``p = softmax(s)`` and one-hot label ``y``, the loss is
``L = -log p_y`` and its gradient is ``dL/dW = (softmax(W x) - y) x^T``: the predicted probabilities
minus the truth, times the input. Also: PyTorch's ``NLLLoss`` on ``log_softmax`` outputs (jaxvision's
``--loss nll``) is the same number.

    python examples/softmax_cross_entropy.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxvision

PROBABILITIES = (0.0, 0.1, 0.9, 1.0)


def negative_log(probability: float) -> float:
    """-log p, the loss when the true class gets probability p: inf at 0 (certain and wrong), 0 at 1."""
    # jnp: log(0) = -inf without NumPy's warning; + 0.0 turns -log(1) = -0.0 into 0.0.
    return float(-jnp.log(jnp.float32(probability))) + 0.0


def analytic_gradient(weights: np.ndarray, x: np.ndarray, label: int) -> np.ndarray:
    """``(softmax(W x) - y) x^T`` [num_classes, num_features], in NumPy."""
    scores = weights @ x
    probabilities = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    return np.outer(probabilities - np.eye(len(scores))[label], x)


def main(seed: int = 0, num_classes: int = 3, num_features: int = 4) -> dict[str, object]:
    """Prints -log p for a few p, then compares the hand gradient with jax.grad on a random W and x."""
    values = {p: negative_log(p) for p in PROBABILITIES}
    print("-log p of the true class:")
    for p, value in values.items():
        print(f"  p = {p:<3g} -> {value:.4g}")

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(num_classes, num_features)).astype(np.float32)
    x = rng.normal(size=num_features).astype(np.float32)
    label = int(rng.integers(num_classes))

    def loss(w: jax.Array) -> jax.Array:  # jaxvision's cross-entropy takes [batch, classes] logits
        return jaxvision.cross_entropy((w @ x)[None], jnp.array([label]))[0]

    by_hand = analytic_gradient(weights, x, label)
    by_jax = np.asarray(jax.grad(loss)(jnp.asarray(weights)))
    difference = float(np.abs(by_hand - by_jax).max())
    np.set_printoptions(precision=4, suppress=True)
    print(f"\nW {weights.shape}, x {x.shape}, label {label}: loss {float(loss(weights)):.4f}")
    print(f"(softmax(Wx) - y) x^T =\n{by_hand}\njax.grad =\n{by_jax}\nlargest difference: {difference:.1e}")

    logits = jnp.asarray(weights @ x)[None]
    nll = float(jaxvision.get_loss("nll")(jax.nn.log_softmax(logits), jnp.array([label]))[0])
    print(f"\nnll(log_softmax(Wx)) = {nll:.6f} = cross_entropy(Wx) = {float(loss(weights)):.6f}")
    return {"negative_log": values, "max_abs_difference": difference, "nll": nll, "cross_entropy": float(loss(weights))}


if __name__ == "__main__":
    main()
