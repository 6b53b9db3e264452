"""How well a trained run classifies: loss, accuracy, top-k, a per-class table and the confusion matrix.

Three layers, each usable alone:

- metrics of predictions already made (``classification_metrics(log_probabilities, labels, class_names)``),
  as NumPy arrays in an ``Evaluation``, with its JSON, its table and its pictures (``save_evaluation``;
  ``write_evaluation`` for ``jaxvision train``'s test split);
- ``Predictor``: a run's model (optionally with test-time augmentation) compiled once for one batch size,
  timed, for ``jaxvision predict`` and ``evaluate_run``;
- ``evaluate_run(run, split="test")``: the run's own dataset and split, read as it was in training, with the
  most confidently misclassified images kept for a picture.

A class's accuracy is its recall, the share of its images predicted as it; the table shows both, as the
issue asked for accuracy per class and scikit-learn names it recall.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import jsonio

TOP_K = 5
DEFAULT_MISCLASSIFIED = 16
SPLITS = ("train", "validation", "test")
ACCURACY_NOTE = "a class's accuracy is its recall: the share of the class's images predicted as that class"
# The log of an averaged (test-time augmentation) probability is clipped here, as augment.tta's eval step does.
_MIN_PROBABILITY = 1e-12


# ---------------------------------------------------------------------------------------------------------------
# Metrics of predictions already made.


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts int64 ``[num_classes, num_classes]``: row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of examples whose true class is among the ``k`` highest of ``scores`` ``[n, num_classes]``.

    The true class counts as in the top ``k`` when fewer than ``k`` classes score strictly higher, so a tie
    never costs a hit.
    """
    scores = np.asarray(scores)
    true_scores = np.take_along_axis(scores, np.asarray(labels, np.int64)[:, None], axis=1)
    return float(np.mean(np.sum(scores > true_scores, axis=1) < k)) if len(scores) else float("nan")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0 where the denominator is 0, as scikit-learn's zero_division default.
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape, np.float64), where=denominator > 0)


def per_class_metrics(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class figures of a confusion matrix (rows true, columns predicted).

    Returns:
      ``{"support", "precision", "recall", "f1"}``, each ``[num_classes]``; support is int64 (the class's
      examples), the others float64, 0 where undefined (no example predicted as, or of, the class).
    """
    matrix = np.asarray(matrix, np.int64)
    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _ratio(hits, matrix.sum(axis=0).astype(np.float64))
    recall = _ratio(hits, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"support": support, "precision": precision, "recall": recall, "f1": f1}


@dataclasses.dataclass
class Evaluation:
    """A run's figures on one set of labelled images.

    Attributes:
      class_names: one name per class.
      count: images evaluated.
      loss: mean cross-entropy, ``-log p(true class)``.
      accuracy: share of images whose most probable class is the true one.
      top5_accuracy: share with the true class among the 5 most probable; None with 5 classes or fewer.
      confusion_matrix: int64 ``[classes, classes]``, row = true class, column = predicted class.
      support, precision, recall, f1: ``[classes]`` per class (see ``per_class_metrics``).
      misclassified: the most confidently wrong images, most confident first: ``{"index", "true", "predicted",
        "probability"}`` (plus ``"image"``, the file, for image folders); ``index`` counts from 0 in the split.
      misclassified_images: their pixels, uint8 ``[len(misclassified), height, width, channels]``; None when
        none were asked for.
      about: what was evaluated: run, dataset, split, tta.
    """

    class_names: list[str]
    count: int
    loss: float
    accuracy: float
    top5_accuracy: float | None
    confusion_matrix: np.ndarray
    support: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    misclassified: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    misclassified_images: np.ndarray | None = dataclasses.field(default=None, repr=False)
    about: dict[str, Any] = dataclasses.field(default_factory=dict)

    def macro_average(self) -> dict[str, float]:
        """Unweighted means over the classes of precision, recall and F1."""
        return {"precision": float(np.mean(self.precision)), "recall": float(np.mean(self.recall)),
                "f1": float(np.mean(self.f1))}

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: class, support, precision, recall, accuracy (= recall), f1."""
        return [{"class": name, "support": int(self.support[i]), "precision": float(self.precision[i]),
                 "recall": float(self.recall[i]), "accuracy": float(self.recall[i]), "f1": float(self.f1[i])}
                for i, name in enumerate(self.class_names)]

    def per_class_json(self) -> dict[str, Any]:
        return {"note": ACCURACY_NOTE, "per_class": self.per_class(), "macro_average": self.macro_average()}

    def to_json(self) -> dict[str, Any]:
        """Every figure as strict-JSON-ready Python values (``evaluation.json``)."""
        return {
            **self.about,
            "count": self.count,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "top5_accuracy": self.top5_accuracy,
            **self.per_class_json(),
            "confusion_matrix": {"rows": "true class", "columns": "predicted class", "class_names": self.class_names,
                                 "counts": self.confusion_matrix.tolist()},
            "misclassified": self.misclassified,
        }

    def headline(self) -> str:
        """``loss 0.2134 | accuracy 0.9412 (360 images) | top-5 accuracy 0.9972``."""
        line = f"loss {self.loss:.4f} | accuracy {self.accuracy:.4f} ({self.count} images)"
        return line + (f" | top-5 accuracy {self.top5_accuracy:.4f}" if self.top5_accuracy is not None else "")

    def table(self) -> str:
        """The per-class table as aligned text, with the macro average and what "accuracy" means here."""
        width = max([len("macro average"), *(len(name) for name in self.class_names)])
        lines = [f"{'class':<{width}}  {'support':>7}  {'precision':>9}  {'recall':>6}  {'accuracy':>8}  {'f1':>6}"]
        for row in self.per_class():
            lines.append(f"{row['class']:<{width}}  {row['support']:>7}  {row['precision']:>9.4f}  {row['recall']:>6.4f}"
                         f"  {row['accuracy']:>8.4f}  {row['f1']:>6.4f}")
        macro = self.macro_average()
        lines.append(f"{'macro average':<{width}}  {self.count:>7}  {macro['precision']:>9.4f}  {macro['recall']:>6.4f}"
                     f"  {macro['recall']:>8.4f}  {macro['f1']:>6.4f}")
        lines.append(f"({ACCURACY_NOTE})")
        return "\n".join(lines)


def classification_metrics(
    log_probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> Evaluation:
    """Loss, accuracy, top-5 accuracy (more than 5 classes), confusion matrix and per-class figures.

    Args:
      log_probabilities: ``[n, num_classes]`` log class probabilities (``jax.nn.log_softmax`` of logits).
      labels: ``[n]`` integer true classes.
      class_names: ``num_classes`` names.

    Returns:
      The Evaluation (without misclassified images).

    Raises:
      ValueError: shapes that disagree, no examples, or a label outside the classes.
    """
    log_probabilities = np.asarray(log_probabilities, np.float64)
    labels = np.asarray(labels)
    num_classes = len(class_names)
    if log_probabilities.ndim != 2 or log_probabilities.shape[1] != num_classes or labels.shape != log_probabilities.shape[:1]:
        raise ValueError(f"Invalid predictions of shape {log_probabilities.shape} for labels of shape {labels.shape}: "
                         f"expected [n, {num_classes}] (one column per class name) and [n].")
    if not len(labels):
        raise ValueError("No examples to evaluate: expected at least one labelled image.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"Invalid labels in [{labels.min()}, {labels.max()}]: expected integers in [0, {num_classes - 1}],"
                         " one per class name.")
    predictions = np.argmax(log_probabilities, axis=1)
    matrix = confusion_matrix(labels, predictions, num_classes)
    figures = per_class_metrics(matrix)
    return Evaluation(
        class_names=list(class_names),
        count=int(len(labels)),
        loss=float(-np.mean(np.take_along_axis(log_probabilities, labels[:, None].astype(np.int64), axis=1))),
        accuracy=float(np.mean(predictions == labels)),
        top5_accuracy=top_k_accuracy(log_probabilities, labels, TOP_K) if num_classes > TOP_K else None,
        confusion_matrix=matrix,
        **figures,
    )


# ---------------------------------------------------------------------------------------------------------------
# Files: JSON, the table, the confusion matrix and the misclassified images, each written whole or not at all.


def _write_text(path: str, text: str) -> None:
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _write_png(path: str, plot: Callable[[str], None]) -> None:
    # matplotlib picks the format from the name, so the temporary name keeps .png.
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp.png")
    try:
        plot(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _write_per_class(evaluation: Evaluation, directory: str) -> list[str]:
    from jaxvision.visualize import plot_confusion_matrix

    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, name) for name in ("per_class.json", "per_class.txt", "confusion_matrix.png")]
    jsonio.write_json(paths[0], evaluation.per_class_json())
    _write_text(paths[1], evaluation.table() + "\n")
    _write_png(paths[2], lambda path: plot_confusion_matrix(evaluation.confusion_matrix, path,
                                                           class_names=evaluation.class_names))
    return paths


def write_evaluation(
    logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str], directory: str
) -> Evaluation:
    """Writes ``per_class.json``, ``per_class.txt`` and ``confusion_matrix.png`` of test predictions.

    What ``jaxvision train`` leaves in a run folder at the end.

    Args:
      logits: ``[n, num_classes]`` eval-mode logits (padding already removed).
      labels: ``[n]`` integer true classes.
      class_names: one name per class.
      directory: the folder to write into (made if missing).

    Returns:
      The Evaluation of those predictions.
    """
    log_probabilities = np.asarray(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1))
    evaluation = classification_metrics(log_probabilities, labels, class_names)
    _write_per_class(evaluation, directory)
    return evaluation


def save_evaluation(evaluation: Evaluation, directory: str) -> list[str]:
    """Writes everything ``jaxvision evaluate`` shows into ``directory`` (made if missing).

    Files: ``evaluation.json`` (every figure), ``per_class.json``, ``per_class.txt``, ``confusion_matrix.png``
    and, when ``evaluation.misclassified_images`` is set (``evaluate_run``), ``misclassified.png``: the most
    confidently wrong images with their true class, predicted class and probability (a note when none is wrong).

    Returns:
      The paths written.
    """
    paths = _write_per_class(evaluation, directory)
    if evaluation.misclassified_images is not None:
        from jaxvision.visualize import plot_misclassified

        path = os.path.join(directory, "misclassified.png")
        rows = evaluation.misclassified
        _write_png(path, lambda temporary: plot_misclassified(
            evaluation.misclassified_images, [row["true"] for row in rows], [row["predicted"] for row in rows],
            [row["probability"] for row in rows], temporary))
        paths.append(path)
    path = os.path.join(directory, "evaluation.json")
    jsonio.write_json(path, evaluation.to_json())
    return [*paths, path]


# ---------------------------------------------------------------------------------------------------------------
# A run's model, compiled once for one batch size.


def _fill_mode(metadata: dict[str, Any]) -> str:
    """The fill the run's geometric augmentation used: what its test-time views should shift in."""
    from jaxvision import augment

    spec = (metadata.get("training") or {}).get("augment")
    if not spec:
        return "constant"
    normalization = metadata["normalization"]
    return augment.parse_augment_spec(spec, num_classes=int(metadata["num_classes"]), mean=normalization["mean"],
                                      std=normalization["std"]).fill_mode


def _log_probabilities(state: Any, images: jax.Array, *, views: int | str | None, mode: str) -> jax.Array:
    if views is None:
        return jax.nn.log_softmax(state.apply_fn(state.variables, images, train=False).astype(jnp.float32), axis=-1)
    from jaxvision.augment import predict_tta

    probabilities = predict_tta(state, images, views=views, mode=mode)
    return jnp.log(jnp.maximum(probabilities, _MIN_PROBABILITY))


class Predictor:
    """Log class probabilities of normalised images by a run's model, compiled once, with timings.

    Every call is cut into batches of exactly ``batch_size`` (the last padded), so the model compiles once,
    ahead of the first batch, and that compile is timed apart from the forward passes.

    Args:
      run: a ``Run`` (``jaxvision.load_run``).
      batch_size: images per forward pass.
      tta: a test-time view set (``jaxvision.augment.tta``, e.g. 2 or "flip,crops:5"), averaging the
        probabilities over the views with the fill the run's augmentation used; None predicts the image alone.

    Attributes:
      compile_seconds: time spent compiling (once).
      model_seconds: time in forward passes, device sync included.

    Raises:
      ValueError: an invalid batch size or view set.
    """

    def __init__(self, run: Any, *, batch_size: int, tta: int | str | None = None):
        import optax

        from jaxvision.augment import count_views
        from jaxvision.train import TrainState

        if batch_size < 1:
            raise ValueError(f"Invalid batch_size={batch_size}: expected a positive integer, e.g. 64.")
        if tta is not None:
            count_views(tta)  # the one-line error for a bad view set, before anything compiles
        self.batch_size = int(batch_size)
        self.input_shape = tuple(int(size) for size in run.metadata["input_shape"])
        self.num_classes = int(run.metadata["num_classes"])
        variables = run.variables
        # A TrainState because augment.predict_tta takes one; identity keeps the optimiser state empty.
        self._state = TrainState.create(apply_fn=run.model.apply, params=variables["params"], tx=optax.identity(),
                                        batch_stats=variables.get("batch_stats", {}))
        self._forward = jax.jit(_log_probabilities, static_argnames=("views", "mode"))
        self._options = {"views": tta, "mode": _fill_mode(run.metadata) if tta is not None else "constant"}
        self._compiled = None
        self.compile_seconds = 0.0
        self.model_seconds = 0.0

    def _compile(self):
        if self._compiled is None:
            start = time.perf_counter()
            spec = jax.ShapeDtypeStruct((self.batch_size, *self.input_shape), jnp.float32)
            self._compiled = self._forward.lower(self._state, spec, **self._options).compile()
            self.compile_seconds += time.perf_counter() - start
        return self._compiled

    def __call__(self, inputs: Any) -> np.ndarray:
        """``[n, num_classes]`` float32 log-probabilities of normalised ``inputs`` ``[n, *input_shape]``."""
        compiled = self._compile()
        inputs = jnp.asarray(inputs, jnp.float32)
        parts = []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start:start + self.batch_size]
            real = len(batch)
            if real < self.batch_size:
                batch = jnp.pad(batch, [(0, self.batch_size - real), (0, 0), (0, 0), (0, 0)])
            began = time.perf_counter()
            output = np.asarray(compiled(self._state, batch))  # np.asarray waits for the device
            self.model_seconds += time.perf_counter() - began
            parts.append(output[:real])
        return np.concatenate(parts) if parts else np.zeros((0, self.num_classes), np.float32)


# ---------------------------------------------------------------------------------------------------------------
# A run on its own dataset.


@dataclasses.dataclass
class _Source:
    """Normalised images of one split, in batches, with what the report says about them."""

    name: str
    count: int
    batches: Iterator[tuple[np.ndarray, np.ndarray, list[str] | None]]  # inputs, labels, files (image folders)


def _folder_source(run: Any, root: str, split: str, settings: dict[str, Any], batch_size: int) -> _Source:
    """An image folder's split as the run's training carved it, decoded as training decoded it."""
    from jaxvision.data.image_folder import scan_image_folder
    from jaxvision.data.pipeline import CARVED_TEST_FRACTION
    from jaxvision.image_files import iter_image_chunks

    scan = scan_image_folder(root, validation_fraction=settings.get("validation_fraction", 0.1),
                             test_fraction=CARVED_TEST_FRACTION, seed=settings.get("seed", 0))
    if list(scan.class_names) != run.class_names:
        raise ValueError(f"The classes of {scan.root} ({', '.join(scan.class_names)}) differ from the run's "
                         f"({', '.join(run.class_names)}): expected the same class folders. Pass a folder of the run's classes.")
    files, labels = list(scan.files[split]), np.asarray(scan.labels[split], np.int64)
    skip = bool(settings.get("skip_bad_images", False))

    def batches():
        for indices, images in iter_image_chunks(files, run, chunk_size=batch_size, skip_bad_images=skip):
            yield np.asarray(run.preprocess(images)), labels[indices], [files[i] for i in indices]

    return _Source(name=scan.root, count=len(files), batches=batches())


def _tfds_source(run: Any, name: str, split: str, settings: dict[str, Any], batch_size: int, data_dir: str | None,
                 overridden: bool) -> _Source:
    """A TFDS dataset's split as ``jaxvision train`` loads it, normalised with the run's statistics."""
    from jaxvision import data

    shape = tuple(run.metadata["input_shape"])
    # The run's own dataset: its recorded --image-size; another one: brought to the run's input size.
    image_size = shape[:2] if overridden else settings.get("image_size")
    options = {"channels": settings["channels"]} if settings.get("channels") is not None else {}
    normalization = run.metadata["normalization"]
    splits = data.load_splits(
        name, batch_size=1, eval_batch_size=batch_size, validation_fraction=settings.get("validation_fraction", 0.1),
        seed=settings.get("seed", 0), data_dir=data_dir, image_size=image_size, mean=normalization["mean"],
        std=normalization["std"], **options,
    )
    meta = splits.meta
    if tuple(meta.image_shape) != shape or list(meta.class_names) != run.class_names:
        raise ValueError(f"Dataset {name!r} has {meta.num_classes} classes of images {list(meta.image_shape)}; the run "
                         f"expects its {len(run.class_names)} classes ({', '.join(run.class_names[:5])}"
                         f"{', ...' if len(run.class_names) > 5 else ''}) of {list(shape)}. Pass a dataset of the run's classes.")
    count = {"train": meta.num_train, "validation": meta.num_validation, "test": meta.num_test}[split]

    def batches():
        for batch in splits.eval_batches(split):
            real = int(np.sum(batch.mask))
            yield batch.images[:real], np.asarray(batch.labels[:real], np.int64), None

    return _Source(name=meta.name, count=count, batches=batches())


def _pixels(inputs: np.ndarray, normalization: dict[str, Any]) -> np.ndarray:
    """Normalised inputs back to uint8 pixels, for pictures."""
    mean = np.asarray(normalization["mean"], np.float32)
    std = np.asarray(normalization["std"], np.float32)
    return np.round(np.clip((np.asarray(inputs) * std + mean) * 255.0, 0, 255)).astype(np.uint8)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: expected one of {', '.join(SPLITS)}, e.g. --split test.")
    return split


def evaluate_run(
    run: Any,
    *,
    dataset: str | None = None,
    split: str = "test",
    tta: int | str | None = None,
    batch_size: int = 256,
    data_dir: str | None = None,
    misclassified: int = DEFAULT_MISCLASSIFIED,
) -> Evaluation:
    """Evaluates a run on a split of its dataset, read and normalised as the run's training read it.

    Args:
      run: a ``Run`` (``jaxvision.load_run``).
      dataset: another dataset of the same classes (a TFDS name or an image folder); default the run's own,
        with the splits, seed, image size and channels recorded in its ``run.json``.
      split: "train", "validation" or "test".
      tta: a test-time view set (``jaxvision.augment.tta``), averaging probabilities over views.
      batch_size: images per forward pass.
      data_dir: where TFDS finds prepared data (default ``$TFDS_DATA_DIR``).
      misclassified: how many of the most confidently wrong images to keep for ``misclassified.png``.

    Returns:
      The Evaluation, ``about`` naming the run, dataset, split and view set.

    Raises:
      ValueError: one line, for an unknown split, a dataset that is missing or has other classes or image
        shapes, or a bad option.
    """
    from jaxvision.augment import count_views

    check_split(split)
    if misclassified < 0:
        raise ValueError(f"Invalid misclassified={misclassified}: expected an integer >= 0, e.g. {DEFAULT_MISCLASSIFIED}.")
    if batch_size < 1:
        raise ValueError(f"Invalid batch_size={batch_size}: expected a positive integer, e.g. 256.")
    if tta is not None:
        count_views(tta)  # before any data is read
    settings = run.metadata.get("settings") or {}
    recorded = settings.get("dataset") or run.metadata["dataset"]["name"]
    name = dataset or recorded
    on_folder = "layout" in (run.metadata.get("preprocessing") or {})
    if dataset is None and on_folder and not os.path.isdir(os.path.expanduser(name)):
        raise ValueError(f"The run's image folder {name} (from its run.json) is not here: pass --dataset with its path "
                         "(dataset= in Python).")
    if os.path.isdir(os.path.expanduser(name)):
        source = _folder_source(run, os.path.expanduser(name), split, settings, batch_size)
    else:
        source = _tfds_source(run, name, split, settings, batch_size, data_dir, overridden=dataset is not None)
    predictor = Predictor(run, batch_size=min(batch_size, max(1, source.count)), tta=tta)
    class_names = run.class_names
    all_log_probabilities, all_labels = [], []
    kept: dict[str, list] = {"score": [], "index": [], "true": [], "predicted": [], "image": [], "file": []}
    seen = 0
    for inputs, labels, files in source.batches:
        log_probabilities = predictor(inputs)
        all_log_probabilities.append(log_probabilities)
        all_labels.append(labels)
        predicted = np.argmax(log_probabilities, axis=1)
        wrong = np.flatnonzero(predicted != labels)
        if misclassified and len(wrong):
            kept["score"].extend(np.exp(log_probabilities[wrong, predicted[wrong]]).tolist())
            kept["index"].extend((seen + wrong).tolist())
            kept["true"].extend(labels[wrong].tolist())
            kept["predicted"].extend(predicted[wrong].tolist())
            kept["image"].extend(_pixels(inputs[wrong], run.metadata["normalization"]))
            kept["file"].extend([files[i] for i in wrong] if files is not None else [None] * len(wrong))
            # Only the most confident ``misclassified`` so far stay in memory (ties: the earlier image).
            order = sorted(range(len(kept["score"])), key=lambda i: (-kept["score"][i], kept["index"][i]))[:misclassified]
            kept = {key: [values[i] for i in order] for key, values in kept.items()}
        seen += len(labels)
    if not seen:
        raise ValueError(f"The {split} split of {source.name} has no images to evaluate: pass another --split.")
    evaluation = classification_metrics(np.concatenate(all_log_probabilities), np.concatenate(all_labels), class_names)
    rows = []
    for i in range(len(kept["score"])):
        row = {"index": kept["index"][i], "true": class_names[kept["true"][i]],
               "predicted": class_names[kept["predicted"][i]], "probability": kept["score"][i]}
        rows.append({**row, "image": kept["file"][i]} if kept["file"][i] is not None else row)
    evaluation.misclassified = rows
    if misclassified:
        shape = tuple(run.metadata["input_shape"])
        evaluation.misclassified_images = np.stack(kept["image"]) if kept["image"] else np.zeros((0, *shape), np.uint8)
    evaluation.about = {"run": run.path, "dataset": source.name, "split": split, "tta": tta,
                        "skipped_images": source.count - seen}
    return evaluation


__all__ = [
    "ACCURACY_NOTE", "DEFAULT_MISCLASSIFIED", "Evaluation", "Predictor", "SPLITS", "TOP_K", "check_split",
    "classification_metrics", "confusion_matrix", "evaluate_run", "per_class_metrics", "save_evaluation",
    "top_k_accuracy", "write_evaluation",
]
