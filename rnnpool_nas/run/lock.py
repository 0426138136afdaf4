"""One writer per run directory.

Two commands writing one run (two ``search --resume`` on a live run, a ``train --resume`` while a
first one trains) would each rewrite ``trials.parquet`` or the checkpoint from their own view and
lose the other's results. Every command that writes a run directory therefore holds an exclusive
``fcntl.flock`` on ``<run>/.lock`` while it runs; a second writer gets one line (who holds it)
and exit 2. The kernel drops the lock when its process ends, however it ends (a SIGKILL
included), so a stale lock file never blocks anyone; the file itself is left in place (deleting
it would let two writers lock two different files).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from ..errors import UserError

LOCK = ".lock"


class RunLock:
    """An exclusive lock on one run directory; a context manager, and :meth:`release` is idempotent."""

    def __init__(self, root: Path, fd: int) -> None:
        self.root = root
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run(root: str | os.PathLike, command: str) -> RunLock:
    """Take the run's lock (the folder must exist) or raise :class:`UserError` naming its holder.
    ``command`` (e.g. ``"search"``) is written into the lock file for that message."""
    root = Path(root)
    path = root / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot lock {root}: {exc.strerror or type(exc).__name__}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"{root} is in use by another rnnpool-nas process ({_holder(path)}); wait for it to "
                        "finish (a killed process releases it at once)") from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "command": command,
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
    return RunLock(root, fd)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"{info['command']}, pid {int(info['pid'])}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


__all__ = ["LOCK", "RunLock", "lock_run"]
