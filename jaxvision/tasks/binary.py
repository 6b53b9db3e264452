"""Binary classification ("is there a circle?"): one sigmoid output, binary cross-entropy, accuracy and ROC AUC."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class BinaryTask:
    """One logit per image; the positive class is label 1.

    Attributes:
      class_names: (negative, positive) names, e.g. ("no circle", "circle").
      threshold: probability at or above which an image is called positive.
    """

    class_names: tuple[str, str] = ("negative", "positive")
    threshold: float = 0.5

    name = "binary"
    score_name = "accuracy"
    target_kind = "none"

    @property
    def num_outputs(self) -> int:
        return 1

    def check_targets(self, targets: np.ndarray, where: str) -> np.ndarray:
        targets = np.asarray(targets)
        values = np.unique(targets)
        if targets.ndim != 1 or not np.all(np.isin(values, (0, 1))):
            raise ValueError(f"Invalid binary targets in {where}: values {values[:5].tolist()} of shape {targets.shape}; "
                             "expected one 0/1 label per image (use --task classify for more classes)")
        return targets.astype(np.float32)

    def loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """[batch] sigmoid binary cross-entropy of logits [batch, 1] against 0/1 targets [batch]."""
        return optax.sigmoid_binary_cross_entropy(outputs[:, 0], targets.astype(jnp.float32))

    def score(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        positive = jax.nn.sigmoid(outputs[:, 0]) >= self.threshold
        return (positive == (targets > 0.5)).astype(jnp.float32)

    def summarize(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Per-batch pieces of the test metrics (real examples only)."""
        return {"probability": np.asarray(jax.nn.sigmoid(outputs[:, 0])), "target": np.asarray(targets)}

    def metrics(self, parts: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
        """accuracy, ROC AUC (scikit-learn's), precision, recall and F1 at ``threshold``."""
        from sklearn import metrics as sk

        probability = np.concatenate([p["probability"] for p in parts])
        target = np.concatenate([p["target"] for p in parts]).astype(np.int64)
        predicted = (probability >= self.threshold).astype(np.int64)
        both = len(np.unique(target)) == 2
        return {
            "accuracy": float(np.mean(predicted == target)),
            "auc": float(sk.roc_auc_score(target, probability)) if both else None,
            "precision": float(sk.precision_score(target, predicted, zero_division=0)),
            "recall": float(sk.recall_score(target, predicted, zero_division=0)),
            "f1": float(sk.f1_score(target, predicted, zero_division=0)),
            "positives": int(target.sum()),
            "count": int(len(target)),
        }

    def decode(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        """Per image: the positive class's probability and the call at ``threshold``."""
        probability = np.asarray(jax.nn.sigmoid(jnp.asarray(outputs[:, 0])))
        return [{"probability": float(p), "label": self.class_names[int(p >= self.threshold)]} for p in probability]

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "class_names": list(self.class_names), "threshold": self.threshold}
