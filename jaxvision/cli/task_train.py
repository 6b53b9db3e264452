"""``jaxvision train --task binary|regress|segment|detect``: the train command for every task besides classification.

It shares ``train``'s run folder, checkpoints, resume, divergence guard and logs (``jaxvision.fit``), and writes the
task's test figures to metrics.json as ``test_<metric>`` (``test_auc``, ``test_r2``, ``test_miou``, ``test_map50``...),
its per-class tables, and pictures of predictions on test images.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from jaxvision import jsonio

def check_task_arguments(args: argparse.Namespace, overrides: dict) -> None:
    """Everything about the options that can be refused before any data is read, one line each."""
    from jaxvision import augment, models

    refused = [(flag, getattr(args, name)) for flag, name in (("--weights", "weights"), ("--tta", "tta"),
                                                                ("--cache-features", "cache_features"))
               if getattr(args, name, None)]
    if args.label_smoothing:
        refused.append(("--label-smoothing", args.label_smoothing))
    if refused:
        flag, value = refused[0]
        raise ValueError(f"Invalid {flag} {value!r} with --task {args.task}: it applies to --task classify only; drop it")
    if not args.model.startswith("unet"):
        models.get_model(args.model, kernels=args.kernels, **overrides)
    elif args.task != "segment":
        raise ValueError(f"Invalid --model unet for --task {args.task}: the U-Net is a segmentation network; pick a zoo "
                         "model, e.g. --model resnet20")
    if args.augment:
        pipeline = augment.parse_augment_spec(args.augment, num_classes=2)
        augment.refuse_mixing(pipeline, args.task)
        if args.task == "regress":
            moving = [n for n, m in pipeline.ops if augment.OPS[n].kind == "geometric" and m > 0 and n not in ("flip", "flip_vertical")]
            if moving:
                raise ValueError(f"Invalid --augment item {moving[0]!r} for --task regress: it can change sizes and counts "
                                 "the targets measure; keep to flips and colour ops (e.g. flip,jitter:0.2)")


def _task_factory(args: argparse.Namespace):
    from jaxvision.tasks import make_task

    def make(class_names, train_targets, image_shape):
        names = tuple(class_names)
        return make_task(args.task, names, train_targets, image_shape, target_names=names,
                         loss=args.regression_loss)
    return make


def _pictures(task, state, splits, directory: str) -> str | None:
    """Predictions on the first test images beside their truth (masks overlaid, boxes with class and score)."""
    from jaxvision.cli.task_outputs import PICTURE_IMAGES, picture
    from jaxvision.tasks.evaluation import task_outputs

    if task.name not in ("segment", "detect"):
        return None
    count = min(PICTURE_IMAGES, len(splits.images["test"]))
    outputs = task_outputs(state.apply_fn, state.eval_variables, splits.images["test"][:count], batch_size=count)
    truths = jax.tree.map(lambda t: np.asarray(t)[:count], splits.targets["test"])
    if task.name == "detect":
        truths = [{"boxes": b[v], "classes": c[v]} for b, c, v in zip(truths["boxes"], truths["classes"], truths["valid"])]
    title = "test images: truth | prediction" if task.name == "segment" else "test images: predictions (truth dashed)"
    return picture(task, splits.raw["test"][:count], task.decode(outputs), f"{directory}/predictions.png",
                   truths=truths, title=title)


def per_class_table(task, figures: dict) -> str | None:
    if task.name == "segment":
        rows = [(name, figures["per_class_iou"][name], figures["per_class_dice"][name]) for name in task.class_names]
        header = f"{'class':<16}{'IoU':>8}{'Dice':>8}"
        lines = [f"{n:<16}{'-' if i is None else f'{i:.4f}':>8}{'-' if d is None else f'{d:.4f}':>8}" for n, i, d in rows]
        return "\n".join([header, *lines, f"{'mean':<16}{figures['miou']:>8.4f}{figures['mean_dice']:>8.4f}"])
    if task.name == "detect":
        header = f"{'class':<16}{'AP@0.5':>8}{'AP':>8}"
        lines = [f"{n:<16}{figures['per_class_ap50'].get(n, float('nan')):>8.4f}{figures['per_class_ap'].get(n, float('nan')):>8.4f}"
                 for n in task.class_names]
        return "\n".join([header, *lines, f"{'mean':<16}{figures['map50']:>8.4f}{figures['map']:>8.4f}"])
    return None


def run_task(args: argparse.Namespace, run_dir, previous, start: float, overrides: dict) -> int:
    from jaxvision import augment, backends, visualize
    from jaxvision.cli.train import describe_data, first_line, learning_rate_at, resume_settings, stopped
    from jaxvision.fit import TrainingDiverged, TrainingInterrupted, fit
    from jaxvision.optimizers import make_optimizer
    from jaxvision.run_record import command_line, save_model, versions, write_run_file
    from jaxvision.tasks import HEADLINES, build_model
    from jaxvision.tasks.data import load_task_splits
    from jaxvision.tasks.evaluation import evaluate_task
    from jaxvision.train import create_train_state

    if previous is not None and previous.get("status") == "complete":
        print(f"the run in {run_dir.path} is complete: nothing to resume (jaxvision.load_run reads it)")
        return 0
    splits, task = load_task_splits(
        args.task, args.dataset, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
        validation_fraction=args.validation_fraction, seed=args.seed, image_size=args.image_size, target=args.target,
        channels=args.channels or 3, data_dir=args.data_dir, make_task=_task_factory(args), progress=not args.no_progress)
    meta = splits.meta
    model = build_model(task, args.model, meta.image_shape, kernels=args.kernels, **overrides)
    total_steps = args.epochs * splits.steps_per_epoch
    optimizer = make_optimizer(args.optimizer, args.learning_rate, total_steps=total_steps, schedule=args.schedule,
                               weight_decay=args.weight_decay, momentum=args.momentum, clip_grad_norm=args.clip_grad_norm,
                               accumulate_steps=args.accumulate_steps)
    init_key, train_key = jax.random.split(jax.random.key(args.seed))
    pipeline = None
    if args.augment:
        plain = augment.parse_augment_spec(args.augment, num_classes=max(meta.num_classes, 2), mean=meta.mean, std=meta.std)
        pipeline = augment.TargetAugment(plain, task.target_kind)
    state = create_train_state(model, meta.image_shape, optimizer, init_key)
    record = {
        "status": "running",
        "command": command_line(),
        "task": task.record(),
        "model": {"name": args.model, "arguments": overrides, "built_by": "jaxvision.tasks.build_model"},
        "num_classes": meta.num_classes,
        "class_names": list(meta.class_names),
        "input_shape": list(meta.image_shape),
        "dataset": {"name": meta.name, "train": meta.num_train, "validation": meta.num_validation, "test": meta.num_test,
                    "validation_fraction": args.validation_fraction, "target": args.target},
        "normalization": {"mean": list(meta.mean), "std": list(meta.std), "scale": "pixels / 255, then (x - mean) / std"},
        "preprocessing": meta.preprocessing,
        "optimizer": {"name": args.optimizer, "learning_rate": args.learning_rate, "schedule": args.schedule,
                      "total_steps": total_steps, "weight_decay": args.weight_decay, "momentum": args.momentum},
        "training": {"epochs": args.epochs, "batch_size": splits.batch_size, "steps_per_epoch": splits.steps_per_epoch,
                     "loss": f"{task.name}: " + ("mse/mae/huber: " + task.loss_name if task.name == "regress" else
                                                 {"binary": "sigmoid cross-entropy", "segment": "cross-entropy + soft Dice",
                                                  "detect": "focal heat map + L1 size/offset + GIoU"}[task.name]),
                     "score": task.score_name, "patience": args.patience, "augment": args.augment, "kernels": args.kernels,
                     "clip_grad_norm": args.clip_grad_norm, "ema_decay": args.ema_decay,
                     "accumulate_steps": args.accumulate_steps},
        "seeds": {"seed": args.seed, "init_and_train": "jax.random.split(jax.random.key(seed))", "shuffle": args.seed},
        "versions": versions(),
        "backend": jax.default_backend(),
        "settings": resume_settings(args),
    }
    run_dir.started = True
    write_run_file(run_dir.path, record)
    print(first_line(f"{args.model} ({args.task})", meta, splits.steps_per_epoch))
    for line in describe_data(meta):
        print(line)
    print(f"the progress bar's acc is the task's {task.score_name}")
    try:
        result = fit(
            state, splits, epochs=args.epochs, key=train_key, loss=task.loss, score=task.score, augment=pipeline,
            patience=args.patience, progress=not args.no_progress, checkpoint_dir=run_dir.file("checkpoints"),
            resume=run_dir.resumed, checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
            keep_checkpoints=args.keep_checkpoints, log_dir=run_dir.path, log_every=args.log_every,
            learning_rate=learning_rate_at(args, total_steps), settings=resume_settings(args), ema_decay=args.ema_decay,
        )
    except (TrainingInterrupted, TrainingDiverged) as stop:
        return stopped(stop, run_dir, record, command="train")
    figures = evaluate_task(task, result.state.apply_fn, result.state.eval_variables, splits, "test")
    seconds = time.perf_counter() - start
    headline = {f"test_{name}": figures.get(name) for name in HEADLINES[task.name]}
    metrics = {
        "task": task.name,
        "model": args.model,
        "dataset": meta.name,
        **headline,
        "test_loss": result.test["loss"],
        # The progress bar's score, where it is not a headline already (binary's accuracy is).
        **({} if f"test_{task.score_name}" in headline else {f"test_{task.score_name}": result.test["accuracy"]}),
        "test_examples": int(result.test["count"]),
        "test": figures,
        "best_epoch": result.best_epoch + 1,
        "epochs_run": len(result.history["train_loss"]),
        "stopped_early": result.stopped_early,
        "train_images_per_second": result.train_images_per_second,
        "augment": pipeline.spec if pipeline is not None else None,
        "wall_seconds": seconds,
        "backend": jax.default_backend(),
        "kernels": backends.resolve_kernels(args.kernels),
        "arguments": {k: v for k, v in vars(args).items() if k != "func"},
    }
    jsonio.write_json(run_dir.file("history.json"), result.history)
    jsonio.write_json(run_dir.file("metrics.json"), metrics)
    visualize.plot_history(result.history, run_dir.file("history.png"))
    table = per_class_table(task, figures)
    if table:
        with open(run_dir.file("per_class.txt"), "w") as f:
            f.write(table + "\n")
        print(table)
    picture = _pictures(task, result.state, splits, run_dir.path)
    save_model(run_dir.path, result.state.eval_variables)
    write_run_file(run_dir.path, {**record, "status": "complete", "result": {
        **headline, "test_loss": result.test["loss"], "best_epoch": result.best_epoch + 1, "epochs_run": metrics["epochs_run"]}})
    shown = ", ".join(f"{k} {v:.4f}" for k, v in headline.items() if v is not None)
    print(f"{shown} ({int(result.test['count'])} test images) | trained at {result.train_images_per_second:,.0f} images/s"
          f" | {seconds:.1f}s in all | wrote {run_dir.path}" + (f" (pictures: {picture})" if picture else ""))
    return 0
