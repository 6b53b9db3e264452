"""Strict JSON files written atomically: what a run directory's JSON files are made of.

Python's ``json`` writes NaN and Infinity as bare words that strict parsers (JavaScript, jq, Go)
reject, and a plain ``open(path, "w")`` killed halfway leaves half a file; ``write_json`` avoids both.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from typing import Any

import numpy as np


def strict(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as Python values and every non-finite float as None."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, np.generic):
        return strict(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (see ``strict``)."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)


def write_json(path: str, value: Any) -> None:
    """Writes ``value`` as strict JSON to ``path``: a temporary file, fsynced, then renamed over it.

    A reader (or a run killed mid-write) sees the old file or the new one, never a part.
    """
    directory = os.path.dirname(os.path.abspath(path))
    text = dumps(value, indent=2)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    # os.open with 0o666 leaves the permissions to the umask, as open() would (mkstemp gives 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def read_json(path: str) -> Any:
    """Parses a JSON file."""
    with open(path) as f:
        return json.load(f)
