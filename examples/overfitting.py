"""Overfitting and two cures (seed 002): a too-large MLP on a small training set, then dropout, then early stopping.

A 64-1024-1024-10 MLP (1.1 million parameters) trained on 72 of scikit-learn's digits (5% of the
training split; the other 95% is the validation set) learns its training set perfectly while its
validation loss bottoms out after a few epochs and then climbs: the gap between the curves is
overfitting. Dropout (rate 0.5 after each hidden layer) gives a lower best validation loss, but left
to run it climbs too; early stopping watches the validation loss and returns the parameters of its best
epoch. Together they do best: dropout's better minimum, kept.

    python examples/overfitting.py --output overfitting.png
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

import jaxvision
from jaxvision import data

HIDDEN_SIZES = (1024, 1024)
RUNS = {
    "too large, no regularisation": {"dropout_rate": 0.0, "patience": None},
    "dropout 0.5": {"dropout_rate": 0.5, "patience": None},
    "early stopping (patience 5)": {"dropout_rate": 0.0, "patience": 5},
    "dropout 0.5 + early stopping": {"dropout_rate": 0.5, "patience": 5},
}


def train(splits: data.Splits, *, epochs: int, dropout_rate: float, patience: int | None, seed: int) -> jaxvision.FitResult:
    """Adam at 1e-3 (constant) on the splits; ``fit`` keeps the best epoch when ``patience`` is set."""
    model = jaxvision.get_model("mlp", num_classes=splits.meta.num_classes, hidden_sizes=HIDDEN_SIZES, dropout_rate=dropout_rate)
    init_key, train_key = jax.random.split(jax.random.key(seed))
    state = jaxvision.create_train_state(model, splits.meta.image_shape, jaxvision.make_optimizer("adam", 1e-3), init_key)
    return jaxvision.fit(state, splits, epochs=epochs, key=train_key, patience=patience, progress=False)


def plot_curves(results: dict[str, jaxvision.FitResult], path: str) -> None:
    """One panel per run: train and validation loss per epoch, the best validation epoch marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    columns = 2
    rows = -(-len(results) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.8 * rows), sharey=True, squeeze=False, layout="constrained")
    highest = max(max(result.history["val_loss"][1:] or result.history["val_loss"]) for result in results.values())
    for axis, (name, result) in zip(axes.flat, results.items()):
        epochs = np.arange(1, len(result.history["train_loss"]) + 1)
        axis.plot(epochs, result.history["train_loss"], "-", label="train loss")
        axis.plot(epochs, result.history["val_loss"], "-", label="validation loss")
        best = int(np.argmin(result.history["val_loss"]))
        axis.axvline(best + 1, color="gray", linestyle=":", label=f"best validation epoch ({best + 1})")
        if result.stopped_early:
            axis.axvline(len(epochs), color="black", linestyle="--", label=f"stopped ({len(epochs)}), restored {result.best_epoch + 1}")
        axis.set_title(f"{name}\ntest accuracy {result.test['accuracy']:.1%}")
        axis.set_xlabel("epoch")
        # Linear, not log: on a log scale the training loss's fall to 1e-4 flattens the validation loss's climb.
        axis.set_ylim(0, 1.25 * highest)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in axes[:, 0]:
        axis.set_ylabel("cross-entropy")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(epochs: int = 60, batch_size: int = 16, seed: int = 0, output: str | None = None) -> dict[str, jaxvision.FitResult]:
    """Trains the three runs on the same small training set; prints a line each; plots the curves to ``output``."""
    # validation_fraction=0.95 leaves 5% of digits' training split to train on, and validates on the rest.
    splits = data.load_splits("digits", batch_size=batch_size, validation_fraction=0.95, seed=seed)
    meta = splits.meta
    print(f"MLP 64-{'-'.join(map(str, HIDDEN_SIZES))}-10 on {meta.num_train} training images "
          f"({meta.num_validation} validation, {meta.num_test} test), up to {epochs} epochs")
    results = {}
    for name, settings in RUNS.items():
        result = train(splits, epochs=epochs, seed=seed, **settings)
        results[name] = result
        history = result.history
        best = int(np.argmin(history["val_loss"]))
        kept = result.best_epoch
        print(
            f"{name:>28}: train loss {history['train_loss'][kept]:.4f} acc {history['train_accuracy'][kept]:.3f} | "
            f"val loss {history['val_loss'][kept]:.3f} acc {history['val_accuracy'][kept]:.3f} "
            f"(lowest loss {history['val_loss'][best]:.3f} at epoch {best + 1}) | "
            f"test acc {result.test['accuracy']:.3f} | kept epoch {kept + 1} of {len(history['val_loss'])}"
        )
    if output is not None:
        plot_curves(results, output)
        print(f"learning curves -> {output}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.join("runs", "overfitting.png"), help="PNG of the learning curves")
    args = parser.parse_args()
    main(args.epochs, args.batch_size, args.seed, args.output)
