"""Transfer learning with the data at hand: MnistCNN pretrained on MNIST, moved to scikit-learn's digits.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python examples/transfer_mnist_to_digits.py
    python examples/transfer_mnist_to_digits.py --pretrained runs/my_mnist_run --per-class 10,50 --seeds 0,1
    python examples/transfer_mnist_to_digits.py --quick      # 1 seed, 10 per class, 20 steps

The pretrained network is one epoch of ``jaxvision train --model mnist_cnn --dataset mnist``, made once
into --pretrained (reused when that folder holds a complete run, resumed when it holds an interrupted
one). Digits' 8x8 images are stretched to the weights' 28x28 and normalised with MNIST's mean and std.
For each count of labelled images per class and each seed, the training subset is drawn from digits'
train split (``per_class_subset``), and four methods train on it:

- linear probe: the pretrained backbone's 256 pooled features of every image computed once, then a new
  Dense head trained on that cache (``jaxvision.transfer.train_linear_probe``);
- fine-tune the last block (``--finetune last:1``): the hidden Dense layer and a new head train, the two
  convolutions stay fixed;
- fine-tune all: every layer trains, from the pretrained weights and a new head;
- from scratch: the same architecture from a fresh initialisation.

The recipe is the same for every method: Adam, peak learning rate 1e-3 with a linear warm-up over the
first 10% of the steps and a cosine decay to 0 (``make_optimizer("adam", 1e-3,
schedule="warmup_cosine")``), 200 optimiser steps per run, batches of min(32, N) for N training images,
no augmentation, no early stopping: the state after the last step is evaluated. The linear probe trains
whole epochs over its cache (its last batch smaller), so it takes the smallest number of epochs that
reaches 200 steps (200, 208 and 224 steps at 10, 50 and 100 per class). A seed fixes the subset, the
batch order and the new head, which is the same initial head for the two fine-tuning runs and the
from-scratch run. Validation (digits' validation split, 144 images) is reported, not used to choose;
test accuracy is on digits' test split (360 images). Seconds are the wall time of a whole run,
compilation included.

Once, at the largest count and the first seed, the same probe also trains through ``jaxvision.fit``
with the backbone frozen (``--finetune linear``: every image through the backbone at every step) for
the same number of epochs, and both again for ten times as many epochs (not with --quick): the
speed-up of caching the features is the frozen run's time over the cached probe's.

The table is printed and written as Markdown (results.md) and JSON (results.json) to --output.
"""

# No `from __future__ import annotations`: with string annotations, dataclasses look this module up in
# sys.modules, where a script loaded by its file location (as tests/test_examples.py loads it) is not.
import argparse
import dataclasses
import itertools
import math
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import jaxvision
from jaxvision import data, jsonio, transfer
from jaxvision.batch import Batch
from jaxvision.cli.main import main as jaxvision_command
from jaxvision.data.arrays import ArraySplits, per_class_subset
from jaxvision.finetune import Weights, fine_tune_start, read_weights
from jaxvision.run_record import read_run_file

MODEL = "mnist_cnn"
NUM_CLASSES = 10
METHODS = {"linear_probe": "linear probe (cached features)", "last_block": "fine-tune last block (last:1)",
           "all": "fine-tune all", "scratch": "from scratch"}
FINETUNE = {"last_block": "last:1", "all": "all"}
OPTIMIZER, LEARNING_RATE, SCHEDULE = "adam", 1e-3, "warmup_cosine"
STEPS, QUICK_STEPS, MAX_BATCH = 200, 20, 32
PER_CLASS, SEEDS = (10, 50, 100), (0, 1, 2)
# The probe's speed-up at the table's epochs and at ten times as many (the longer probe caching is for).
SPEEDUP_FACTORS = (1, 10)
PRETRAINED = os.path.join("runs", "examples", "transfer_mnist_to_digits", "pretrained")
OUTPUT = os.path.join("runs", "examples", "transfer_mnist_to_digits")


@dataclasses.dataclass
class StepBudget:
    """``splits`` as one epoch of exactly ``steps`` training batches (its own epochs back to back), so that
    ``fit(..., epochs=1)`` takes the same number of optimiser steps whatever the training set's size."""

    splits: ArraySplits
    steps: int

    @property
    def steps_per_epoch(self) -> int:
        return self.steps

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        del epoch  # one epoch only: it spans as many of the splits' epochs as the budget needs
        batches = (batch for inner in itertools.count() for batch in self.splits.train_batches(inner))
        return itertools.islice(batches, start, self.steps)

    def eval_batches(self, split: str) -> Iterator[Batch]:
        return self.splits.eval_batches(split)


@dataclasses.dataclass
class RunResult:
    """One method on one training subset.

    Attributes:
      method: a key of ``METHODS``.
      per_class: labelled training images per class.
      seed: the subset's, batch order's and new head's seed.
      steps: optimiser steps taken.
      batch_size: training batch size.
      validation_accuracy, test_accuracy: of the final state.
      seconds: wall time of the run, compilation included.
      model: the trained Flax module.
      variables: its final variables.
    """

    method: str
    per_class: int
    seed: int
    steps: int
    batch_size: int
    validation_accuracy: float
    test_accuracy: float
    seconds: float
    model: Any = dataclasses.field(repr=False)
    variables: Any = dataclasses.field(repr=False)

    def record(self) -> dict[str, Any]:
        """The JSON fields (no model, no variables)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in ("model", "variables")}


def optimizer(total_steps: int):
    """The one recipe's optimiser (module docstring), its schedule spanning ``total_steps``."""
    return jaxvision.make_optimizer(OPTIMIZER, LEARNING_RATE, total_steps=total_steps, schedule=SCHEDULE)


def pretrained_run(directory: str, *, progress: bool = True) -> str:
    """``directory`` holding a complete MnistCNN-on-MNIST run: reused if it has one, else trained there.

    Raises:
      ValueError: the training command failed (it printed why, e.g. MNIST not prepared).
    """
    record = read_run_file(directory) if os.path.isfile(os.path.join(directory, "run.json")) else None
    if record is not None and record.get("status") == "complete":
        return directory
    command = ["train", "--model", MODEL, "--dataset", "mnist", "--epochs", "1", "--output-dir", directory]
    command += ["--resume"] if record is not None else []
    command += [] if progress else ["--no-progress"]
    print(f"pretraining: jaxvision {' '.join(command)}")
    status = jaxvision_command(command)
    if status != 0:
        raise ValueError(f"Pretraining {MODEL} on MNIST into {directory} failed (exit status {status}, reason above): "
                         "prepare mnist under $TFDS_DATA_DIR, or pass --pretrained a complete run folder.")
    return directory


def _evaluate_fit(state, splits: ArraySplits, steps: int, key: jax.Array, frozen: Sequence[str]):
    result = jaxvision.fit(state, StepBudget(splits, steps), epochs=1, key=key, progress=False, frozen=frozen)
    taken = int(result.state.step)  # the optimiser's own count, recorded rather than assumed
    return result.history["val_accuracy"][-1], result.test["accuracy"], result.state.eval_variables, taken


def fine_tune(weights: Weights, splits: ArraySplits, finetune: str, *, steps: int, key: jax.Array):
    """Fine-tunes the pretrained network with a new head for ``steps`` steps.

    Returns:
      ``(model, variables, validation accuracy, test accuracy, steps taken)``.
    """
    init_key, train_key = jax.random.split(key)
    shape = splits.train[0].shape[1:]
    start = fine_tune_start(jaxvision.get_model(MODEL, num_classes=NUM_CLASSES), weights, num_classes=NUM_CLASSES,
                            input_shape=shape, optimizer=optimizer(steps), key=init_key, finetune=finetune)
    validation, test, variables, taken = _evaluate_fit(start.state, splits, steps, train_key, start.frozen)
    return start.model, variables, validation, test, taken


def from_scratch(splits: ArraySplits, *, steps: int, key: jax.Array):
    """Trains a freshly initialised MnistCNN for ``steps`` steps; returns what ``fine_tune`` does."""
    init_key, train_key = jax.random.split(key)
    model = jaxvision.get_model(MODEL, num_classes=NUM_CLASSES)
    state = jaxvision.create_train_state(model, splits.train[0].shape[1:], optimizer(steps), init_key)
    validation, test, variables, taken = _evaluate_fit(state, splits, steps, train_key, ())
    return model, variables, validation, test, taken


def probe_epochs(train_size: int, batch_size: int, steps: int) -> int:
    """The fewest whole epochs over a cache of ``train_size`` that take at least ``steps`` steps."""
    return math.ceil(steps / math.ceil(train_size / batch_size))


def linear_probe(weights: Weights, splits: ArraySplits, *, epochs: int, key: jax.Array):
    """Caches the backbone's pooled features of every split once, trains a new head on the training cache.

    The test accuracy is the head's on the cached test features (not a pass of the whole network).

    Returns:
      ``(model, variables with the trained head, validation accuracy, test accuracy, steps)``.
    """
    shape = splits.train[0].shape[1:]
    backbone = jaxvision.get_model(MODEL, num_classes=weights.num_classes)
    extract = transfer.feature_extractor(backbone, weights.variables)
    train_x, train_y = transfer.cache_features(extract, splits.eval_batches("train"))
    validation = transfer.cache_features(extract, splits.eval_batches("validation"))
    test_x, test_y = transfer.cache_features(extract, splits.eval_batches("test"))
    steps = epochs * math.ceil(len(train_x) / splits.batch_size)
    head, history = transfer.train_linear_probe(
        train_x, train_y, num_classes=NUM_CLASSES, epochs=epochs, batch_size=splits.batch_size,
        optimizer=optimizer(steps), key=key, validation=validation)
    logits = jnp.asarray(test_x) @ head["kernel"] + head["bias"]
    test = float(np.mean(np.asarray(jnp.argmax(logits, axis=-1)) == test_y))
    # The trained head goes onto the backbone in place of a new one, so that the model classifies digits itself.
    model, variables = transfer.with_new_head(backbone, weights.variables, NUM_CLASSES, key, shape)
    return model, transfer.install_head(variables, head), history["val_accuracy"][-1], test, steps


def run_method(method: str, weights: Weights, splits: ArraySplits, *, per_class: int, seed: int, steps: int,
               key: jax.Array) -> RunResult:
    """Runs one of ``METHODS`` on one training subset, timed."""
    start = time.perf_counter()
    if method == "linear_probe":
        epochs = probe_epochs(len(splits.train[0]), splits.batch_size, steps)
        model, variables, validation, test, taken = linear_probe(weights, splits, epochs=epochs, key=key)
    elif method == "scratch":
        model, variables, validation, test, taken = from_scratch(splits, steps=steps, key=key)
    else:
        model, variables, validation, test, taken = fine_tune(weights, splits, FINETUNE[method], steps=steps, key=key)
    jax.block_until_ready(variables)
    seconds = time.perf_counter() - start
    return RunResult(method=method, per_class=per_class, seed=seed, steps=taken, batch_size=splits.batch_size,
                     validation_accuracy=float(validation), test_accuracy=float(test), seconds=seconds,
                     model=model, variables=variables)


def frozen_probe(weights: Weights, splits: ArraySplits, *, epochs: int, key: jax.Array) -> dict[str, Any]:
    """The linear probe's head trained through ``fit`` with the backbone frozen, for ``epochs`` epochs, timed.

    Every step sends its batch through the backbone again (without its gradient). ``ArraySplits`` drops
    each epoch's incomplete last batch, so this takes at most as many steps as the cached probe.

    Returns:
      ``{"steps", "seconds", "test_accuracy"}``.
    """
    start = time.perf_counter()
    init_key, train_key = jax.random.split(key)
    steps = epochs * splits.steps_per_epoch
    begin = fine_tune_start(jaxvision.get_model(MODEL, num_classes=NUM_CLASSES), weights, num_classes=NUM_CLASSES,
                            input_shape=splits.train[0].shape[1:], optimizer=optimizer(steps), key=init_key,
                            finetune="linear")
    result = jaxvision.fit(begin.state, splits, epochs=epochs, key=train_key, progress=False, frozen=begin.frozen)
    jax.block_until_ready(result.state.params)
    return {"steps": int(result.state.step), "seconds": time.perf_counter() - start,
            "test_accuracy": result.test["accuracy"]}


def probe_speedups(weights: Weights, splits: ArraySplits, cached: RunResult, *, factors: Sequence[int],
                   steps: int, key: jax.Array) -> list[dict[str, Any]]:
    """The cached-feature probe against the frozen-backbone fit, both for the same epochs.

    Args:
      weights: the pretrained weights.
      splits: the training subset of ``cached``.
      cached: the table's linear-probe run on ``splits``: its time is the probe's at factor 1.
      factors: the epochs to compare, as multiples of the table's probe epochs (1: the table's recipe;
        more: a longer probe, where caching the features pays off more).
      steps: the table's step budget.
      key: the run's key (``cached``'s).

    Returns:
      Per factor: ``{"per_class", "seed", "epochs", "cached": {...}, "frozen_fit": {...}, "speedup"}``, each
      side ``{"steps", "seconds", "test_accuracy"}``; speedup = frozen seconds / cached seconds.
    """
    epochs = probe_epochs(len(splits.train[0]), splits.batch_size, steps)
    measurements = []
    for factor in factors:
        if factor == 1:
            probe = {"steps": cached.steps, "seconds": cached.seconds, "test_accuracy": cached.test_accuracy}
        else:
            start = time.perf_counter()
            _, variables, _, test, taken = linear_probe(weights, splits, epochs=factor * epochs, key=key)
            jax.block_until_ready(variables)
            probe = {"steps": taken, "seconds": time.perf_counter() - start, "test_accuracy": test}
        frozen = frozen_probe(weights, splits, epochs=factor * epochs, key=key)
        measurements.append({"per_class": cached.per_class, "seed": cached.seed, "epochs": factor * epochs,
                             "cached": probe, "frozen_fit": frozen, "speedup": frozen["seconds"] / probe["seconds"]})
    return measurements


def summarize(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Per method and per-class count: mean and sample standard deviation (ddof=1, None for one seed) of the
    test accuracy over seeds, mean validation accuracy, mean seconds."""
    cells = []
    for method in METHODS:
        for per_class in sorted({run.per_class for run in runs}):
            group = [run for run in runs if run.method == method and run.per_class == per_class]
            if not group:
                continue
            accuracies = np.array([run.test_accuracy for run in group])
            cells.append({
                "method": method, "per_class": per_class, "seeds": [run.seed for run in group],
                "test_accuracy_mean": float(accuracies.mean()),
                "test_accuracy_std": float(accuracies.std(ddof=1)) if len(group) > 1 else None,
                "validation_accuracy_mean": float(np.mean([run.validation_accuracy for run in group])),
                "seconds_mean": float(np.mean([run.seconds for run in group])),
                "steps": group[0].steps,
            })
    return cells


def accuracy_cell(cell: dict[str, Any]) -> str:
    """``97.2 ± 0.4 % (3.1 s)``: test accuracy in percent, its spread over seeds, mean seconds per run."""
    spread = "" if cell["test_accuracy_std"] is None else f" ± {100 * cell['test_accuracy_std']:.1f}"
    return f"{100 * cell['test_accuracy_mean']:.1f}{spread} % ({cell['seconds_mean']:.1f} s)"


def markdown(record: dict[str, Any]) -> str:
    """The results as Markdown: the table, then the recipe, the pretraining and the probe's speed-up."""
    per_class = record["per_class"]
    cells = {(cell["method"], cell["per_class"]): cell for cell in record["summary"]}
    seeds = record["seeds"]
    lines = [
        f"Test accuracy on digits' test split (360 images), mean ± standard deviation over {len(seeds)} seed(s) "
        f"({', '.join(map(str, seeds))}), and mean seconds per run:",
        "",
        "| method | " + " | ".join(f"{count} per class" for count in per_class) + " |",
        "|---|" + "---|" * len(per_class),
    ]
    for method, label in METHODS.items():
        lines.append(f"| {label} | " + " | ".join(accuracy_cell(cells[method, count]) for count in per_class) + " |")
    recipe = record["recipe"]
    pretrained = record["pretrained"]
    lines += [
        "",
        f"Recipe: {recipe['optimizer']}, learning rate {recipe['learning_rate']:g} ({recipe['schedule']}), "
        f"{recipe['steps']} steps per run (the probe: whole epochs, at least {recipe['steps']} steps), batch "
        f"min({MAX_BATCH}, N). Pretrained: {MODEL} on {pretrained['dataset']}, {pretrained['epochs_run']} epoch(s), "
        f"its test accuracy {100 * pretrained['test_accuracy']:.2f} %.",
    ]
    for speedup in record["probe_speedup"]:
        lines.append(
            f"Linear probe at {speedup['per_class']} per class, {speedup['epochs']} epochs: cached features "
            f"{speedup['cached']['seconds']:.1f} s against {speedup['frozen_fit']['seconds']:.1f} s through fit with the "
            f"backbone frozen ({speedup['speedup']:.1f}x faster; test accuracy "
            f"{100 * speedup['cached']['test_accuracy']:.1f} % and {100 * speedup['frozen_fit']['test_accuracy']:.1f} %).")
    return "\n".join(lines) + "\n"


def _write_text(path: str, text: str) -> None:
    # A temporary name, then a rename: a reader never sees half a table.
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_counts(per_class: Sequence[int], seeds: Sequence[int], steps: int) -> None:
    if not per_class or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in per_class):
        raise ValueError(f"Invalid --per-class {','.join(map(str, per_class))}: expected positive integers, "
                         "e.g. --per-class 10,50,100.")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"Invalid --seeds {','.join(map(str, seeds))}: expected integers >= 0, e.g. --seeds 0,1,2.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"Invalid --steps {steps}: expected an integer >= 1, e.g. --steps {STEPS}.")


def main(pretrained: str = PRETRAINED, per_class: Sequence[int] | None = None, seeds: Sequence[int] | None = None,
         *, quick: bool = False, steps: int | None = None, output: str = OUTPUT, progress: bool = True
         ) -> dict[str, Any]:
    """Runs the experiment, prints the table and writes results.md and results.json to ``output``.

    Args:
      pretrained: run folder of the MNIST pretraining (made there if it holds no complete run).
      per_class: labelled training images per class; default 10, 50, 100 (quick: 10).
      seeds: default 0, 1, 2 (quick: the first seed only).
      quick: 1 seed, 10 per class, 20 steps: a smoke run.
      steps: optimiser steps per run; default 200 (quick: 20).
      output: folder for the results.
      progress: progress bars (runs and pretraining).

    Returns:
      The JSON record (``results.json``) with, under "runs_detail", each run's ``RunResult`` (its model and
      final variables included).

    Raises:
      ValueError: one line, for bad counts or seeds, more images per class than digits' train split holds,
        weights of another model, or a failed pretraining.
    """
    # A count or seed given twice runs once.
    per_class = list(dict.fromkeys(per_class if per_class is not None else (10,) if quick else PER_CLASS))
    seeds = list(dict.fromkeys(seeds if seeds is not None else SEEDS[:1] if quick else SEEDS))
    steps = steps if steps is not None else QUICK_STEPS if quick else STEPS
    _check_counts(per_class, seeds, steps)
    weights = read_weights(pretrained_run(pretrained, progress=progress), MODEL)
    splits = data.load_splits("digits", image_size=weights.image_size, channels=weights.channels,
                              mean=weights.mean, std=weights.std)
    train_images, train_labels = splits.arrays("train")
    smallest = int(np.bincount(train_labels, minlength=NUM_CLASSES).min())
    if max(per_class) > smallest:
        raise ValueError(f"Invalid --per-class {max(per_class)}: digits' train split has only {smallest} images of its "
                         f"smallest class; pass counts up to {smallest}, e.g. --per-class 10,50,100.")
    validation, test = splits.arrays("validation"), splits.arrays("test")

    def subset(count: int, seed: int) -> ArraySplits:
        chosen = per_class_subset(train_images, train_labels, count, seed)
        # Evaluation batches of the test split's size: fewer padded images than the default 1000.
        return ArraySplits(train=chosen, validation=validation, test=test, batch_size=min(MAX_BATCH, len(chosen[0])),
                           eval_batch_size=len(test[0]), seed=seed)

    jobs = [(count, seed, method) for count in per_class for seed in seeds for method in METHODS]
    runs: list[RunResult] = []
    bar = tqdm(jobs, desc="runs", unit="run", disable=not progress)
    for count, seed, method in bar:
        bar.set_postfix(per_class=count, seed=seed, method=method)
        key = jax.random.fold_in(jax.random.key(seed), count)
        runs.append(run_method(method, weights, subset(count, seed), per_class=count, seed=seed, steps=steps,
                               key=key))
        tqdm.write(f"{count:4d} per class, seed {seed}: {METHODS[method]:32s} test accuracy "
                   f"{runs[-1].test_accuracy:.4f} ({runs[-1].seconds:.1f} s)")
    # The cached side of the speed-up is the table's own probe run at the largest count and the first seed.
    cached = next(run for run in runs if run.method == "linear_probe" and run.per_class == max(per_class)
                  and run.seed == seeds[0])
    speedup = probe_speedups(weights, subset(cached.per_class, cached.seed), cached, steps=steps,
                             factors=(1,) if quick else SPEEDUP_FACTORS,
                             key=jax.random.fold_in(jax.random.key(cached.seed), cached.per_class))

    pretraining = read_run_file(pretrained)
    record = {
        "experiment": "transfer_mnist_to_digits",
        "pretrained": {"source": os.path.abspath(pretrained), "model": MODEL, "dataset": pretraining["dataset"]["name"],
                       "epochs_run": pretraining["result"]["epochs_run"],
                       "test_accuracy": pretraining["result"]["test_accuracy"]},
        "recipe": {"optimizer": OPTIMIZER, "learning_rate": LEARNING_RATE, "schedule": SCHEDULE, "steps": steps,
                   "batch_size": f"min({MAX_BATCH}, N)", "image_size": list(weights.image_size),
                   "normalization": {"mean": list(weights.mean), "std": list(weights.std)}},
        "per_class": per_class, "seeds": seeds, "methods": METHODS,
        "summary": summarize(runs),
        "runs": [run.record() for run in runs],
        "probe_speedup": speedup,
    }
    table = markdown(record)
    print(table, end="")
    os.makedirs(output, exist_ok=True)
    _write_text(os.path.join(output, "results.md"), table)
    jsonio.write_json(os.path.join(output, "results.json"), record)
    print(f"wrote {os.path.join(output, 'results.md')} and results.json")
    return {**record, "runs_detail": runs}


def _integers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected comma-separated integers, e.g. --per-class "
                                         "10,50,100 or --seeds 0,1,2") from None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default=PRETRAINED, help=f"MNIST pretraining run folder (default: {PRETRAINED})")
    parser.add_argument("--per-class", type=_integers, default=None, help="labelled images per class (default: 10,50,100)")
    parser.add_argument("--seeds", type=_integers, default=None, help="seeds (default: 0,1,2)")
    parser.add_argument("--steps", type=int, default=None, help=f"optimiser steps per run (default: {STEPS})")
    parser.add_argument("--quick", action="store_true", help=f"1 seed, 10 per class, {QUICK_STEPS} steps")
    parser.add_argument("--output", default=OUTPUT, help=f"folder for results.md and results.json (default: {OUTPUT})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args()
    try:
        main(args.pretrained, args.per_class, args.seeds, quick=args.quick, steps=args.steps, output=args.output,
             progress=not args.no_progress)
    except ValueError as error:
        parser.error(str(error))
