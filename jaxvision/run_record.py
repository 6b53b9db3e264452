"""A finished run as a user gets it back: ``run.json``, the final model, and ``load_run``.

``run.json`` describes the run so that nothing else is needed to use it: the model's name and
arguments, the classes, the input shape, the normalisation, the optimiser, the seeds, the versions
and the command line. ``model/`` holds the final variables (``{"params": ..., "batch_stats": ...}``)
as host arrays in an orbax checkpoint with a sha256 manifest, so a run trained on a GPU loads on a
CPU-only machine.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import platform
import shlex
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import integrity, jsonio
from jaxvision.run_directory import RUN_FILE

MODEL_DIR = "model"
FORMAT = 1
_PACKAGES = ("jaxvision", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets")


def versions() -> dict[str, str | None]:
    """The installed versions of the packages a run depends on, and Python's."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def command_line() -> str:
    """This process's command line, quoted for a shell."""
    return shlex.join([os.path.basename(sys.argv[0]) or "python", *sys.argv[1:]])


def write_run_file(directory: str, record: dict[str, Any]) -> None:
    """Writes ``directory/run.json`` (strict JSON, atomically)."""
    jsonio.write_json(os.path.join(directory, RUN_FILE), {"format": FORMAT, **record})


def read_run_file(directory: str) -> dict[str, Any]:
    """``directory/run.json`` as a dict.

    Raises:
      ValueError: there is no run.json, or it does not parse.
    """
    path = os.path.join(directory, RUN_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{directory} is not a jaxvision run: it has no {RUN_FILE}; pass the --output-dir of a "
                         "`jaxvision train` run")
    try:
        return jsonio.read_json(path)
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): the run folder is damaged") from None


def save_model(directory: str, variables: dict[str, Any]) -> str:
    """Writes the final variables to ``directory/model`` with their checksums; returns that folder."""
    import orbax.checkpoint as ocp

    path = os.path.join(os.path.abspath(directory), MODEL_DIR)
    host = jax.tree.map(np.asarray, jax.device_get(variables))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, host, force=True)
    integrity.write_manifest(path)
    return path


def _abstract_variables(model: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    shapes = jax.eval_shape(lambda: model.init(keys, jnp.zeros((1, *input_shape), jnp.float32), train=False))
    return {name: value for name, value in shapes.items() if name in ("params", "batch_stats")}


def restore_variables(path: str, like: dict[str, Any]) -> dict[str, Any]:
    """Reads variables saved by ``save_model`` into the structure of ``like`` (arrays or shapes).

    Raises:
      integrity.CorruptCheckpointError: a file does not match its checksum.
      ValueError: the saved structure differs from ``like``'s, in words.
    """
    import orbax.checkpoint as ocp

    integrity.verify_manifest(path)
    with ocp.StandardCheckpointer() as checkpointer:
        saved = checkpointer.metadata(path).item_metadata
        differences = integrity.leaf_signatures(getattr(saved, "tree", saved))
        differences = integrity.describe_differences(differences, integrity.leaf_signatures(like))
        if differences:
            raise ValueError(f"{path} does not fit the model of its run.json: {differences}")
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
        restored = checkpointer.restore(path, target)
    return jax.tree.map(jnp.asarray, restored)


@dataclasses.dataclass
class Run:
    """A trained run, loaded by ``load_run``.

    Attributes:
      path: the run folder.
      model: the Flax module, rebuilt from run.json.
      variables: ``{"params": ...}``, plus ``"batch_stats"`` for models with batch norm.
      metadata: run.json as a dict.
    """

    path: str
    model: Any
    variables: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata["class_names"])

    def preprocess(self, images: Any) -> jax.Array:
        """``images`` as the model saw its training data: scaled to [0, 1], then normalised.

        Raises:
          ValueError: images of another shape than ``[N, *input_shape]``, another dtype than uint8
            or floating point, or float values outside [0, 1].
        """
        images = np.asarray(images)
        shape = tuple(self.metadata["input_shape"])
        if images.ndim != 4 or images.shape[1:] != shape:
            hint = " (one image? add a leading axis: images[None])" if images.shape == shape else ""
            raise ValueError(f"Invalid images of shape {images.shape}: expected [N, {', '.join(map(str, shape))}], "
                             f"the run's input shape{hint}")
        if images.dtype == np.uint8:
            pixels = images.astype(np.float32) / 255.0
        elif np.issubdtype(images.dtype, np.floating):
            pixels = images.astype(np.float32)
            if pixels.size and not (np.nanmin(pixels) >= 0.0 and np.nanmax(pixels) <= 1.0):
                raise ValueError(
                    f"Invalid float images with values in [{np.nanmin(pixels):.4g}, {np.nanmax(pixels):.4g}]: expected "
                    "[0, 1]; pass uint8 images (0-255) as they are, or divide by 255"
                )
        else:
            raise ValueError(f"Invalid images of dtype {images.dtype}: expected uint8 (0-255) or float32 in [0, 1]")
        normalization = self.metadata["normalization"]
        mean = np.asarray(normalization["mean"], np.float32)
        std = np.asarray(normalization["std"], np.float32)
        return jnp.asarray((pixels - mean) / std)

    def logits(self, images: Any, *, batch_size: int = 256) -> np.ndarray:
        """Eval-mode outputs (``[N, num_classes]`` logits for classification) of ``[N, H, W, C]`` images (see ``preprocess``)."""
        inputs = self.preprocess(images)
        parts = [np.asarray(_apply(self.variables, inputs[i:i + batch_size], model=self.model))
                 for i in range(0, len(inputs), batch_size)]
        if not parts:
            return np.zeros((0, int(self.metadata["num_classes"])), np.float32)
        return np.concatenate(parts).astype(np.float32)

    @property
    def task(self) -> Any:
        """The run's task object (``jaxvision.tasks``), or None for a classification run."""
        record = self.metadata.get("task")
        if not record:
            return None
        from jaxvision.tasks import task_from_record

        return task_from_record(record)

    def predict(self, images: Any, *, batch_size: int = 256) -> Any:
        """Predictions for ``[N, H, W, C]`` images, by the run's task.

        Classification: class probabilities ``[N, num_classes]`` (softmax). binary: the positive class's
        probability ``[N]``; regress: ``[N, targets]`` in the targets' units; segment: class masks ``[N, H, W]``;
        detect: one ``{"boxes" [K, 4] x1 y1 x2 y2 pixels, "scores" [K], "classes" [K]}`` per image, after NMS.

        Args:
          images: uint8 0-255 or float in [0, 1], as loaded from image files; the run's
            normalisation is applied here.
          batch_size: images per forward pass.
        """
        logits = self.logits(images, batch_size=batch_size)
        task = self.task
        if task is None:
            return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
        decoded = task.decode(logits)
        if task.name == "binary":
            return np.asarray([d["probability"] for d in decoded], np.float32)
        if task.name == "regress":
            return task.to_units(logits)
        if task.name == "segment":
            return np.stack([d["mask"] for d in decoded]) if decoded else np.zeros((0, *logits.shape[1:3]), np.uint8)
        return decoded


@functools.partial(jax.jit, static_argnames="model")
def _apply(variables: dict[str, Any], images: jax.Array, *, model: Any) -> jax.Array:
    return model.apply(variables, images, train=False)


def load_run(path: str) -> Run:
    """Loads a finished run folder (``jaxvision train --output-dir``); needs no other arguments.

    Raises:
      ValueError: ``path`` is not a run, the run has no final model (it was interrupted or
        diverged: resume it), or its files fail their checksums.
    """
    from jaxvision.models import get_model

    path = os.path.abspath(path)
    metadata = read_run_file(path)
    model_path = os.path.join(path, MODEL_DIR)
    if not os.path.isdir(model_path):
        status = metadata.get("status", "unknown")
        raise ValueError(f"run {path} has no final model (status: {status}); finish it with "
                         f"`{metadata.get('command', 'jaxvision train ...')} --resume`")
    arguments = dict(metadata["model"]["arguments"])
    if metadata.get("task"):
        from jaxvision.tasks import build_model, task_from_record

        model = build_model(task_from_record(metadata["task"]), metadata["model"]["name"], tuple(metadata["input_shape"]),
                            **arguments)
    else:
        model = get_model(metadata["model"]["name"], **arguments)
    like = _abstract_variables(model, tuple(metadata["input_shape"]))
    variables = restore_variables(model_path, like)
    return Run(path=path, model=model, variables=variables, metadata=metadata)


__all__ = ["Run", "command_line", "load_run", "read_run_file", "restore_variables", "save_model", "versions",
           "write_run_file"]
