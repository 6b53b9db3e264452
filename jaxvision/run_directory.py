"""A run's output folder, checked before any data is loaded or anything compiled, and locked.

``prepare_run_directory`` refuses a path that is a file, cannot be written, or holds another run
(unless the run is resumed or overwritten), and takes an exclusive ``flock`` on a lock file inside
it for as long as the process lives. The kernel drops that lock when the process ends, even by
``kill -9``, so a stale lock never blocks a resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import glob
import os
import shutil

RUN_FILE = "run.json"
LOCK_FILE = ".jaxvision.lock"
# What jaxvision writes into a run folder; --overwrite removes exactly these.
ARTIFACTS = ("run.json", "checkpoints", "model", "metrics.json", "history.json", "history.png", "metrics.jsonl",
             "sweep.json", "checkpoint")
EVENT_FILES = "events.out.tfevents.*"


class RunDirectoryError(ValueError):
    """An output folder that cannot take this run."""


@dataclasses.dataclass
class RunDirectory:
    """A checked, locked output folder.

    Attributes:
      path: the folder, absolute.
      resumed: whether it holds the run being resumed.
    """

    path: str
    resumed: bool
    _lock_fd: int | None = None
    created: tuple[str, ...] = ()  # the folders this run created, deepest first
    lock_created: bool = False
    started: bool = False  # set once the run writes into the folder (its run.json)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def release(self) -> None:
        """Drops the lock (the kernel drops it anyway when the process ends).

        A run that stopped before writing anything (``started`` False: bad input found after the
        folder was checked) leaves nothing behind: the lock file goes if this run made it, and so
        do the folders it created.
        """
        if self._lock_fd is None:
            return
        if not self.started:
            if self.lock_created:
                _remove_quietly(os.path.join(self.path, LOCK_FILE))
            self.release_folders()
        os.close(self._lock_fd)
        self._lock_fd = None

    def release_folders(self) -> None:
        """Removes the folders this run created, while they are empty."""
        for folder in self.created:
            try:
                os.rmdir(folder)
            except OSError:  # not empty: something else lives there
                break


def holds_run(path: str) -> bool:
    """Whether ``path`` holds (part of) a run: its run.json, checkpoints, model or results (older runs too)."""
    names = ("run.json", "checkpoints", "model", "checkpoint", "metrics.json", "sweep.json")
    return any(os.path.exists(os.path.join(path, name)) for name in names)


def _lock(path: str) -> int:
    lock_path = os.path.join(path, LOCK_FILE)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunDirectoryError(
            f"--output-dir {path} is not writable ({error.strerror}): pick a folder you can write to"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirectoryError(
            f"another jaxvision run (pid {holder}) is using --output-dir {path}: wait for it to end, or pick another folder"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def prepare_run_directory(path: str, *, resume: bool = False, overwrite: bool = False) -> RunDirectory:
    """Checks and locks ``path`` for a run; with ``overwrite``, removes the run it holds.

    Raises:
      RunDirectoryError: one line naming the problem and its fix: ``path`` is a file, cannot be
        created or written, is locked by a live run, holds another run (without ``resume`` or
        ``overwrite``). ``resume`` of a folder without run.json starts afresh (``resumed`` False).
    """
    path = os.path.abspath(path)
    if resume and overwrite:
        raise RunDirectoryError("--resume and --overwrite exclude each other: continue the run, or replace it")
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirectoryError(f"--output-dir {path} is a file, not a folder: pick another path, or remove the file")
    created = []
    folder = path
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise RunDirectoryError(
            f"cannot create --output-dir {path} ({error.strerror}): pick a folder you can write to"
        ) from None
    lock_created = not os.path.exists(os.path.join(path, LOCK_FILE))
    try:
        fd = _lock(path)
    except RunDirectoryError:
        RunDirectory(path=path, resumed=False, created=tuple(created)).release_folders()
        raise
    try:
        if resume and not os.path.exists(os.path.join(path, RUN_FILE)):
            if holds_run(path):
                raise RunDirectoryError(f"cannot resume {path}: it holds checkpoints but no {RUN_FILE}; pass "
                                        "--overwrite to start afresh")
            # Killed before its run.json (loading data, compiling): there is nothing to lose.
            print(f"nothing to resume in {path} yet (no {RUN_FILE}): starting the run from step 0")
            resume = False
        if holds_run(path) and not (resume or overwrite):
            raise RunDirectoryError(
                f"--output-dir {path} holds another run: pass --resume to continue it, --overwrite to replace it, "
                "or pick another folder"
            )
        if overwrite:
            remove_run(path)
    except BaseException:
        RunDirectory(path=path, resumed=False, _lock_fd=fd, created=tuple(created), lock_created=lock_created).release()
        raise
    return RunDirectory(path=path, resumed=resume, _lock_fd=fd, created=tuple(created), lock_created=lock_created)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def remove_run(path: str) -> None:
    """Removes what jaxvision wrote into ``path`` (and nothing else)."""
    for name in ARTIFACTS:
        target = os.path.join(path, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)
    for event_file in glob.glob(os.path.join(glob.escape(path), EVENT_FILES)):
        os.remove(event_file)


__all__ = ["RUN_FILE", "RunDirectory", "RunDirectoryError", "holds_run", "prepare_run_directory", "remove_run"]
