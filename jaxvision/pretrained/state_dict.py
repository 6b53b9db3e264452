"""PyTorch state_dicts as NumPy: read from ``.pth``/``.pt``, ``.safetensors``, ``.npz`` or a mapping; written back.

A state_dict is a flat mapping of dotted key (``layer1.0.conv1.weight``) to array, in the layout the
PyTorch module holds it. Only ``.pth``/``.pt`` needs PyTorch; ``.safetensors`` and ``.npz`` are read
with safetensors' and NumPy's own readers, so pretrained weights load on a machine without torch.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

StateDictSource = Union[str, os.PathLike, Mapping[str, Any]]
StateDict = dict[str, np.ndarray]

_TORCH_SUFFIXES = (".pth", ".pt")
_SUFFIXES = (*_TORCH_SUFFIXES, ".safetensors", ".npz")


def _suffix(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"Cannot tell the format of {path!r} from its extension {suffix or '(none)'!r}: expected one of "
            f"{', '.join(_SUFFIXES)}. Rename the file, or load it yourself and pass a mapping of key to array."
        )
    return suffix


def _to_numpy(key: str, value: Any) -> np.ndarray:
    """One state_dict value (a NumPy array, a torch tensor, or anything ``np.asarray`` takes) as NumPy."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if value.is_floating_point() and str(value.dtype) not in ("torch.float16", "torch.float32", "torch.float64"):
            value = value.float()  # bfloat16 has no NumPy dtype; float32 holds every bfloat16 exactly
        return value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"State_dict entry {key!r} is a {type(value).__name__}, not an array ({error}): expected NumPy arrays "
            f"or torch tensors as values."
        ) from None


def _from_mapping(mapping: Mapping[Any, Any], where: str) -> StateDict:
    non_string = [repr(key) for key in mapping if not isinstance(key, str)]
    if non_string:
        raise ValueError(
            f"{where} has keys that are not strings ({', '.join(non_string[:5])}): expected a state_dict, a mapping "
            f"of dotted names such as 'conv1.weight' to arrays."
        )
    nested = [key for key, value in mapping.items() if isinstance(value, Mapping)]
    if nested:
        # A training checkpoint ({"state_dict": ..., "optimizer": ...}) rather than the state_dict itself.
        raise ValueError(
            f"{where} holds nested mappings under {', '.join(map(repr, nested[:5]))}, not arrays: it looks like a "
            f"training checkpoint. Pass the model's state_dict itself, e.g. checkpoint[{nested[0]!r}]."
        )
    return {key: _to_numpy(key, value) for key, value in mapping.items()}


def _read_torch(path: str) -> Any:
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"Reading {path!r} needs PyTorch, which is not installed: pip install torch, or convert the file to "
            f".safetensors or .npz on a machine that has it (jaxvision.pretrained.save_state_dict)."
        ) from None
    try:
        # weights_only: a .pth is a pickle, and unpickling an untrusted one can run arbitrary code.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError (bad zip), EOFError, ...
        raise ValueError(
            f"Cannot read {path!r} as a PyTorch state_dict ({type(error).__name__}: {str(error).splitlines()[0]}): "
            f"expected a file written by torch.save(model.state_dict(), path)."
        ) from None


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, TypeError, ValueError) as error:
        raise ValueError(
            f"Cannot read {path!r} as safetensors ({str(error).splitlines()[0]}): expected a file written by "
            f"safetensors' save_file."
        ) from None


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        # allow_pickle=False: object arrays would unpickle code, and weights never need them.
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(
            f"Cannot read {path!r} as a NumPy .npz archive ({str(error).splitlines()[0]}): expected a file written "
            f"by numpy.savez."
        ) from None


def read_state_dict(source: StateDictSource) -> StateDict:
    """A state_dict from a file or a mapping, every value a host NumPy array (dtypes kept, bfloat16 -> float32).

    Args:
      source: a path to a ``.pth``/``.pt`` file (``torch.load(..., weights_only=True)``; needs torch), a
        ``.safetensors`` file, an ``.npz`` archive, or a mapping of key to array or torch tensor.

    Returns:
      ``{key: np.ndarray}`` in the source's key order.

    Raises:
      ValueError: for a missing or unreadable file, an unknown extension, a training checkpoint instead
        of a state_dict, or values that are not arrays.
    """
    if isinstance(source, Mapping):
        return _from_mapping(source, "The state_dict mapping")
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            f"Invalid state_dict source of type {type(source).__name__}: expected a path to a .pth, .pt, "
            f".safetensors or .npz file, or a mapping of key to array."
        )
    path = os.fspath(source)
    suffix = _suffix(path)
    if not os.path.isfile(path):
        where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
        raise ValueError(f"Weights file {path!r} not found{where}: check the path, or download it (jaxvision weights).")
    if suffix in _TORCH_SUFFIXES:
        loaded = _read_torch(path)
        if not isinstance(loaded, Mapping):
            raise ValueError(
                f"{path!r} holds a {type(loaded).__name__}, not a state_dict: save model.state_dict(), not the model."
            )
        return _from_mapping(loaded, repr(path))
    if suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_npz(path)


def save_state_dict(path: str | os.PathLike, state_dict: Mapping[str, Any]) -> str:
    """Writes a state_dict in the format its extension names, atomically (a temporary file, then a rename).

    Args:
      path: ``.safetensors`` (no torch needed), ``.npz``, or ``.pth``/``.pt`` (``torch.save`` of
        tensors, which ``torch.load(path, weights_only=True)`` and ``load_state_dict`` take; needs torch).
      state_dict: key -> array, e.g. ``jaxvision.pretrained.to_torchvision(name, variables)``.

    Returns:
      ``path`` as a string.

    Raises:
      ValueError: for an unknown extension, or ``.pth`` without torch installed.
    """
    path = os.fspath(path)
    suffix = _suffix(path)
    # np.asarray(order="C") rather than ascontiguousarray, which turns num_batches_tracked's 0-d arrays into 1-d.
    arrays = {key: np.asarray(_to_numpy(key, value), order="C") for key, value in state_dict.items()}
    if suffix in _TORCH_SUFFIXES:
        try:
            import torch
        except ImportError:
            raise ValueError(
                f"Writing {path!r} needs PyTorch, which is not installed: pip install torch, or write .safetensors "
                f"or .npz instead."
            ) from None
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(arrays, temporary)
        elif suffix == ".npz":
            with open(temporary, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, **arrays)
        else:
            torch.save({key: torch.from_numpy(value) for key, value in arrays.items()}, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    return path
