"""Training logs of a run directory: ``metrics.jsonl`` (one strict-JSON object a line) and TensorBoard.

TensorBoard event files are written with TensorFlow's own ``tf.summary`` writer (TensorFlow is already
a dependency through the data pipeline), so the ``tensorboard`` package is not needed to write them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
# tf.summary.create_file_writer names its files events.out.tfevents.<time>.<host>.<pid>.<n>.v2.
_EVENTS_GLOB = "events.out.tfevents.*"
# Fields that index a record rather than measure something, so they are not TensorBoard scalars.
_INDEX_FIELDS = ("step", "epoch")


def _import_tensorflow() -> Any:
    """Imports TensorFlow (slow, so only when TensorBoard is used) with GPUs hidden from it."""
    import tensorflow as tf

    # Any accelerator belongs to JAX; summaries are host work.
    # RuntimeError: TensorFlow's devices were already initialised (e.g. by the data pipeline).
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    return tf


def _scalar_metadata(tf: Any) -> bytes:
    """The summary metadata that marks a tensor as a TensorBoard scalar, serialised.

    ``tf.summary.scalar`` is a stub that raises unless the ``tensorboard`` package is installed; this is
    the metadata its implementation attaches (``tensorboard.plugins.scalar.metadata``), so the plain
    ``tf.summary.write`` op, which is TensorFlow's own, writes the same events.
    """
    metadata = tf.compat.v1.SummaryMetadata(
        # content: ScalarPluginData(version=0) serialised, which is empty.
        plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars", content=b""),
        data_class=1,  # DATA_CLASS_SCALAR
    )
    return metadata.SerializeToString()


def _to_json_value(value: Any) -> Any:
    """``value`` as plain Python for strict JSON: numpy/jax scalars unwrapped, non-finite floats None."""
    if isinstance(value, dict):
        return {str(key): _to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_value(item) for item in value]
    # numpy scalars and 0-d arrays (numpy or jax) have .item(); json.dumps knows none of them.
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN or Infinity; null says "no value" to every parser.
    return value


def _as_index(record: dict[str, Any], name: str) -> int:
    """``record[name]`` as an int, for ``step`` and ``epoch``."""
    if name not in record:
        raise KeyError(
            f"Training log record has no {name!r} (keys: {sorted(record)}); expected an int {name!r}, add it to the record."
        )
    value = _to_json_value(record[name])
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Training log record {name!r} is {record[name]!r}; expected an int, pass int({name}).")
    return value


def _metrics_path(directory: str) -> str:
    return os.path.join(directory, METRICS_FILE)


def _parse_lines(lines: list[str], path: str, *, strict: bool) -> list[dict[str, Any]]:
    """The JSON objects of ``lines``; an unparsable last line (cut short by a kill) is dropped.

    Args:
      lines: the file's lines.
      path: the file, for error messages.
      strict: raise on an unparsable line before the last; otherwise drop it too.
    """
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            if strict and number < len(lines):
                raise ValueError(
                    f"{path} line {number} is not a JSON object: {line[:80]!r}; expected one record a line, "
                    f"drop damaged lines with jaxvision.training_log.truncate_metrics."
                )
            continue
        records.append(record)
    return records


def read_metrics(directory: str) -> list[dict[str, Any]]:
    """Reads ``directory/metrics.jsonl`` back, in the order it was written.

    Args:
      directory: the run directory given to ``TrainingLog``.

    Returns:
      One dict a line, ``{"kind": ..., "step": ..., "epoch": ..., ...}``; non-finite values are None.
      An incomplete last line (a process killed mid-write) is skipped.
    """
    path = _metrics_path(directory)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No {METRICS_FILE} in {directory!r}; expected a run directory written by TrainingLog, check the path."
        )
    with open(path, encoding="utf-8") as file:
        return _parse_lines(file.readlines(), path, strict=True)


def truncate_metrics(directory: str, step: int) -> None:
    """Keeps only the lines of ``directory/metrics.jsonl`` whose step is <= ``step``.

    For a run resuming from its checkpoint at ``step``: lines the interrupted process logged after
    that checkpoint would otherwise appear twice. Call it before the resumed process writes anything
    (before any ``TrainingLog.write``), else its own later lines are dropped as well. Unparsable lines
    (such as a last line cut short by a kill) are dropped. The file is replaced atomically, so a kill
    during this call leaves either the old file or the new one. A missing file is left missing.

    TensorBoard event files are append-only and are not rewritten: after a resume they hold both the
    interrupted and the resumed values of the steps in between (``read_tensorboard_scalars`` keeps the
    newest of each).

    Args:
      directory: the run directory.
      step: the step of the checkpoint the run resumes from.
    """
    path = _metrics_path(directory)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as file:
        lines = file.readlines()
    kept = []
    for line in lines:
        parsed = _parse_lines([line], path, strict=False)
        line_step = parsed[0].get("step") if parsed else None
        # bool is an int in Python but never a step.
        if isinstance(line_step, int) and not isinstance(line_step, bool) and line_step <= step:
            # The original text, not a re-serialisation, so kept lines stay byte for byte.
            kept.append(line if line.endswith("\n") else line + "\n")
    # The temporary file sits beside the target: os.replace is atomic only within one filesystem.
    handle, temporary = tempfile.mkstemp(prefix=f".{METRICS_FILE}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.writelines(kept)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def _read_events(tf: Any, path: str) -> Iterator[Any]:
    """The ``Event`` protos of one event file; a last record cut short by a kill ends it."""
    # What tf.compat.v1.train.summary_iterator does, without its deprecation warning.
    records = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            serialized = next(records)
        except (StopIteration, tf.errors.DataLossError):
            return
        yield tf.compat.v1.Event.FromString(serialized.numpy())


def _scalar_value(tf: Any, value: Any) -> float | None:
    """The number a ``Summary.Value`` holds, or None if it is no scalar (an image, a histogram)."""
    # tf.summary v2 stores scalars as tensors; v1 writers used simple_value.
    if value.HasField("tensor"):
        array = tf.make_ndarray(value.tensor)
        return float(array) if array.shape == () and array.dtype.kind in "biuf" else None
    if value.HasField("simple_value"):
        return float(value.simple_value)
    return None


def read_tensorboard_scalars(directory: str) -> dict[str, list[tuple[int, float]]]:
    """Reads the scalars of the TensorBoard event files in ``directory``.

    Args:
      directory: the run directory given to ``TrainingLog``.

    Returns:
      Tag (e.g. ``"step/loss"``) -> ``[(step, value), ...]`` sorted by step. Values went through
      float32. Where a resumed run logged a step again, the value written last is kept.
    """
    paths = sorted(glob.glob(os.path.join(directory, _EVENTS_GLOB)))
    if not paths:
        raise FileNotFoundError(
            f"No TensorBoard event files ({_EVENTS_GLOB}) in {directory!r}; expected a run directory written by "
            f"TrainingLog(tensorboard=True), check the path."
        )
    tf = _import_tensorflow()
    # tag -> step -> (wall time, value): the newest write of a step wins, as after a resume.
    latest: dict[str, dict[int, tuple[float, float]]] = {}
    for path in paths:
        for event in _read_events(tf, path):
            for value in event.summary.value:
                number = _scalar_value(tf, value)
                if number is None:
                    continue
                steps = latest.setdefault(value.tag, {})
                if event.step not in steps or event.wall_time >= steps[event.step][0]:
                    steps[event.step] = (event.wall_time, number)
    return {tag: [(step, steps[step][1]) for step in sorted(steps)] for tag, steps in sorted(latest.items())}


class TrainingLog:
    """Appends training records of a run to ``directory/metrics.jsonl`` and to TensorBoard.

    Opening never rewrites what is there: a resumed run appends. To drop the lines an interrupted
    process logged after the checkpoint a run resumes from, call ``truncate_after`` (or the module's
    ``truncate_metrics``) before the first ``write``.

    Use as a context manager, or call ``close``::

        with TrainingLog(run_dir) as log:
            log.write({"step": 100, "epoch": 0, "loss": 0.31, "learning_rate": 1e-3})
            log.write({"step": 500, "epoch": 0, "val_loss": 0.28, "val_accuracy": 0.91}, kind="epoch")

    Args:
      directory: the run directory; created if needed.
      tensorboard: also write TensorBoard event files into ``directory``.
    """

    def __init__(self, directory: str, *, tensorboard: bool = True) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._path = _metrics_path(directory)
        self._file = self._open()
        self._tf: Any = None
        self._writer: Any = None
        if tensorboard:
            self._tf = _import_tensorflow()
            self._writer = self._tf.summary.create_file_writer(directory)
            self._scalar_metadata = _scalar_metadata(self._tf)

    def _open(self) -> Any:
        # Line-buffered: each record reaches the OS whole, so a kill loses at most the line being written.
        return open(self._path, "a", buffering=1, encoding="utf-8")

    def write(self, record: dict[str, Any], *, kind: str = "step") -> None:
        """Logs one record.

        Args:
          record: at least ``step`` and ``epoch`` (ints), plus measurements such as ``loss``,
            ``accuracy``, ``learning_rate``, ``images_per_second`` (step records) or ``train_loss``,
            ``val_loss``, ``val_accuracy`` (epoch records). numpy and 0-d jax values are accepted.
          kind: what the record is, e.g. ``"step"`` or ``"epoch"``; the line's ``kind`` field and the
            TensorBoard tag prefix (``"step/loss"``, ``"epoch/val_accuracy"``).
        """
        if self._file is None:
            raise ValueError(
                f"TrainingLog of {self.directory!r} is closed; expected an open log, write before close() or open a new TrainingLog."
            )
        if "kind" in record:
            raise ValueError(
                f"Training log record has a 'kind' field ({record['kind']!r}); expected it only as the kind= argument, "
                f"pass kind={record['kind']!r} instead."
            )
        step = _as_index(record, "step")
        _as_index(record, "epoch")
        values = _to_json_value(record)
        try:
            line = json.dumps({"kind": kind, **values}, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"Training log record is not JSON-serialisable ({error}); expected numbers, strings, lists or dicts, "
                f"convert the value first."
            ) from None
        self._file.write(line + "\n")
        self._file.flush()
        if self._writer is not None:
            self._write_scalars(values, kind, step)

    def _write_scalars(self, values: dict[str, Any], kind: str, step: int) -> None:
        with self._writer.as_default(step=step):
            for name, value in values.items():
                # None is a non-finite value already nulled: TensorBoard has no "missing", so skip it.
                if name in _INDEX_FIELDS or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                # float32, as tf.summary.scalar stores it: TensorBoard's scalar plugin reads floats.
                self._tf.summary.write(f"{kind}/{name}", np.float32(value), metadata=self._scalar_metadata)
        # Epoch records are rare and worth seeing at once; flushing every step would cost a file write each.
        if kind == "epoch":
            self._writer.flush()

    def truncate_after(self, step: int) -> None:
        """Keeps only the lines of ``metrics.jsonl`` whose step is <= ``step``; see ``truncate_metrics``.

        Call it before the first ``write`` of a resumed process.
        """
        if self._file is None:  # closed: nothing to reopen.
            truncate_metrics(self.directory, step)
            return
        self._file.close()
        truncate_metrics(self.directory, step)
        # The old handle points at the replaced file; appending to it would write into the void.
        self._file = self._open()

    def close(self) -> None:
        """Flushes and closes both logs; closing again does nothing."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["METRICS_FILE", "TrainingLog", "read_metrics", "read_tensorboard_scalars", "truncate_metrics"]
