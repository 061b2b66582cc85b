"""One writer per save directory.

Rank 0 of a run holds an exclusive `flock` on `<save>/.griffin-megatron.lock` for the whole run.
The kernel releases it when the process ends in any way (kill -9 included), so a crashed run never
leaves a stale lock behind; the file's text (host, pid) only names the holder in the refusal.
Holding the lock also makes this run the only one that can have left `.iter_*.partial-*` staging
directories in the save directory: those of a crashed run are removed when the lock is taken."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from pathlib import Path
from typing import Optional, Union

from ..errors import CheckpointError
from .atomic import STAGING_INFIX

LOCK_FILE = ".griffin-megatron.lock"


def remove_stale_staging(save_dir: Union[str, Path]) -> list:
    """Delete what interrupted saves left in `save_dir` (only call while holding its lock)."""
    removed = []
    for path in sorted(Path(save_dir).glob(f".*{STAGING_INFIX}*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


class SaveDirectoryLock:
    """`SaveDirectoryLock(save).acquire()` or CheckpointError if another live run holds it."""

    def __init__(self, save_dir: Union[str, Path]):
        self.save_dir = Path(save_dir)
        self.path = self.save_dir / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> "SaveDirectoryLock":
        self.save_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CheckpointError(
                f"--save {self.save_dir} is being written by another run ({holder}); wait for "
                "that run to end, or pass another --save directory."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "SaveDirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
