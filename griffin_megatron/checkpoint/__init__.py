"""What every checkpoint write and read shares, whoever writes it (training, conversion, the
default corpus):

atomic.py      a directory written under a temporary name and renamed into place, with the
               permissions the user's umask gives (not tempfile's 0700)
integrity.py   each file's size and SHA-256, recorded when written and checked before reading
lock.py        one writer per --save directory (an advisory lock the kernel drops on death)
writes.py      Megatron's torch_dist writer run without its helper process
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
