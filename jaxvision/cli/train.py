"""``jaxvision train``: train a model on a dataset, print test accuracy, write history and metrics."""

from __future__ import annotations

import argparse
import json
import os
import time

import jax

from jaxvision.cli import arguments
from jaxvision.losses import LOSSES
from jaxvision.optimizers import OPTIMIZERS, SCHEDULES


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``train`` and ``sweep`` share: model, data, optimiser, schedule, regularisation."""
    parser.add_argument("--model", default="mlp", help="model name, see jaxvision.list_models() (default: mlp)")
    parser.add_argument("--dataset", default="digits", help="TFDS name, or digits (default, offline)")
    parser.add_argument("--epochs", type=arguments.positive_int, default=20)
    parser.add_argument("--batch-size", type=arguments.positive_int, default=64, help="training batch size; >= the training set size is full-batch gradient descent")
    parser.add_argument("--eval-batch-size", type=arguments.positive_int, default=1000)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--learning-rate", type=arguments.positive_float, default=3e-3)
    parser.add_argument("--schedule", choices=SCHEDULES, default="onecycle")
    parser.add_argument("--weight-decay", type=arguments.non_negative_float, default=0.0)
    parser.add_argument("--momentum", type=arguments.non_negative_float, default=0.9)
    parser.add_argument("--loss", choices=sorted(LOSSES), default="cross_entropy")
    parser.add_argument("--dropout-rate", type=arguments.dropout_rate, default=None, help="overrides the model's dropout rate")
    parser.add_argument("--activation", default=None, help="overrides the model's activation (relu, tanh, elu, ...)")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--validation-fraction", type=arguments.open_fraction, default=0.1)
    parser.add_argument("--patience", type=arguments.positive_int, default=None, help="early-stopping patience in epochs (default: off)")
    parser.add_argument(
        "--kernels", choices=("auto", "reference", "cpu"), default="auto",
        help="layers and compile options (jaxvision.backends): 'auto' (default) takes the XLA:CPU kernels, compile "
             "options and process settings on a CPU, 'reference' flax's layers and XLA's defaults everywhere",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_training_data(args: argparse.Namespace, *, seed: int):
    """The dataset's splits as the shared options ask for them (``jaxvision.data.Splits``)."""
    from jaxvision import data

    return data.load_splits(
        args.dataset,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        validation_fraction=args.validation_fraction,
        seed=seed,
        data_dir=args.data_dir,
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (offline default: an MLP on scikit-learn's digits)",
        description="Train a model on a TFDS dataset and report its test accuracy.",
    )
    add_training_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seeds initialisation, dropout and shuffling")
    parser.add_argument("--output-dir", default=None, help="where history.json and metrics.json go (default: runs/<model>_<dataset>)")
    parser.add_argument(
        "--augment",
        default=None,
        metavar="SPEC",
        help="on-device augmentation, e.g. flip,crop:4,rotate:15 (see `jaxvision augment-preview --help` for the ops)",
    )
    parser.add_argument(
        "--tta", default=None, metavar="VIEWS", help="also report test accuracy with test-time augmentation: 2, 10, 30, 150 or e.g. flip,crops:5"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxvision import augment, backends, models, visualize
    from jaxvision.checkpoint import save_checkpoint
    from jaxvision.fit import fit
    from jaxvision.optimizers import make_optimizer
    from jaxvision.train import create_train_state

    start = time.perf_counter()
    overrides = {k: v for k, v in (("dropout_rate", args.dropout_rate), ("activation", args.activation)) if v is not None}
    # Validate names and specs before loading any data.
    models.get_model(args.model, kernels=args.kernels, **overrides)
    if args.augment:
        augment.parse_augment_spec(args.augment, num_classes=2)
    if args.tta:
        augment.count_views(args.tta)
    splits = load_training_data(args, seed=args.seed)
    meta = splits.meta
    model = models.get_model(args.model, num_classes=meta.num_classes, kernels=args.kernels, **overrides)
    optimizer = make_optimizer(
        args.optimizer,
        args.learning_rate,
        total_steps=args.epochs * splits.steps_per_epoch,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
    )
    init_key, train_key = jax.random.split(jax.random.key(args.seed))
    pipeline = (
        augment.parse_augment_spec(args.augment, num_classes=meta.num_classes, mean=meta.mean, std=meta.std)
        if args.augment
        else None
    )
    state = create_train_state(model, meta.image_shape, optimizer, init_key)
    print(
        f"{args.model} on {meta.name}: {meta.num_train} train / {meta.num_validation} validation / {meta.num_test} test "
        f"images {meta.image_shape}, {meta.num_classes} classes, {splits.steps_per_epoch} steps per epoch"
    )
    result = fit(state, splits, epochs=args.epochs, key=train_key, loss=args.loss, augment=pipeline,
                 patience=args.patience, progress=not args.no_progress)
    tta = None
    if args.tta:
        mode = pipeline.fill_mode if pipeline is not None else "constant"
        tta = augment.evaluate_tta(result.state, splits.eval_batches("test"), views=args.tta, mode=mode)
    seconds = time.perf_counter() - start

    output_dir = args.output_dir or os.path.join("runs", f"{args.model}_{os.path.basename(os.path.normpath(meta.name))}")
    os.makedirs(output_dir, exist_ok=True)
    metrics = {
        "model": args.model,
        "dataset": meta.name,
        "test_accuracy": result.test["accuracy"],
        "test_loss": result.test["loss"],
        "test_examples": int(result.test["count"]),
        "best_epoch": result.best_epoch + 1,
        "epochs_run": len(result.history["train_loss"]),
        "stopped_early": result.stopped_early,
        "train_images_per_second": result.train_images_per_second,
        "augment": pipeline.spec if pipeline is not None else None,
        "tta_test_accuracy": tta["accuracy"] if tta else None,
        "wall_seconds": seconds,
        "backend": jax.default_backend(),
        "kernels": backends.resolve_kernels(args.kernels),
        "arguments": {k: v for k, v in vars(args).items() if k != "func"},
    }
    with open(os.path.join(output_dir, "history.json"), "w") as f:
        json.dump(result.history, f, indent=2)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    visualize.plot_history(result.history, os.path.join(output_dir, "history.png"))
    save_checkpoint(os.path.join(output_dir, "checkpoint"), result.state)
    if tta:
        print(f"test accuracy with test-time augmentation ({args.tta}): {tta['accuracy']:.4f}")
    print(
        f"test accuracy: {result.test['accuracy']:.4f} ({int(result.test['count'])} images), test loss {result.test['loss']:.4f}"
        f" | trained at {result.train_images_per_second:,.0f} images/s | {seconds:.1f}s in all | wrote {output_dir}"
    )
    return 0
