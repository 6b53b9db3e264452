"""``jaxvision sweep``: train a population (seeds x hyperparameters) at once, report every member and
their ensemble, and write the table to JSON."""

from __future__ import annotations

import argparse
import time

import jax

from jaxvision import jsonio
from jaxvision.cli import arguments
from jaxvision.cli.train import (
    add_durability_arguments,
    add_training_arguments,
    default_output_dir,
    in_run_directory,
    learning_rate_at,
    load_training_data,
    resume_settings,
    stopped,
)
from jaxvision.population import STRATEGIES


def _float_list(kind):
    """An argparse type for comma-separated numbers, each checked by ``kind``, e.g. ``1e-3,3e-3``."""

    def parse(text: str) -> list[float]:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or not all(parts):
            raise argparse.ArgumentTypeError(
                f"invalid list {text!r}: expected comma-separated numbers without empty items, e.g. 1e-3,3e-3,1e-2"
            )
        return [kind(p) for p in parts]

    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train a population of models (seeds x hyperparameters) at once with vmap",
        description=(
            "Train N members that differ by seed and/or learning rate, weight decay and dropout rate as one "
            "vmapped program; print each member's validation/test results and their ensemble's (mean softmax)."
        ),
    )
    add_training_arguments(parser)  # --patience is per member here
    parser.add_argument("--seeds", type=arguments.positive_int, default=4, help="number of seeds, 0..N-1 (default: 4)")
    parser.add_argument("--first-seed", type=arguments.seed, default=0, help="seeds are first-seed .. first-seed+N-1")
    parser.add_argument("--learning-rates", type=_float_list(arguments.positive_float), default=None, help="comma-separated, e.g. 1e-3,3e-3,1e-2")
    parser.add_argument("--weight-decays", type=_float_list(arguments.non_negative_float), default=None, help="comma-separated, e.g. 0,1e-4")
    parser.add_argument("--dropout-rates", type=_float_list(arguments.dropout_rate), default=None, help="comma-separated, e.g. 0,0.25,0.5")
    parser.add_argument(
        "--strategy",
        choices=(*STRATEGIES, "auto"),
        default="auto",
        help="vmap: one batched program; loop: one member after another through the same jitted step; auto: vmap off CPU, the faster of the two on CPU (default)",
    )
    parser.add_argument(
        "--compare-sequential",
        action="store_true",
        help="also train each member alone with the `jaxvision train` loop, one after another, and report both wall times",
    )
    parser.add_argument("--output-dir", default=None, help="the sweep's folder (default: runs/sweep_<model>_<dataset>)")
    add_durability_arguments(parser)
    parser.set_defaults(func=run)


def _format_table(rows: list[dict], varied: list[str]) -> str:
    columns = ["member", *varied, "best_epoch", "val_loss", "val_accuracy", "test_accuracy"]
    if any(row.get("diverged_at_step") is not None for row in rows):
        columns.append("diverged_at_step")
    header = " ".join(f"{c:>14}" for c in columns)
    lines = [header]
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            if value is None:
                value = "-"
            cells.append(f"{value:>14.4f}" if isinstance(value, float) and c.startswith(("val_", "test_")) else f"{value!s:>14}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _sequential_seconds(args, splits, members, make_model, make_optimizer) -> tuple[float, list[float]]:
    """Wall time of training each member alone with ``fit``, one after another, and their test accuracies."""
    from jaxvision.fit import fit
    from jaxvision.population import member_keys
    from jaxvision.train import create_train_state

    start = time.perf_counter()
    accuracies = []
    for member in members:
        model = make_model(member.dropout_rate)
        optimizer = make_optimizer(member.learning_rate, member.weight_decay)
        init_key, train_key, _ = member_keys(member.seed)
        state = create_train_state(model, splits.meta.image_shape, optimizer, init_key)
        result = fit(state, splits, epochs=args.epochs, key=train_key, loss=args.loss, patience=args.patience,
                     progress=False)
        accuracies.append(result.test["accuracy"])
    return time.perf_counter() - start, accuracies


def run(args: argparse.Namespace) -> int:
    from jaxvision import models

    start = time.perf_counter()
    overrides = {k: v for k, v in (("dropout_rate", args.dropout_rate), ("activation", args.activation)) if v is not None}
    models.get_model(args.model, kernels=args.kernels, **overrides)  # validate names before loading any data
    if args.dropout_rates is not None:
        models.get_model(args.model, dropout_rate=args.dropout_rates[0])  # the model must have a dropout_rate field
    if args.first_seed + args.seeds - 1 > arguments.MAX_SEED:
        raise ValueError(f"Invalid seeds {args.first_seed}..{args.first_seed + args.seeds - 1}: the last exceeds "
                         f"{arguments.MAX_SEED}; lower --first-seed or --seeds")
    return in_run_directory(args, default_output_dir(args, prefix="sweep_"),
                            lambda run_dir, previous: _run_in(args, run_dir, previous, start, overrides))


def _run_in(args: argparse.Namespace, run_dir, previous, start: float, overrides: dict) -> int:
    from jaxvision import models
    from jaxvision.ensemble import fit_population
    from jaxvision.fit import Durability, TrainingDiverged, TrainingInterrupted
    from jaxvision.input_size import check_input_size
    from jaxvision.optimizers import make_optimizer
    from jaxvision.population import create_population, member_grid
    from jaxvision.run_record import command_line, versions, write_run_file

    if previous is not None and previous.get("status") == "complete":
        print(f"the sweep in {run_dir.path} is complete: nothing to resume (its sweep.json has the results)")
        return 0
    splits = load_training_data(args, seed=args.first_seed)
    meta = splits.meta
    members = member_grid(
        range(args.first_seed, args.first_seed + args.seeds),
        learning_rates=args.learning_rates,
        weight_decays=args.weight_decays,
        dropout_rates=args.dropout_rates,
    )
    total_steps = args.epochs * splits.steps_per_epoch

    def make_model(dropout_rate=None):
        extra = {} if dropout_rate is None else {"dropout_rate": dropout_rate}
        return models.get_model(args.model, num_classes=meta.num_classes, kernels=args.kernels, **{**overrides, **extra})

    def make_member_optimizer(learning_rate=None, weight_decay=None):
        return make_optimizer(
            args.optimizer,
            learning_rate or args.learning_rate,
            total_steps=total_steps,
            schedule=args.schedule,
            weight_decay=args.weight_decay if weight_decay is None else weight_decay,
            momentum=args.momentum,
        )

    check_input_size(make_model(), args.model, meta.image_shape)  # before anything compiles
    population = create_population(make_model(), meta.image_shape, make_member_optimizer(), members)
    record = {
        "kind": "sweep",
        "status": "running",
        "command": command_line(),
        "model": {"name": args.model, "arguments": {"num_classes": meta.num_classes, **overrides}},
        "members": [m.describe() for m in members],
        "num_classes": meta.num_classes,
        "class_names": list(meta.class_names),
        "input_shape": list(meta.image_shape),
        "dataset": {"name": meta.name, "train": meta.num_train, "validation": meta.num_validation, "test": meta.num_test},
        "normalization": {"mean": list(meta.mean), "std": list(meta.std)},
        "versions": versions(),
        "backend": jax.default_backend(),
        "settings": resume_settings(args),
    }
    run_dir.started = True  # from here on the folder holds this run
    write_run_file(run_dir.path, record)
    print(
        f"sweep of {len(members)} {args.model} on {meta.name}: {meta.num_train} train / {meta.num_validation} validation / "
        f"{meta.num_test} test images, {splits.steps_per_epoch} steps per epoch"
    )
    durability = Durability(
        checkpoint_dir=run_dir.file("checkpoints"), resume=run_dir.resumed, checkpoint_every=args.checkpoint_every,
        checkpoint_minutes=args.checkpoint_minutes, keep_checkpoints=args.keep_checkpoints, log_dir=run_dir.path,
        log_every=args.log_every, learning_rate=learning_rate_at(args, total_steps),
    )
    fit_start = time.perf_counter()
    try:
        result = fit_population(
            population, splits, epochs=args.epochs, loss=args.loss, patience=args.patience, strategy=args.strategy,
            progress=not args.no_progress, durability=durability, settings=resume_settings(args),
        )
    except (TrainingInterrupted, TrainingDiverged) as stop:
        return stopped(stop, run_dir, record, command="sweep", diverged="every member diverged; the first: ")
    population_seconds = time.perf_counter() - fit_start

    rows = result.table()
    varied = [name for name in ("seed", "learning_rate", "weight_decay", "dropout_rate") if len({r.get(name) for r in rows}) > 1]
    print(_format_table(rows, varied))
    best = rows[result.best_member]
    healthy = sum(row["diverged_at_step"] is None for row in rows)
    diverged = "" if healthy == len(rows) else f" ({len(rows) - healthy} diverged, left out)"
    print(
        f"best member (lowest validation loss): #{result.best_member} (val loss {best['val_loss']:.4f}, "
        f"val accuracy {best['val_accuracy']:.4f}, test {best['test_accuracy']:.4f})"
        f" | ensemble of {healthy}{diverged}: test accuracy {result.test['ensemble_accuracy']:.4f}, "
        f"loss {result.test['ensemble_loss']:.4f}"
    )
    summary = {
        "model": args.model,
        "dataset": meta.name,
        "members": rows,
        "best_member": result.best_member,
        "ensemble": {
            "members": healthy,
            "val_accuracy": result.validation["ensemble_accuracy"],
            "val_loss": result.validation["ensemble_loss"],
            "test_accuracy": result.test["ensemble_accuracy"],
            "test_loss": result.test["ensemble_loss"],
        },
        "strategy": result.strategy,
        "population_seconds": population_seconds,
        "history": {k: v.tolist() for k, v in result.history.items()},
        "backend": jax.default_backend(),
        "arguments": {k: v for k, v in vars(args).items() if k != "func"},
    }
    print(f"population ({result.strategy}): {population_seconds:.1f}s for {len(rows)} members x {args.epochs} epochs")
    if args.compare_sequential:
        sequential, accuracies = _sequential_seconds(args, splits, members, make_model, make_member_optimizer)
        summary["sequential_seconds"] = sequential
        summary["sequential_test_accuracies"] = accuracies
        summary["sequential_over_population"] = sequential / population_seconds
        print(
            f"sequential ({len(rows)} runs of the train loop): {sequential:.1f}s | population is "
            f"{sequential / population_seconds:.2f}x the speed of the sequential runs"
        )
    summary["wall_seconds"] = time.perf_counter() - start

    path = run_dir.file("sweep.json")
    jsonio.write_json(path, summary)
    write_run_file(run_dir.path, {**record, "status": "complete", "result": {
        "best_member": result.best_member, "ensemble_test_accuracy": result.test["ensemble_accuracy"]}})
    print(f"wrote {path}")
    return 0
