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
    parser.add_argument("--resize", choices=("stretch", "center-crop", "resize-crop", "pad"), default=None,
                        help="image folders: how --image-size is reached; resize-crop is torchvision's evaluation "
                             "transform (resize 256, crop 224, scaled) (default: stretch; resize-crop with "
                             "torchvision --weights)")
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
        resize=args.resize or "stretch",
        channels=args.channels,
        skip_bad_images=args.skip_bad_images,
        mean=getattr(args, "normalization_mean", None),
        std=getattr(args, "normalization_std", None),
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
                   "weight_decays", "dropout_rates", "strategy", "weights", "finetune", "backbone_lr_scale",
                   "keep_head", "cache_features", "label_smoothing", "clip_grad_norm", "ema_decay",
                   "accumulate_steps", "dtype", "task", "target", "regression_loss")


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
    settings = {name: getattr(args, name) for name in RESUME_SETTINGS if hasattr(args, name)}
    if settings.get("resize", "stretch") is None:
        settings["resize"] = "stretch"  # the default, as runs before resize-crop recorded it
    return settings


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
    add_task_arguments(parser)
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
    add_fine_tuning_arguments(parser)
    parser.set_defaults(func=run)


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """--task and its options; --model, --epochs, --batch-size and --learning-rate default per task."""
    from jaxvision.tasks import DEFAULTS, REGRESSION_LOSSES, TASKS

    defaults = "; ".join(f"{task}: {d['model']}, {d['epochs']} epochs, batch {d['batch_size']}, lr {d['learning_rate']:g}"
                         for task, d in DEFAULTS.items())
    parser.add_argument("--task", choices=TASKS, default="classify",
                        help=f"what to learn from each image (default: classify). Defaults per task: {defaults}")
    parser.add_argument("--target", default=None, metavar="FEATURE[,FEATURE]",
                        help="TFDS feature(s) to learn: regress (default: the first scalar feature, area_fraction on "
                             "shapes; e.g. count, or area_fraction,count), binary (default: has_circle or a two-class label)")
    parser.add_argument("--regression-loss", choices=REGRESSION_LOSSES, default="mse", help="--task regress: the loss")
    parser.set_defaults(model=None, epochs=None, batch_size=None, learning_rate=None, kernels=None)


def apply_task_defaults(args: argparse.Namespace) -> None:
    """Fills --model, --epochs, --batch-size and --learning-rate left out with the task's defaults."""
    from jaxvision.tasks import DEFAULTS

    for name, value in DEFAULTS[getattr(args, "task", "classify")].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def add_fine_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    """Pretrained weights, what of them trains, and the training knobs fine-tuning uses (from scratch too)."""
    group = parser.add_argument_group("pretrained weights and fine-tuning")
    group.add_argument("--weights", default=None, metavar="FILE_OR_RUN",
                       help="start from a torchvision state_dict (.pth, .pt, .safetensors, .npz; see `jaxvision "
                            "weights`) or a finished jaxvision run folder; the head is new unless --keep-head")
    group.add_argument("--finetune", type=arguments.finetune, default=None, metavar="all|linear|last:K",
                       help="with --weights: train everything (all, default), only the new head (linear), or the "
                            "last K stages or blocks and the head (last:K); frozen parts keep batch norm in "
                            "inference mode and their statistics untouched")
    group.add_argument("--backbone-lr-scale", type=arguments.positive_float, default=None, metavar="S",
                       help="with --weights: the trained backbone's learning rate is S times the head's (default 1)")
    group.add_argument("--keep-head", action="store_true",
                       help="with --weights: keep the weights' head (same number of classes) instead of a new one")
    group.add_argument("--cache-features", action="store_true",
                       help="with --finetune linear: compute each image's backbone features once, then train the "
                            "head on the cache (no augmentation, no checkpoints: it takes seconds)")
    group.add_argument("--label-smoothing", type=arguments.unit_fraction, default=0.0, metavar="S",
                       help="train on (1 - S) * one-hot + S / classes targets (softmax losses; default 0)")
    group.add_argument("--clip-grad-norm", type=arguments.positive_float, default=None, metavar="N",
                       help="clip each gradient to global L2 norm N")
    group.add_argument("--ema-decay", type=arguments.decay, default=None, metavar="D",
                       help="keep an exponential moving average of the weights (e.g. 0.999); validation, the best "
                            "state, the test and the saved model use it")
    group.add_argument("--accumulate-steps", type=arguments.positive_int, default=1, metavar="K",
                       help="average the gradients of K batches per update (an effective batch K times larger)")
    group.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                       help="compute dtype of the model (parameters stay float32; default float32)")


def check_fine_tuning_arguments(args: argparse.Namespace) -> None:
    """One line for fine-tuning options that do not fit together, before anything is read."""
    if args.label_smoothing:
        from jaxvision.losses import smoothed

        smoothed(args.loss, args.label_smoothing)
    if args.weights is None:
        for option, value in (("--finetune", args.finetune), ("--backbone-lr-scale", args.backbone_lr_scale),
                              ("--keep-head", args.keep_head or None)):
            if value is not None:
                raise ValueError(f"{option} needs --weights: pass --weights FILE_OR_RUN (a torchvision state_dict or "
                                 "a jaxvision run folder), or drop the option to train from scratch")
    if args.cache_features and args.finetune != "linear":
        raise ValueError("--cache-features needs --finetune linear (a frozen backbone computes the same features "
                         "every epoch); add --finetune linear or drop --cache-features")
    if args.cache_features and (args.augment or args.ema_decay is not None or args.accumulate_steps > 1):
        option = "--augment" if args.augment else "--ema-decay" if args.ema_decay is not None else "--accumulate-steps"
        raise ValueError(f"{option} does not apply with --cache-features (the head trains on fixed features); drop "
                         "one of them")
    if args.finetune == "linear" and args.backbone_lr_scale is not None:
        raise ValueError("--backbone-lr-scale does nothing with --finetune linear (the backbone is frozen); use "
                         "--finetune all or last:K")


def probe_on_cached_features(args: argparse.Namespace, splits, model, state, optimizer, key):
    """``--finetune linear --cache-features``: the backbone's features of every image once, then the head
    trained on them for ``--epochs`` epochs; a FitResult like ``fit``'s (the last epoch's head)."""
    import math

    from jaxvision.fit import FitResult, evaluate
    from jaxvision.train import make_eval_step, state_from_variables
    from jaxvision.transfer import cache_features, feature_extractor, install_head, train_linear_probe

    start = time.perf_counter()
    extract = feature_extractor(model, state.variables)
    train = cache_features(extract, splits.eval_batches("train"))
    validation = cache_features(extract, splits.eval_batches("validation"))
    cached = time.perf_counter() - start
    print(f"cached {len(train[0]) + len(validation[0])} images' features ({train[0].shape[1]} each) in {cached:.1f}s")
    steps = args.epochs * math.ceil(len(train[0]) / splits.batch_size)
    from jaxvision.optimizers import make_optimizer

    head_optimizer = make_optimizer(args.optimizer, args.learning_rate, total_steps=steps, schedule=args.schedule,
                                    weight_decay=args.weight_decay, momentum=args.momentum,
                                    clip_grad_norm=args.clip_grad_norm)
    head, history = train_linear_probe(*train, num_classes=splits.meta.num_classes, epochs=args.epochs,
                                       batch_size=splits.batch_size, optimizer=head_optimizer, key=key,
                                       validation=validation, progress=not args.no_progress)
    trained = state_from_variables(model, install_head(state.variables, head), optimizer)
    test = evaluate(trained, splits.eval_batches("test"), step=make_eval_step(loss=args.loss))
    seconds = time.perf_counter() - start
    for epoch in range(args.epochs):
        if epoch == args.epochs - 1 or (epoch + 1) % max(args.epochs // 5, 1) == 0:
            print(f"epoch {epoch + 1}/{args.epochs}: train loss {history['train_loss'][epoch]:.4f} acc "
                  f"{history['train_accuracy'][epoch]:.4f} | val loss {history['val_loss'][epoch]:.4f} acc "
                  f"{history['val_accuracy'][epoch]:.4f}")
    del optimizer  # the head's own optimiser trained it; the state keeps the run's for its structure
    return FitResult(state=trained, history=history, best_epoch=args.epochs - 1, stopped_early=False, test=test,
                     train_images_per_second=args.epochs * len(train[0]) / max(seconds, 1e-9))


def write_test_evaluation(state, splits, meta, directory: str):
    """The per-class table and the confusion matrix of the returned state on the test split, written
    into the run folder (``jaxvision.evaluation.write_evaluation``)."""
    from jaxvision.evaluation import write_evaluation
    from jaxvision.train import predict

    logits_of = jax.jit(predict)  # eval mode, the EMA weights if kept: what the test figures measured
    logits, labels = [], []
    for batch in splits.eval_batches("test"):
        keep = np.asarray(batch.mask) == 1
        logits.append(np.asarray(logits_of(state, batch.images), np.float32)[keep])
        labels.append(np.asarray(batch.labels)[keep])
    return write_evaluation(np.concatenate(logits), np.concatenate(labels), list(meta.class_names), directory)


def learning_rate_at(args: argparse.Namespace, total_steps: int):
    """The learning rate at a step of the run, for the training log."""
    from jaxvision.optimizers import make_schedule

    # With gradient accumulation the schedule counts updates, one every accumulate_steps steps.
    every = getattr(args, "accumulate_steps", 1)
    shape = make_schedule(args.schedule, -(-max(total_steps, 1) // every))
    return lambda step: args.learning_rate * float(shape(step // every))


def run(args: argparse.Namespace) -> int:
    from jaxvision import augment, models

    start = time.perf_counter()
    apply_task_defaults(args)
    overrides = {k: v for k, v in (("dropout_rate", args.dropout_rate), ("activation", args.activation)) if v is not None}
    if args.dtype != "float32":
        overrides["dtype"] = args.dtype  # flax takes dtype names; run.json stays JSON
    if args.task == "classify" and args.model.startswith("unet"):
        raise ValueError(f"Invalid --model {args.model} for --task classify: the U-Net gives a class per pixel; "
                         "add --task segment (or pick a classifier, e.g. --model convnet)")
    if args.task != "classify":
        from jaxvision.cli.task_train import check_task_arguments, run_task

        check_task_arguments(args, overrides)
        return in_run_directory(args, default_output_dir(args, prefix=f"{args.task}_"),
                                lambda run_dir, previous: run_task(args, run_dir, previous, start, overrides))
    # Validate names, specs, weights and the output folder before loading any data.
    models.get_model(args.model, kernels=args.kernels, **overrides)
    check_fine_tuning_arguments(args)
    if args.augment:
        augment.parse_augment_spec(args.augment, num_classes=2)
    if args.tta:
        augment.count_views(args.tta)
    weights = None
    if args.weights is not None:
        from jaxvision.finetune import read_weights

        weights = read_weights(args.weights, args.model)
        prepare_like_weights(args, weights)
    args.resize = args.resize or "stretch"
    return in_run_directory(args, default_output_dir(args),
                            lambda run_dir, previous: _run_in(args, run_dir, previous, start, overrides, weights))


def prepare_like_weights(args: argparse.Namespace, weights) -> None:
    """Prepares the images as the weights saw theirs: channels, size, resize mode and normalisation.

    An explicit --image-size or --resize wins (the weights' size is only the default); --channels must
    agree with the weights' first layer.
    """
    from jaxvision.data.pipeline import _is_folder

    if args.channels is not None and args.channels != weights.channels:
        raise ValueError(f"Invalid --channels {args.channels}: the weights in {args.weights} take {weights.channels}-channel "
                         f"images; drop --channels (images are converted to {weights.channels} channels)")
    args.channels = weights.channels
    if args.image_size is None:
        args.image_size = tuple(weights.image_size)
    if args.resize is None and _is_folder(args.dataset):
        args.resize = weights.resize
    args.normalization_mean, args.normalization_std = tuple(weights.mean), tuple(weights.std)


def _run_in(args: argparse.Namespace, run_dir, previous, start: float, overrides: dict, weights) -> int:
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
        clip_grad_norm=args.clip_grad_norm,
        accumulate_steps=args.accumulate_steps,
    )
    init_key, train_key = jax.random.split(jax.random.key(args.seed))
    pipeline = (
        augment.parse_augment_spec(args.augment, num_classes=meta.num_classes, mean=meta.mean, std=meta.std)
        if args.augment
        else None
    )
    frozen: tuple[str, ...] = ()
    if weights is not None:
        from jaxvision.finetune import fine_tune_start

        begin = fine_tune_start(model, weights, num_classes=meta.num_classes, input_shape=meta.image_shape,
                                optimizer=optimizer, key=init_key, finetune=args.finetune or "all",
                                backbone_lr_scale=args.backbone_lr_scale or 1.0, keep_head=args.keep_head)
        model, state, frozen = begin.model, begin.state, begin.frozen
    else:
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
                     "loss": args.loss, "patience": args.patience, "augment": args.augment, "kernels": args.kernels,
                     "label_smoothing": args.label_smoothing, "clip_grad_norm": args.clip_grad_norm,
                     "ema_decay": args.ema_decay, "accumulate_steps": args.accumulate_steps, "dtype": args.dtype},
        "weights": None if weights is None else {
            **weights.record(), "finetune": args.finetune or "all", "frozen": list(frozen),
            "backbone_lr_scale": args.backbone_lr_scale or 1.0, "head": "kept" if args.keep_head else "new",
            "cache_features": args.cache_features},
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
        if args.cache_features:
            result = probe_on_cached_features(args, splits, model, state, optimizer, train_key)
        else:
            result = fit(
                state, splits, epochs=args.epochs, key=train_key, loss=args.loss, augment=pipeline, patience=args.patience,
                progress=not args.no_progress, checkpoint_dir=run_dir.file("checkpoints"), resume=run_dir.resumed,
                checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
                keep_checkpoints=args.keep_checkpoints, log_dir=run_dir.path, log_every=args.log_every,
                learning_rate=learning_rate_at(args, total_steps), settings=resume_settings(args),
                label_smoothing=args.label_smoothing, frozen=frozen, ema_decay=args.ema_decay,
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
    evaluation = write_test_evaluation(result.state, splits, meta, run_dir.path)
    jsonio.write_json(run_dir.file("history.json"), result.history)
    jsonio.write_json(run_dir.file("metrics.json"), metrics)
    visualize.plot_history(result.history, run_dir.file("history.png"))
    save_model(run_dir.path, result.state.eval_variables)
    write_run_file(run_dir.path, {**record, "status": "complete", "result": {
        "test_accuracy": result.test["accuracy"], "test_loss": result.test["loss"], "best_epoch": result.best_epoch + 1,
        "epochs_run": metrics["epochs_run"]}})
    if meta.num_classes <= 20:
        print(evaluation.table())
    print(f"per-class results and the confusion matrix: {run_dir.file('per_class.txt')}, "
          f"{run_dir.file('confusion_matrix.png')}")
    if tta:
        print(f"test accuracy with test-time augmentation ({args.tta}): {tta['accuracy']:.4f}")
    print(
        f"test accuracy: {result.test['accuracy']:.4f} ({int(result.test['count'])} images), test loss {result.test['loss']:.4f}"
        f" | trained at {result.train_images_per_second:,.0f} images/s | {seconds:.1f}s in all | wrote {run_dir.path}"
    )
    return 0
