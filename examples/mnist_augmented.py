"""LeNet-5 on MNIST with and without on-device augmentation, same epochs, same seed; test accuracy of each.

  TFDS_DATA_DIR=../shared/tensorflow_datasets python examples/mnist_augmented.py --epochs 3
  python examples/mnist_augmented.py --augment rotate:10,translate:0.1,fill:edge --tta crops:5

The augmented run differs from the plain one only by ``augment=`` in ``fit``: the
pipeline runs inside the jitted train step, one draw per example, keyed by the step.
``fill:edge`` repeats the black border instead of shifting in 0 (the mean, a grey on MNIST).
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from jaxvision import augment, create_train_state, data, fit, get_model, make_optimizer


def train(splits: data.Splits, spec: str | None, args: argparse.Namespace) -> dict:
    meta = splits.meta
    pipeline = None
    if spec:
        pipeline = augment.parse_augment_spec(spec, num_classes=meta.num_classes, mean=meta.mean, std=meta.std)
    optimizer = make_optimizer("adam", args.learning_rate, total_steps=args.epochs * splits.steps_per_epoch, schedule="warmup_cosine")
    init_key, train_key = jax.random.split(jax.random.key(args.seed))
    state = create_train_state(get_model("lenet5", num_classes=meta.num_classes), meta.image_shape, optimizer, init_key)
    start = time.perf_counter()
    result = fit(state, splits, epochs=args.epochs, key=train_key, augment=pipeline, progress=not args.no_progress)
    report = {
        "augment": pipeline.spec if pipeline else None,
        "epochs": args.epochs,
        "test_accuracy": result.test["accuracy"],
        "test_loss": result.test["loss"],
        "final_train_accuracy": result.history["train_accuracy"][-1],
        "train_images_per_second": result.train_images_per_second,
        "seconds": time.perf_counter() - start,
    }
    if args.tta:
        mode = pipeline.fill_mode if pipeline else "constant"
        tta = augment.evaluate_tta(result.state, splits.eval_batches("test"), views=args.tta, mode=mode)
        report.update(tta_views=args.tta, tta_test_accuracy=tta["accuracy"], tta_test_loss=tta["loss"])
    print(json.dumps(report), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--augment", default="rotate:10,translate:0.1,fill:edge", help="spec of the augmented run")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR)")
    parser.add_argument("--tta", default=None, help="also evaluate with test-time views, e.g. crops:5 (no flips on digits)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    splits = data.load_splits("mnist", batch_size=args.batch_size, seed=args.seed, data_dir=args.data_dir)
    reports = [train(splits, spec, args) for spec in (None, args.augment)]
    for report in reports:
        line = f"{report['augment'] or 'no augmentation':<40} test accuracy {report['test_accuracy']:.4f} after {report['epochs']} epochs"
        if "tta_test_accuracy" in report:
            line += f" | with TTA {report['tta_views']}: {report['tta_test_accuracy']:.4f}"
        print(line)


if __name__ == "__main__":
    main()
