"""The train command's rules for its --save and --load directories: never write over another
run's checkpoints, one live writer per --save directory, and a --load that names this run's own
empty --save directory (the first launch of a job that always passes both) is a fresh start."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch.distributed as dist

from ..errors import CheckpointError, OutputExistsError
from ..output_paths import check_creatable_directory, same_directory
from .lock import SaveDirectoryLock, remove_stale_staging
from .record import LATEST_FILE, MODEL_RECORD


def check_save_directory(save: Optional[str], load: Optional[str]) -> None:
    """Never write over another run's checkpoints: a --save directory that already has a
    `latest` pointer is only used to resume that run (--load pointing at it)."""
    if save is None:
        return
    resuming = same_directory(load, save)
    save = check_creatable_directory(save, "--save")
    held = sorted(save.glob("iter_*")) + sorted(save.glob(LATEST_FILE)) if save.is_dir() else []
    if held and not resuming:
        raise OutputExistsError(
            f"--save {save} already holds checkpoints ({held[-1].name}); pass --load {save} to "
            "resume that run, or choose a new --save directory."
        )


def lock_save_directory(save: Optional[str]) -> Optional[SaveDirectoryLock]:
    """Make this run the save directory's only writer (rank 0 holds the lock for the run) and
    remove the staging directories an interrupted run left there; every rank raises together
    if another live run holds the directory."""
    if save is None:
        return None
    lock, refusal = None, None
    if dist.get_rank() == 0:
        try:
            lock = SaveDirectoryLock(save).acquire()
            remove_stale_staging(save)
        except CheckpointError as error:
            refusal = str(error)
    holder = [refusal]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(holder, src=0)
    if holder[0] is not None:
        raise CheckpointError(holder[0])
    return lock


def nothing_to_resume(load: str, save: Optional[str]) -> bool:
    """`--load` names this run's own --save directory, which holds no checkpoint yet (the first
    launch of a job that always passes `--save DIR --load DIR`)."""
    directory = Path(load).expanduser()
    return same_directory(load, save) and not (
        (directory / LATEST_FILE).is_file() or (directory / MODEL_RECORD).is_file()
    )
