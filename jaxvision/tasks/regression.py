"""Regression ("how large is it?"): linear outputs, targets normalised with the training split's statistics.

The network learns ``(y - mean) / std``; every metric and prediction is given back in the targets' own units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

REGRESSION_LOSSES = ("mse", "mae", "huber")


@dataclasses.dataclass(frozen=True)
class RegressionTask:
    """``len(target_names)`` linear outputs per image.

    Attributes:
      target_names: what is predicted, e.g. ("area_fraction",).
      mean, std: the training split's per-target statistics (std > 0), which normalise the targets.
      loss_name: "mse", "mae" or "huber" (Huber with delta 1, in normalised units).
    """

    target_names: tuple[str, ...] = ("target",)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    loss_name: str = "mse"

    name = "regress"
    score_name = "within_0.25sd"
    target_kind = "none"

    def __post_init__(self) -> None:
        if self.loss_name not in REGRESSION_LOSSES:
            raise ValueError(f"Invalid regression loss {self.loss_name!r}: expected one of {', '.join(REGRESSION_LOSSES)}, "
                             "e.g. --loss huber")
        if not (len(self.target_names) == len(self.mean) == len(self.std)) or min(self.std) <= 0:
            raise ValueError(f"Invalid target statistics mean={self.mean} std={self.std} for targets {self.target_names}: "
                             "expected one mean and one positive std per target")

    @property
    def num_outputs(self) -> int:
        return len(self.target_names)

    @classmethod
    def fitted(cls, train_targets: np.ndarray, target_names: Sequence[str], loss_name: str = "mse") -> RegressionTask:
        """The task with ``mean``/``std`` from the training targets [N, K] (a constant target gets std 1)."""
        values = np.asarray(train_targets, np.float64).reshape(len(train_targets), -1)
        std = values.std(0)
        std = np.where(std > 0, std, 1.0)
        return cls(tuple(target_names), tuple(float(m) for m in values.mean(0)), tuple(float(s) for s in std), loss_name)

    def check_targets(self, targets: np.ndarray, where: str) -> np.ndarray:
        targets = np.asarray(targets, np.float64).reshape(len(targets), -1)
        if targets.shape[1] != self.num_outputs or not np.all(np.isfinite(targets)):
            raise ValueError(f"Invalid regression targets in {where}: shape {targets.shape} with "
                             f"{int(np.sum(~np.isfinite(targets)))} non-finite values; expected [N, {self.num_outputs}] finite numbers")
        return ((targets - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """[batch] loss of outputs [batch, K] against normalised targets [batch, K], mean over K."""
        error = outputs - targets
        if self.loss_name == "mse":
            losses = jnp.square(error)
        elif self.loss_name == "mae":
            losses = jnp.abs(error)
        else:
            losses = optax.huber_loss(outputs, targets, delta=1.0)
        return losses.mean(-1)

    def score(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """The share of targets predicted within a quarter of their standard deviation: a progress figure."""
        return (jnp.abs(outputs - targets) <= 0.25).astype(jnp.float32).mean(-1)

    def to_units(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float64) * np.asarray(self.std) + np.asarray(self.mean)

    def summarize(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        return {"prediction": self.to_units(outputs), "target": self.to_units(targets)}

    def metrics(self, parts: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
        """MAE, RMSE and R² (scikit-learn's, uniform average over targets) in the targets' units, and per target."""
        from sklearn import metrics as sk

        prediction = np.concatenate([p["prediction"] for p in parts])
        target = np.concatenate([p["target"] for p in parts])
        result: dict[str, Any] = {
            "mae": float(sk.mean_absolute_error(target, prediction)),
            "rmse": float(np.sqrt(sk.mean_squared_error(target, prediction))),
            "r2": float(sk.r2_score(target, prediction)),
            "count": int(len(target)),
        }
        if self.num_outputs > 1:
            result["per_target"] = {
                name: {"mae": float(sk.mean_absolute_error(target[:, k], prediction[:, k])),
                       "r2": float(sk.r2_score(target[:, k], prediction[:, k]))}
                for k, name in enumerate(self.target_names)}
        return result

    def decode(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        values = self.to_units(outputs)
        return [{name: float(v) for name, v in zip(self.target_names, row)} for row in values]

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "target_names": list(self.target_names), "mean": list(self.mean),
                "std": list(self.std), "loss": self.loss_name}
