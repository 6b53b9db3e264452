"""``jaxvision train``: train a model on a dataset, print test accuracy, write history and metrics."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import jax
import numpy as np

from jaxvision import jsonio
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
    parser.add_argument("--image-size", type=arguments.image_size, default=None, metavar="H[,W]",
                        help="resize every image to H x W (default: the dataset's own size; for an image folder, "
                             "the most common size of its training images)")
    parser.add_argument("--resize", choices=("stretch", "center-crop", "pad"), default="stretch",
                        help="image folders: how --image-size is reached (default: stretch)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="image folders: 1 (grey) or 3 (RGB) (default: 1 if every training image is grey, else 3)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="image folders: skip (and count) images that cannot be decoded, instead of stopping")
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
        image_size=args.image_size,
        resize=args.resize,
        channels=args.channels,
        skip_bad_images=args.skip_bad_images,
    )


def first_line(command: str, meta, steps_per_epoch: int) -> str:
    """What trains on what: the split sizes, the image shape (and how its size was chosen), the classes."""
    chosen = (meta.preprocessing or {}).get("image_size_chosen")
    size = f" ({chosen})" if chosen else ""
    return (f"{command} on {meta.name}: {meta.num_train} train / {meta.num_validation} validation / {meta.num_test} "
            f"test images {meta.image_shape}{size}, {meta.num_classes} classes, {steps_per_epoch} steps per epoch")


def describe_data(meta) -> list[str]:
    """The lines that say how the images were prepared and how many of each class every split has."""
    preprocessing = meta.preprocessing or {}
    lines = []
    if preprocessing.get("channels_chosen"):
        lines.append(f"channels: {preprocessing.get('channels', meta.image_shape[-1])} ({preprocessing['channels_chosen']})")
    if meta.skipped_files or meta.bad_images:
        lines.append(f"skipped {meta.skipped_files} non-image file(s) and {len(meta.bad_images)} undecodable image(s)"
                     + (f": {', '.join(meta.bad_images[:5])}" + (" ..." if len(meta.bad_images) > 5 else "")
                        if meta.bad_images else ""))
    for split, counts in (meta.class_counts or {}).items():
        if len(counts) <= 20:
            lines.append(f"{split}: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
        else:
            values = list(counts.values())
            lines.append(f"{split}: {len(counts)} classes, {min(values)} to {max(values)} images each")
    return lines


# Exit statuses besides 0 (success) and 2 (bad input); SIGINT and SIGTERM give 130 and 143.
EXIT_DIVERGED = 3
# What a resumed run must share with the run it continues (names of `jaxvision train` options).
RESUME_SETTINGS = ("model", "dataset", "epochs", "batch_size", "eval_batch_size", "optimizer", "learning_rate",
                   "schedule", "weight_decay", "momentum", "loss", "dropout_rate", "activation", "validation_fraction",
                   "image_size", "resize", "channels", "skip_bad_images",
                   "patience", "kernels", "seed", "augment", "first_seed", "seeds", "learning_rates",
                   "weight_decays", "dropout_rates", "strategy")


def add_durability_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``train`` and ``sweep`` share for checkpoints, resuming and logs."""
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its latest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --output-dir")
    parser.add_argument("--checkpoint-every", type=arguments.positive_int, default=None, metavar="STEPS",
                        help="also checkpoint every STEPS steps (a checkpoint follows every epoch anyway)")
    parser.add_argument("--checkpoint-minutes", type=arguments.positive_float, default=None, metavar="MINUTES",
                        help="also checkpoint when MINUTES have passed since the last checkpoint")
    parser.add_argument("--keep-checkpoints", type=arguments.positive_int, default=2, metavar="K",
                        help="keep the latest K checkpoints, plus the best by validation loss (default: 2)")
    parser.add_argument("--log-every", type=arguments.positive_int, default=50, metavar="STEPS",
                        help="a line in metrics.jsonl and TensorBoard every STEPS steps (default: 50)")


def resume_settings(args: argparse.Namespace) -> dict:
    """The options a resumed run must share with the run it continues."""
    return {name: getattr(args, name) for name in RESUME_SETTINGS if hasattr(args, name)}


def default_output_dir(args: argparse.Namespace, prefix: str = "") -> str:
    return os.path.join("runs", f"{prefix}{args.model}_{os.path.basename(os.path.normpath(args.dataset))}")


def open_run_directory(args: argparse.Namespace, default: str):
    """Checks, locks and (on --resume) compares the output folder, before any data is loaded.

    Returns:
      (the RunDirectory, the run.json being resumed or None).
    """
    from jaxvision.run_checkpoints import describe_setting_differences
    from jaxvision.run_directory import prepare_run_directory
    from jaxvision.run_record import read_run_file

    run_dir = prepare_run_directory(args.output_dir or default, resume=args.resume, overwrite=args.overwrite)
    if not run_dir.resumed:
        return run_dir, None
    previous = read_run_file(run_dir.path)
    differences = describe_setting_differences(previous.get("settings", {}), resume_settings(args))
    if differences:
        run_dir.release()
        raise ValueError(
            f"cannot resume {run_dir.path}: its settings differ: {differences}; rerun with the run's settings (its "
            "run.json has them), or pass --overwrite to start afresh"
        )
    return run_dir, previous


def stopped(stop: Exception, run_dir, record: dict, *, command: str, diverged: str = "") -> int:
    """Records an interrupted or diverged run in its run.json, prints its one line, returns the exit status.

    Args:
      stop: the ``TrainingInterrupted`` or ``TrainingDiverged`` that ended training.
      run_dir: the run's RunDirectory.
      record: the run.json being written.
      command: "train" or "sweep", for the line.
      diverged: words put before a divergence's message (a sweep's "every member diverged; the first: ").
    """
    from jaxvision.fit import TrainingInterrupted
    from jaxvision.interrupts import EXIT_STATUS
    from jaxvision.run_record import write_run_file

    if isinstance(stop, TrainingInterrupted):
        write_run_file(run_dir.path, {**record, "status": "interrupted", "interrupted_at_step": stop.step})
        print(f"interrupted at epoch {stop.epoch + 1}, step {stop.step}; resume with: {resume_command()}", file=sys.stderr)
        return EXIT_STATUS.get(stop.signal, 130)
    write_run_file(run_dir.path, {**record, "status": "diverged", "diverged_at_step": stop.step})
    print(f"jaxvision {command}: error: {diverged}{stop}", file=sys.stderr)
    return EXIT_DIVERGED


def in_run_directory(args: argparse.Namespace, default: str, body) -> int:
    """Runs ``body(run_dir, previous)`` in the checked, locked output folder, and releases it after."""
    run_dir, previous = open_run_directory(args, default)
    try:
        return body(run_dir, previous)
    finally:
        run_dir.release()  # the kernel would at exit; an in-process caller may retry at once


def resume_command() -> str:
    """This command line with --resume (and without --overwrite)."""
    from jaxvision.run_record import command_line

    words = [w for w in shlex.split(command_line()) if w != "--overwrite"]
    return shlex.join(words if "--resume" in words else [*words, "--resume"])


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (offline default: an MLP on scikit-learn's digits)",
        description="Train a model on a TFDS dataset and report its test accuracy.",
        epilog=f"Exit status: 0 trained; 2 bad input; {EXIT_DIVERGED} diverged (non-finite loss or gradient); "
               "130 Ctrl-C and 143 SIGTERM (saved: resume with --resume).",
    )
    add_training_arguments(parser)
    parser.add_argument("--seed", type=arguments.seed, default=0, help="seeds initialisation, dropout and shuffling (0 to 2**32 - 1)")
    parser.add_argument("--output-dir", default=None, help="the run folder (default: runs/<model>_<dataset>)")
    add_durability_arguments(parser)
    parser.add_argument(
        "--augment",
        type=arguments.spec,
        default=None,
        metavar="SPEC",
        help="on-device augmentation, e.g. flip,crop:4,rotate:15 (see `jaxvision augment-preview --help` for the ops)",
    )
    parser.add_argument(
        "--tta", type=arguments.spec, default=None, metavar="VIEWS", help="also report test accuracy with test-time augmentation: 2, 10, 30, 150 or e.g. flip,crops:5"
    )
    parser.set_defaults(func=run)


def learning_rate_at(args: argparse.Namespace, total_steps: int):
    """The learning rate at a step of the run, for the training log."""
    from jaxvision.optimizers import make_schedule

    shape = make_schedule(args.schedule, total_steps)
    return lambda step: args.learning_rate * float(shape(step))


def run(args: argparse.Namespace) -> int:
    from jaxvision import augment, models

    start = time.perf_counter()
    overrides = {k: v for k, v in (("dropout_rate", args.dropout_rate), ("activation", args.activation)) if v is not None}
    # Validate names, specs and the output folder before loading any data.
    models.get_model(args.model, kernels=args.kernels, **overrides)
    if args.augment:
        augment.parse_augment_spec(args.augment, num_classes=2)
    if args.tta:
        augment.count_views(args.tta)
    return in_run_directory(args, default_output_dir(args),
                            lambda run_dir, previous: _run_in(args, run_dir, previous, start, overrides))


def _run_in(args: argparse.Namespace, run_dir, previous, start: float, overrides: dict) -> int:
    from jaxvision import augment, backends, models, visualize
    from jaxvision.fit import TrainingDiverged, TrainingInterrupted, fit
    from jaxvision.input_size import check_input_size
    from jaxvision.optimizers import make_optimizer
    from jaxvision.run_record import command_line, save_model, versions, write_run_file
    from jaxvision.train import create_train_state

    if previous is not None and previous.get("status") == "complete":
        print(f"the run in {run_dir.path} is complete: nothing to resume (jaxvision.load_run reads it)")
        return 0
    splits = load_training_data(args, seed=args.seed)
    meta = splits.meta
    model_arguments = {"num_classes": meta.num_classes, **overrides}
    model = models.get_model(args.model, kernels=args.kernels, **model_arguments)
    check_input_size(model, args.model, meta.image_shape)  # before anything compiles
    total_steps = args.epochs * splits.steps_per_epoch
    optimizer = make_optimizer(
        args.optimizer,
        args.learning_rate,
        total_steps=total_steps,
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
    record = {
        "status": "running",
        "command": command_line(),
        "model": {"name": args.model, "arguments": model_arguments},
        "num_classes": meta.num_classes,
        "class_names": list(meta.class_names),
        "input_shape": list(meta.image_shape),
        "dataset": {"name": meta.name, "train": meta.num_train, "validation": meta.num_validation, "test": meta.num_test,
                    "validation_fraction": args.validation_fraction},
        "normalization": {"mean": list(meta.mean), "std": list(meta.std), "scale": "pixels / 255, then (x - mean) / std"},
        "preprocessing": meta.preprocessing,
        "class_counts": meta.class_counts,
        "skipped_files": meta.skipped_files,
        "bad_images": list(meta.bad_images),
        "optimizer": {"name": args.optimizer, "learning_rate": args.learning_rate, "schedule": args.schedule,
                      "total_steps": total_steps, "weight_decay": args.weight_decay, "momentum": args.momentum},
        "training": {"epochs": args.epochs, "batch_size": splits.batch_size, "steps_per_epoch": splits.steps_per_epoch,
                     "loss": args.loss, "patience": args.patience, "augment": args.augment, "kernels": args.kernels},
        "seeds": {"seed": args.seed, "init_and_train": "jax.random.split(jax.random.key(seed))", "shuffle": args.seed},
        "versions": versions(),
        "backend": jax.default_backend(),
        "settings": resume_settings(args),
    }
    run_dir.started = True  # from here on the folder holds this run
    write_run_file(run_dir.path, record)
    print(first_line(args.model, meta, splits.steps_per_epoch))
    for line in describe_data(meta):
        print(line)
    try:
        result = fit(
            state, splits, epochs=args.epochs, key=train_key, loss=args.loss, augment=pipeline, patience=args.patience,
            progress=not args.no_progress, checkpoint_dir=run_dir.file("checkpoints"), resume=run_dir.resumed,
            checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
            keep_checkpoints=args.keep_checkpoints, log_dir=run_dir.path, log_every=args.log_every,
            learning_rate=learning_rate_at(args, total_steps), settings=resume_settings(args),
        )
    except (TrainingInterrupted, TrainingDiverged) as stop:
        return stopped(stop, run_dir, record, command="train")
    tta = None
    if args.tta:
        mode = pipeline.fill_mode if pipeline is not None else "constant"
        tta = augment.evaluate_tta(result.state, splits.eval_batches("test"), views=args.tta, mode=mode)
    seconds = time.perf_counter() - start

    saves = result.checkpoint_seconds
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
        "checkpoint_saves": len(saves),
        "checkpoint_save_seconds_median": float(np.median(saves)) if saves else None,
        "checkpoint_save_seconds_max": float(np.max(saves)) if saves else None,
        "augment": pipeline.spec if pipeline is not None else None,
        "tta_test_accuracy": tta["accuracy"] if tta else None,
        "wall_seconds": seconds,
        "backend": jax.default_backend(),
        "kernels": backends.resolve_kernels(args.kernels),
        "arguments": {k: v for k, v in vars(args).items() if k != "func"},
    }
    jsonio.write_json(run_dir.file("history.json"), result.history)
    jsonio.write_json(run_dir.file("metrics.json"), metrics)
    visualize.plot_history(result.history, run_dir.file("history.png"))
    save_model(run_dir.path, result.state.variables)
    write_run_file(run_dir.path, {**record, "status": "complete", "result": {
        "test_accuracy": result.test["accuracy"], "test_loss": result.test["loss"], "best_epoch": result.best_epoch + 1,
        "epochs_run": metrics["epochs_run"]}})
    if tta:
        print(f"test accuracy with test-time augmentation ({args.tta}): {tta['accuracy']:.4f}")
    print(
        f"test accuracy: {result.test['accuracy']:.4f} ({int(result.test['count'])} images), test loss {result.test['loss']:.4f}"
        f" | trained at {result.train_images_per_second:,.0f} images/s | {seconds:.1f}s in all | wrote {run_dir.path}"
    )
    return 0
