"""Megatron's torch_dist writer (`FileSystemWriterAsync`) hands its results back through a
queue served by a `multiprocessing.Manager()` process that it spawns on the first save and keeps
(the module global `_results_queue`, megatron-core 0.16 to 0.19). That process is in the trainer's
process group: the SIGTERM that torchrun forwards or `scancel` sends to the group kills it, and the
final save of a stopping run then fails in `BrokenPipeError`; after a kill -9 it outlives the
trainer together with its `resource_tracker`.

Our saves are synchronous: the function that reads that queue runs in this process, right after
the one that fills it. A process-local queue does the same job with no helper process.

megatron-core 0.16 also forks one writer process per file bucket. `forked_writers_die_with_parent`
makes a kill -9 of the trainer take them along; it registers a fork hook for the whole process,
so only the entry point that needs it calls it (the `train` command, cli/main.py)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import sys
from typing import Iterator

_PR_SET_PDEATHSIG = 1
_child_hook_installed = False


def _die_with_parent() -> None:
    """In a forked child (megatron-core 0.16 forks one writer per file bucket): ask Linux to kill
    it when the trainer dies, so a kill -9 during a save leaves no writer behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def forked_writers_die_with_parent() -> None:
    """Every process forked from now on is killed by Linux when this one dies (once per process;
    nothing on other systems). For entry points: the hook is process-wide."""
    global _child_hook_installed
    if not _child_hook_installed and sys.platform.startswith("linux"):
        os.register_at_fork(after_in_child=_die_with_parent)
        _child_hook_installed = True


@contextlib.contextmanager
def in_process_writes() -> Iterator[None]:
    """Within this block dist_checkpointing saves need no helper process."""
    try:
        from megatron.core.dist_checkpointing.strategies import filesystem_async
    except ImportError:
        yield
        return
    if not hasattr(filesystem_async, "_results_queue"):
        yield  # a megatron-core whose writer no longer keeps that global queue
        return
    previous = filesystem_async._results_queue
    filesystem_async._results_queue = queue.Queue()
    try:
        yield
    finally:
        filesystem_async._results_queue = previous
