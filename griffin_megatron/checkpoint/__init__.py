"""Every checkpoint concern in one package: what a checkpoint holds, how it is written and read,
and by whom (training, conversion, evaluation, the default corpus). One file per job:

record.py           the architecture record (griffin_model.json), Megatron-LM's `latest` pointer
                    over iter_* directories, the architecture and file checks on load
model.py            model-only checkpoints: save, load at any TP/PP layout, build a model from one
distributed.py      model chunks + optimizer + LR scheduler in one reshardable checkpoint (any
                    TP/PP/VPP/DP layout resumes any other), with extra entries a loop adds
training_state.py   a training run's checkpoints: RNG states, data position, the LR-schedule and
                    optimizer-kind checks on resume
save_directory.py   the train command's --save / --load rules (no overwriting another run, one
                    writer, a first launch with nothing to resume)
full_state.py       full (unsharded) state dicts gathered from and split across tensor-parallel
                    ranks (HF conversion)
tokenizer_files.py  the tokenizer files saved beside a checkpoint, and finding them again
sharded_save.py     the one torch_dist save all checkpoints go through: staged, recorded, renamed
ranks.py            rank 0 / barrier / broadcast helpers of a save (no-ops in one process)
atomic.py           a directory written under a temporary name and renamed into place, with the
                    permissions the user's umask gives (not tempfile's 0700)
integrity.py        each file's size and SHA-256, recorded when written and checked before reading
lock.py             one writer per --save directory (an advisory lock the kernel drops on death)
writes.py           Megatron's torch_dist writer run without its helper process

Importing the package imports only the light helpers below; the modules that need Megatron-Core
(all but atomic, integrity, lock, writes, ranks and tokenizer_files) are imported by name.
"""

from .atomic import atomic_directory, follow_umask
from .integrity import check_files, describe_files
from .lock import SaveDirectoryLock, remove_stale_staging
from .writes import in_process_writes

__all__ = [
    "SaveDirectoryLock",
    "atomic_directory",
    "check_files",
    "describe_files",
    "follow_umask",
    "in_process_writes",
    "remove_stale_staging",
]
