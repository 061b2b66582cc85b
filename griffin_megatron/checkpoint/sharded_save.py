"""The one way a checkpoint directory is written: Megatron's distributed save (torch_dist) into a
staging directory, the record with every file's size and hash beside it, then a rename into
place once all ranks are done. Model-only and training checkpoints both go through it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional, Union

from megatron.core import dist_checkpointing

from .. import compat
from ..output_paths import CHECKPOINT, check_output_directory
from .atomic import publish, staging_directory
from .integrity import describe_files
from .ranks import barrier, broadcast_object, broadcast_path, rank
from .record import FILES_KEY, MODEL_RECORD
from .tokenizer_files import copy_tokenizer_files
from .writes import in_process_writes


def save_sharded_atomically(
    sharded_state_dict: dict,
    directory: Union[str, Path],
    record: dict,
    *,
    overwrite: bool = False,
    tokenizer_dir: Optional[Union[str, Path]] = None,
    hashes: bool = True,
) -> Path:
    """dist_checkpointing.save into a fresh sibling directory, then rename it into place once
    every rank has finished, so an interrupted save never leaves a half-written `directory`.
    All ranks call this; rank 0 writes the model record (and tokenizer files). The record lists
    every file with its size and SHA-256 (sizes only with hashes=False), checked on load."""
    out = Path(directory)
    # On every rank, so that all of them stop together.
    check_output_directory(out, "checkpoint directory", overwrite, replaces=CHECKPOINT)
    staging = broadcast_path(staging_directory(out) if rank() == 0 else None)
    try:
        with compat.cuda_requests_on_cpu(), in_process_writes():
            dist_checkpointing.save(sharded_state_dict, str(staging))
        barrier()
        if rank() == 0 and tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, staging)
        names = broadcast_object(sorted(p.name for p in staging.iterdir() if p.is_file())
                                 if rank() == 0 else None)
        files = describe_files(staging, names, hashes=hashes)
        if rank() == 0:
            (staging / MODEL_RECORD).write_text(
                json.dumps({**record, FILES_KEY: files}, indent=2) + "\n")
            publish(staging, out, replace=True)
        barrier()
    except BaseException:
        if rank() == 0:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


__all__ = ["save_sharded_atomically"]
