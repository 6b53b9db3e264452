"""A trained run as a file that needs no jaxvision to serve: StableHLO (``jax.export``) or a SavedModel (``jax2tf``).

Both formats hold one function, ``images -> probabilities``: float32 images in [0, 1] of shape
``[batch, *input_shape]`` (any batch of at least 1), normalised with the run's mean and std, passed
through the model in eval mode and a softmax, giving float32 ``[batch, num_classes]``. The
parameters (and batch norm's statistics) are constants inside the function, so it equals
``load_run(run_dir).predict(images)`` without the model's code.

- ``stablehlo``: ``jax.export``'s serialised module in one file, plus ``FILE.json`` (class names,
  input shape, format, versions). Call it from this JAX version or a newer one (``jax.export``'s
  compatibility promise): ``jax.export.deserialize(open(FILE, "rb").read()).call(images)``. Its
  ``.mlir_module()`` is the StableHLO text for another consumer such as IREE; lowered for more than
  one platform, its ``main`` takes a leading int32 platform index (export for one to drop it).
- ``savedmodel``: a TensorFlow SavedModel folder (``jax2tf`` embeds the same StableHLO in an
  ``XlaCallModule`` op) whose ``serving_default`` signature takes ``images`` and returns
  ``probabilities``, with ``jaxvision.json`` inside it. Serve it with TF Serving or
  ``tf.saved_model.load(FOLDER).serve(images)``.

Unlike ``Run.preprocess``, the exported function takes float32 only and does not check the value
range: scale uint8 pixels by 1/255 before calling it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import jsonio
from jaxvision._suggest import unknown_name_error
from jaxvision.run_record import Run, load_run, versions

FORMATS = ("stablehlo", "savedmodel")
# The platforms jax.export can lower for; the module picks the one it runs on when called.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
# Lowered for each so a run trained on one kind of machine serves on another; ROCm is left to ask for.
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
SAVEDMODEL_SIDECAR = "jaxvision.json"
SIDECAR_FORMAT = 1


def serving_function(run: Run) -> Callable[[jax.Array], jax.Array]:
    """The function an export holds: ``Run.preprocess`` for float images, the model in eval mode, a softmax.

    The model is rebuilt from run.json with ``kernels="reference"``: flax's own layers lower each
    convolution, pooling and normalisation to the one StableHLO op (``convolution``,
    ``reduce_window``, ...) that every compiler (XLA:GPU, XLA:TPU, IREE) knows how to optimise. The
    CPU kernels have the same parameters but rewrite those layers into forms tuned for XLA:CPU only
    (stencil loops, im2col matmuls, identity GEMMs): no custom calls, but code a GPU, TPU or IREE
    would run worse than the plain ops.

    Args:
      run: a loaded run (``load_run``).

    Returns:
      A jittable function from float32 ``[batch, H, W, C]`` images in [0, 1] to float32
      ``[batch, num_classes]`` probabilities, with the run's variables closed over.
    """
    from jaxvision.models import get_model

    metadata = run.metadata
    model = get_model(metadata["model"]["name"], kernels="reference", **metadata["model"]["arguments"])
    normalization = metadata["normalization"]
    mean = np.asarray(normalization["mean"], np.float32)
    std = np.asarray(normalization["std"], np.float32)
    variables = run.variables

    def probabilities(images: jax.Array) -> jax.Array:
        logits = model.apply(variables, (images - mean) / std, train=False)
        # As Run.logits does, so a bfloat16 model's export equals Run.predict.
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    return probabilities


def export_run(
    run: str | os.PathLike | Run,
    path: str | os.PathLike,
    *,
    format: str = "stablehlo",  # shadows the builtin, to match the CLI's --format
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    overwrite: bool = False,
) -> str:
    """Writes ``run``'s preprocessing, model and softmax as a servable artefact (see the module docstring).

    Everything is checked before anything is compiled, and the artefact is written under a temporary
    name in ``path``'s folder and renamed into place, so a failure leaves no partial file behind.

    Args:
      run: a run folder (``jaxvision train --output-dir``) or a loaded ``Run``.
      path: the file (stablehlo) or folder (savedmodel) to write; its parent folder must exist.
      format: "stablehlo" or "savedmodel".
      platforms: what the artefact may run on, from ``PLATFORMS``; calling it elsewhere fails.
      overwrite: replace an existing ``path`` (and its sidecar) instead of refusing.

    Returns:
      ``path``. A stablehlo export also writes ``path + ".json"``; a SavedModel holds
      ``jaxvision.json``: ``sidecar_path(path, format)``.

    Raises:
      ValueError: an unknown format or platform, an existing ``path`` without ``overwrite``, a
        missing or unwritable parent folder, or a run folder ``load_run`` refuses.
    """
    path = os.path.normpath(os.fspath(path))  # "out/model/" names the folder "model", not ""
    if format not in FORMATS:
        raise unknown_name_error("export format", format, FORMATS, hint='Pass e.g. format="stablehlo".')
    platforms = check_platforms(platforms)
    _check_output(path, format=format, overwrite=overwrite)
    if not isinstance(run, Run):
        run = load_run(os.fspath(run))
    function = serving_function(run)
    shape = tuple(int(size) for size in run.metadata["input_shape"])
    sidecar = _sidecar(run, format=format, platforms=platforms)
    if format == "stablehlo":
        _write_stablehlo(function, shape, path, sidecar, platforms=platforms)
    else:
        _write_savedmodel(function, shape, path, sidecar, platforms=platforms)
    return path


def sidecar_path(path: str, format: str) -> str:
    """Where ``export_run(..., path, format=format)`` puts its JSON description of the artefact."""
    return os.path.join(path, SAVEDMODEL_SIDECAR) if format == "savedmodel" else path + ".json"


def check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    """``platforms`` as a tuple after checking each is one of ``PLATFORMS``, once; a string is split at commas."""
    if isinstance(platforms, str):
        platforms = platforms.split(",")
    platforms = tuple(platforms)
    if not platforms:
        raise ValueError(f"Invalid platforms (): expected one or more of {', '.join(PLATFORMS)}, e.g. cpu,cuda.")
    for platform in platforms:
        if platform not in PLATFORMS:
            raise unknown_name_error("platform", platform, PLATFORMS, hint="Pass e.g. platforms=('cpu', 'cuda').")
    if len(set(platforms)) != len(platforms):
        raise ValueError(f"Invalid platforms {','.join(platforms)}: a platform is repeated; name each once, e.g. cpu,cuda.")
    return platforms


def _check_output(path: str, *, format: str, overwrite: bool) -> None:
    """Raises if ``path`` cannot take a new artefact: exists (unless ``overwrite``), is of the wrong kind, or
    has no writable parent folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ValueError(f"Cannot write {path!r}: its folder {folder} {what}; create it (mkdir -p) or pass another output.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"Cannot write {path!r}: its folder {folder} is not writable; pass an output in a folder you own.")
    want_folder = format == "savedmodel"
    if os.path.exists(path) and os.path.isdir(path) != want_folder:
        kind, needed = ("a folder", "file") if os.path.isdir(path) else ("a file", "folder")
        raise ValueError(f"Cannot write {path!r}: it is {kind} and a {format} export is a {needed}; pass another output.")
    for existing in (path, sidecar_path(path, format)):
        if os.path.exists(existing) and not overwrite:
            raise ValueError(f"Cannot write {path!r}: {existing} exists; pass --overwrite (overwrite=True) to replace it, "
                             "or another output.")


def _sidecar(run: Run, *, format: str, platforms: tuple[str, ...]) -> dict[str, Any]:
    metadata = run.metadata
    found = versions()
    return {
        "format": SIDECAR_FORMAT,
        "export_format": format,
        "platforms": list(platforms),
        "model": metadata["model"]["name"],
        "class_names": run.class_names,
        "num_classes": int(metadata["num_classes"]),
        "input_shape": [int(size) for size in metadata["input_shape"]],
        "input": "float32 [batch, *input_shape], pixel values in [0, 1]; the normalisation below is applied inside",
        "output": "float32 [batch, num_classes] class probabilities (softmax), in class_names order",
        "normalization": {"mean": list(metadata["normalization"]["mean"]), "std": list(metadata["normalization"]["std"])},
        "run": run.path,
        "versions": {package: found.get(package) for package in ("jaxvision", "jax", "jaxlib")},
    }


@contextlib.contextmanager
def _staged(path: str) -> Iterator[str]:
    """Yields a temporary name beside ``path`` to write to; removes whatever is there if the body fails."""
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
    except BaseException:
        _remove(temporary)
        raise


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _write_stablehlo(function: Callable, shape: tuple[int, ...], path: str, sidecar: dict[str, Any], *,
                     platforms: tuple[str, ...]) -> None:
    batch, = jax.export.symbolic_shape("b")
    exported = jax.export.export(jax.jit(function), platforms=platforms)(
        jax.ShapeDtypeStruct((batch, *shape), jnp.float32))
    serialized = exported.serialize()
    with _staged(path) as artefact, _staged(sidecar_path(path, "stablehlo")) as description:
        with open(artefact, "wb") as f:
            f.write(serialized)
            f.flush()
            os.fsync(f.fileno())
        jsonio.write_json(description, sidecar)
        os.replace(artefact, path)
        os.replace(description, sidecar_path(path, "stablehlo"))


def _import_tensorflow() -> Any:
    import tensorflow as tf

    # The SavedModel is traced and saved on the host; any accelerator belongs to JAX.
    # RuntimeError: TensorFlow's devices were already initialised (e.g. by the data pipeline).
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    return tf


def _write_savedmodel(function: Callable, shape: tuple[int, ...], path: str, sidecar: dict[str, Any], *,
                      platforms: tuple[str, ...]) -> None:
    tf = _import_tensorflow()
    from jax.experimental import jax2tf

    # jax2tf's native serialisation (its only mode in this JAX) embeds jax.export's module, batch symbolic.
    converted = jax2tf.convert(function, polymorphic_shapes=[f"(b, {', '.join(map(str, shape))})"],
                               with_gradient=False, native_serialization_platforms=platforms)

    module = tf.Module()

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, *shape], tf.float32, name="images")])
    def serve(images):
        return {"probabilities": converted(images)}

    module.serve = serve
    with _staged(path) as folder:
        tf.saved_model.save(module, folder, signatures={"serving_default": serve})
        jsonio.write_json(os.path.join(folder, SAVEDMODEL_SIDECAR), sidecar)
        if not os.path.isdir(path):
            os.replace(folder, path)
            return
        # A folder cannot be renamed over a non-empty one: move the old one aside, and back if the swap fails.
        old = os.path.join(os.path.dirname(folder), f".{os.path.basename(path)}.{uuid.uuid4().hex}.old")
        os.replace(path, old)
        try:
            os.replace(folder, path)
        except BaseException:
            os.replace(old, path)
            raise
    _remove(old)


__all__ = ["DEFAULT_PLATFORMS", "FORMATS", "PLATFORMS", "check_platforms", "export_run", "serving_function", "sidecar_path"]
