"""What a durable run costs: seconds per checkpoint save, and the step time with checkpoints and logs.

One process trains the same model on the same data for one epoch, alternating between ``fit`` with
nothing on and ``fit`` with checkpoints (after the epoch and every ``--checkpoint-every`` steps) and
the training log (metrics.jsonl + TensorBoard every ``--log-every`` steps). The step time is the
epoch's wall time (its validation, and any saves, included) over its steps, after a warm-up epoch
compiles everything.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python -m benchmarks.durability_overhead --model lenet5 --dataset mnist

Results go to ``--output`` (default ``runs/benchmarks/durability_overhead.json``), outside the source tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax

import jaxvision
from jaxvision import data, jsonio

from benchmarks.timing import machine_info


def _epoch(state, splits, key, **durability):
    """Seconds per step of one epoch (its validation and any saves included) and its save times."""
    start = time.perf_counter()
    result = jaxvision.fit(state, splits, epochs=1, key=key, progress=False, evaluate_test=False, **durability)
    return (time.perf_counter() - start) / splits.steps_per_epoch, result.checkpoint_seconds, result.checkpoint_blocking_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--checkpoint-every", type=int, default=150)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each variant, alternating")
    parser.add_argument("--output", default=os.path.join("runs", "benchmarks", "durability_overhead.json"))
    args = parser.parse_args(argv)

    splits = data.load_splits(args.dataset, batch_size=args.batch_size)
    model = jaxvision.get_model(args.model, num_classes=splits.meta.num_classes)
    optimizer = jaxvision.make_optimizer("adam", 3e-3, schedule="onecycle", total_steps=splits.steps_per_epoch)
    init_key, key = jax.random.split(jax.random.key(0))
    state = jaxvision.create_train_state(model, splits.meta.image_shape, optimizer, init_key)
    step_seconds: dict[str, list[float]] = {"plain": [], "durable": []}
    save_seconds: list[float] = []
    blocking_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        _epoch(state, splits, key)  # compiles the steps
        for repeat in range(args.repeats):
            for variant in ("plain", "durable"):
                options = {}
                if variant == "durable":
                    folder = os.path.join(scratch, f"run{repeat}")
                    options = dict(checkpoint_dir=os.path.join(folder, "checkpoints"),
                                   checkpoint_every=args.checkpoint_every, log_dir=folder, log_every=args.log_every)
                seconds, saves, blocking = _epoch(state, splits, key, **options)
                step_seconds[variant].append(seconds)
                save_seconds += saves
                blocking_seconds += blocking
                print(f"{variant:>8}: {seconds * 1e3:.2f} ms/step, {len(saves)} saves", flush=True)
    plain, durable = (statistics.median(step_seconds[v]) for v in ("plain", "durable"))
    summary = {
        "model": args.model, "dataset": args.dataset, "batch_size": args.batch_size,
        "steps_per_epoch": splits.steps_per_epoch, "checkpoint_every": args.checkpoint_every,
        "log_every": args.log_every,
        "step_ms": {v: {"median": statistics.median(s) * 1e3, "min": min(s) * 1e3, "max": max(s) * 1e3}
                    for v, s in step_seconds.items()},
        "durable_over_plain": durable / plain,
        "save_seconds": {"median": statistics.median(save_seconds), "min": min(save_seconds),
                         "max": max(save_seconds), "count": len(save_seconds)},
        "blocking_seconds": {"median": statistics.median(blocking_seconds), "min": min(blocking_seconds),
                             "max": max(blocking_seconds)},
        "machine": machine_info(),
    }
    print(f"step time: plain {plain * 1e3:.2f} ms, with checkpoints and logs {durable * 1e3:.2f} ms "
          f"({(durable / plain - 1) * 100:+.1f}%, saves included); a save takes "
          f"{summary['save_seconds']['median']:.3f} s on the writer thread (median of {len(save_seconds)}, max "
          f"{max(save_seconds):.3f} s) and holds training up for {summary['blocking_seconds']['median'] * 1e3:.1f} ms")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    jsonio.write_json(args.output, summary)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
