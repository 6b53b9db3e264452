"""Checksums for checkpoint directories, so a truncated or corrupted checkpoint is refused.

orbax writes a checkpoint as a directory of files. A copy cut short, a full disk or a flipped
bit leaves a directory orbax may still restore, silently, into wrong weights. ``write_manifest``
records the size and sha256 of every file once the checkpoint is complete, and
``verify_manifest`` refuses the directory if any file differs, is missing, or was added.

``describe_differences`` and ``leaf_signatures`` cover the other way a restore goes wrong: the
files are intact but hold a tree of a different structure (another model, another width).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

MANIFEST = "jaxvision_checksums.json"

_FORMAT = 1
_ALGORITHM = "sha256"
_CHUNK = 1 << 20  # 1 MiB: large enough to hash at disk speed, small enough to keep memory flat.
# Temporary manifests are ".jaxvision_checksums.json.<hex>.tmp" beside the manifest; one left by
# a killed write is neither a checksum nor checkpoint content, so walks skip it.
_TMP_PREFIX = f".{MANIFEST}."
_TMP_SUFFIX = ".tmp"
_MAX_NAMED = 5  # names listed per kind of difference before "and N more", to keep one line short.


class CorruptCheckpointError(ValueError):
    """A checkpoint directory does not match its checksums, or has none."""


def _is_own_file(relpath: str) -> bool:
    """Whether ``relpath`` is the manifest or a temporary one, which are not checkpoint content."""
    if relpath == MANIFEST:
        return True
    return "/" not in relpath and relpath.startswith(_TMP_PREFIX) and relpath.endswith(_TMP_SUFFIX)


def _raise(error: OSError) -> None:
    # os.walk skips unreadable folders by default; a manifest missing them would vouch for less
    # than the whole checkpoint, so any error stops the walk instead.
    raise error


def _regular_files(directory: str) -> dict[str, int]:
    """Maps the POSIX relative path of every regular file under ``directory`` to its size.

    Symlinks and other non-regular entries are skipped: orbax writes none, and following them
    could checksum files outside the checkpoint.
    """
    files = {}
    for root, dirs, names in os.walk(directory, onerror=_raise):
        dirs.sort()
        for name in names:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue
            relpath = os.path.relpath(path, directory).replace(os.sep, "/")
            if not _is_own_file(relpath):
                files[relpath] = info.st_size
    return dict(sorted(files.items()))


def _digest(path: str) -> tuple[int, str]:
    """Returns the size of ``path`` as read and its sha256 hex digest."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


def _full_path(directory: str, relpath: str) -> str:
    return os.path.join(directory, *relpath.split("/"))


def _fsync_directory(directory: str) -> None:
    # The rename is only durable once the directory entry is on disk; Windows cannot open a
    # directory for fsync, and makes renames durable itself.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: str | os.PathLike[str]) -> str:
    """Records the size and sha256 of every file under a finished checkpoint directory.

    Call it once orbax has finished writing (after leaving the checkpointer's ``with`` block or
    ``wait_until_finished()``): until then orbax writes into a temporary directory. The manifest
    is written atomically, so a crash leaves either the old manifest or the new one, never half.

    Args:
      directory: the checkpoint directory.

    Returns:
      The path of the manifest, ``directory/jaxvision_checksums.json``.

    Raises:
      NotADirectoryError: ``directory`` is not an existing directory.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise NotADirectoryError(
            f"cannot write checksums: {directory} is not a directory, a finished checkpoint directory was expected; "
            "pass the path orbax saved to, after its save finished (leave the checkpointer's `with` block first)"
        )
    files = {}
    for relpath in _regular_files(directory):
        # Size comes from the bytes hashed, not from stat, so the two always describe the same read.
        size, sha256 = _digest(_full_path(directory, relpath))
        files[relpath] = {"size": size, "sha256": sha256}
    text = json.dumps({"format": _FORMAT, "algorithm": _ALGORITHM, "files": files}, indent=2, allow_nan=False)

    path = os.path.join(directory, MANIFEST)
    # os.open rather than tempfile.mkstemp: mkstemp creates mode 0600, and the manifest should be
    # as readable as the checkpoint files beside it (0666 less the umask).
    tmp = os.path.join(directory, f"{_TMP_PREFIX}{uuid.uuid4().hex}{_TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: a stray temporary file is harmless but untidy.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return path


def has_manifest(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a manifest (it is not read, so it may still be unreadable)."""
    return os.path.isfile(os.path.join(os.fspath(directory), MANIFEST))


def _is_safe_relpath(relpath: Any) -> bool:
    # A manifest naming "../x" or "/x" would make verification read outside the checkpoint.
    if not isinstance(relpath, str) or not relpath or relpath.startswith("/") or "\\" in relpath:
        return False
    return all(part not in ("", ".", "..") for part in relpath.split("/"))


def _is_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    size, sha256 = entry.get("size"), entry.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return False
    return isinstance(sha256, str) and len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)


def _read_manifest(directory: str) -> dict[str, dict[str, Any]]:
    """Returns the manifest's ``files`` mapping, or raises CorruptCheckpointError."""
    path = os.path.join(directory, MANIFEST)
    fallback = "it was not written to the end; delete it to fall back to an earlier checkpoint"
    if not os.path.isfile(path):
        raise CorruptCheckpointError(f"checkpoint {directory} has no checksums ({MANIFEST}): {fallback}")

    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        why = " ".join(str(error).split())  # One line, whatever the parser said.
        raise CorruptCheckpointError(
            f"checkpoint {directory} has no checksums ({MANIFEST} is unreadable: {why}): {fallback}"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT or manifest.get("algorithm") != _ALGORITHM:
        raise CorruptCheckpointError(
            f"checkpoint {directory} has no checksums ({MANIFEST} is not format {_FORMAT} with algorithm "
            f"{_ALGORITHM}): {fallback}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(_is_safe_relpath(k) and _is_entry(v) for k, v in files.items()):
        raise CorruptCheckpointError(
            f"checkpoint {directory} has no checksums ({MANIFEST} lists malformed entries): {fallback}"
        )
    return files


def _named(names: list[str]) -> str:
    """``a, b, c, d, e and 3 more``: at most ``_MAX_NAMED`` names, so a message stays one line."""
    shown = ", ".join(names[:_MAX_NAMED])
    rest = len(names) - _MAX_NAMED
    return f"{shown} and {rest} more" if rest > 0 else shown


def verify_manifest(directory: str | os.PathLike[str]) -> None:
    """Refuses a checkpoint directory whose files do not match its manifest.

    Sizes and the file list are checked before any file is hashed, so a truncated checkpoint
    is refused without reading gigabytes.

    Args:
      directory: a checkpoint directory ``write_manifest`` was run on.

    Raises:
      CorruptCheckpointError: the manifest is missing or unreadable, a listed file is missing,
        has another size or another sha256, or a file is not listed. The one-line message names
        the offending file's full path.
    """
    directory = os.fspath(directory)
    expected = _read_manifest(directory)
    present = _regular_files(directory)
    fallback = f"delete {directory} to fall back to an earlier checkpoint, or retrain"

    missing = [_full_path(directory, p) for p in expected if p not in present]
    if missing:
        which = f"file {missing[0]} is" if len(missing) == 1 else f"files {_named(missing)} are"
        raise CorruptCheckpointError(
            f"checkpoint {which} missing but listed in its checksums ({MANIFEST}): "
            f"the checkpoint is incomplete; {fallback}"
        )
    extra = [_full_path(directory, p) for p in present if p not in expected]
    if extra:
        raise CorruptCheckpointError(
            f"checkpoint {directory} holds files its checksums ({MANIFEST}) do not list: {_named(extra)}; "
            f"they were added after the checkpoint was written: remove them, or {fallback}"
        )
    for relpath, entry in sorted(expected.items()):
        actual, size = present[relpath], entry["size"]
        if actual != size:
            how = "truncated" if actual < size else "grown"
            raise CorruptCheckpointError(
                f"checkpoint file {_full_path(directory, relpath)}: {actual} bytes, {size} expected ({how}); {fallback}"
            )
    for relpath, entry in sorted(expected.items()):
        path = _full_path(directory, relpath)
        size, sha256 = _digest(path)
        # The size is checked again: the file may have changed since the walk above.
        if size != entry["size"] or sha256 != entry["sha256"]:
            raise CorruptCheckpointError(
                f"checkpoint file {path} does not match its sha256 checksum: it is corrupted; {fallback}"
            )


Signature = tuple[tuple[int, ...], str]


def describe_differences(saved: Mapping[str, Signature], expected: Mapping[str, Signature]) -> str | None:
    """Says in one line how a checkpoint's tree differs from the tree a model expects.

    Args:
      saved: leaf path (e.g. ``"params/Conv_0/kernel"``) to ``(shape, dtype name)``, as read from
        the checkpoint's metadata (see ``leaf_signatures``).
      expected: the same for the tree the checkpoint is restored into.

    Returns:
      None when both are equal, else e.g. ``"2 leaves differ: missing from the checkpoint:
      params/Dense_2/kernel; shape differs: params/Dense_0/kernel is (784, 128) in the
      checkpoint, (784, 256) expected"``.
    """
    # Shapes may arrive as lists (from JSON); compare them as tuples of ints.
    saved = {k: (tuple(int(d) for d in shape), str(dtype)) for k, (shape, dtype) in saved.items()}
    expected = {k: (tuple(int(d) for d in shape), str(dtype)) for k, (shape, dtype) in expected.items()}
    # The parameters first: they name the layers; optimiser moments repeat them.
    order = lambda k: (not k.startswith("params"), k)  # noqa: E731
    missing = sorted((k for k in expected if k not in saved), key=order)
    extra = sorted((k for k in saved if k not in expected), key=order)
    common = sorted((k for k in expected if k in saved), key=order)
    shapes = [k for k in common if saved[k][0] != expected[k][0]]
    dtypes = [k for k in common if saved[k][1] != expected[k][1]]
    differing = len(missing) + len(extra) + len(set(shapes) | set(dtypes))
    if not differing:
        return None

    parts = []
    if missing:
        parts.append(f"missing from the checkpoint: {_named(missing)}")
    if extra:
        parts.append(f"not expected: {_named(extra)}")
    if shapes:
        details = [f"{k} is {saved[k][0]} in the checkpoint, {expected[k][0]} expected" for k in shapes]
        parts.append(f"shape differs: {_named(details)}")
    if dtypes:
        details = [f"{k} is {saved[k][1]} in the checkpoint, {expected[k][1]} expected" for k in dtypes]
        parts.append(f"dtype differs: {_named(details)}")
    count = "1 leaf differs" if differing == 1 else f"{differing} leaves differ"
    return f"{count}: {'; '.join(parts)}"


def _key_name(entry: Any) -> str:
    """The name one key-path entry contributes to a ``"/"``-joined leaf path."""
    if isinstance(entry, jax.tree_util.DictKey):
        return str(entry.key)
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return entry.name
    if isinstance(entry, jax.tree_util.SequenceKey):
        return str(entry.idx)
    if isinstance(entry, jax.tree_util.FlattenedIndexKey):
        return str(entry.key)
    return str(entry)  # A key type added by a later jax: its str is still a readable name.


def leaf_signatures(tree: Any) -> dict[str, Signature]:
    """Maps each leaf's ``"/"``-joined key path to its ``(shape, dtype name)``.

    Args:
      tree: a pytree whose leaves are arrays or have ``.shape`` and ``.dtype`` (jax or numpy
        arrays, ``jax.ShapeDtypeStruct``, orbax ``ArrayMetadata``), or are Python scalars.

    Returns:
      e.g. ``{"params/Conv_0/kernel": ((3, 3, 1, 32), "float32")}``, for ``describe_differences``.
    """
    signatures = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = "/".join(_key_name(entry) for entry in path)
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            signatures[name] = (tuple(int(d) for d in leaf.shape), str(np.dtype(leaf.dtype)))
        else:
            array = np.asarray(leaf)
            signatures[name] = (tuple(array.shape), str(array.dtype))
    return signatures
