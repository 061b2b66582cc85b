"""A directory that appears complete or not at all: written under `.<name>.partial-<random>` beside
its final place, then renamed into it. `tempfile.mkdtemp` creates 0700 directories, and some
writers create 0600 files (safetensors' `save_file` does); everything published is opened up to
what the user's umask allows, so teammates on a shared filesystem can read it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Union

STAGING_INFIX = ".partial-"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(path: Union[str, Path], directory: bool = True) -> None:
    """Give `path` the mode a plain mkdir / open would have given it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def follow_umask_tree(root: Path) -> None:
    """follow_umask for `root` and every directory and regular file under it (links untouched)."""
    follow_umask(root)
    for parent, directories, files in os.walk(root):
        for name in directories:
            if not os.path.islink(os.path.join(parent, name)):
                follow_umask(os.path.join(parent, name))
        for name in files:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                follow_umask(path, directory=False)


def staging_directory(target: Path) -> Path:
    """A fresh empty sibling of `target` to write into (created with the umask's mode)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_INFIX}", dir=target.parent))
    follow_umask(staging)
    return staging


def publish(staging: Path, target: Path, replace: bool = False) -> None:
    """Rename a finished staging directory into place (an existing target only if `replace`),
    its files and folders with the modes the umask gives."""
    follow_umask_tree(staging)
    if replace and target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


@contextlib.contextmanager
def atomic_directory(target: Union[str, Path], replace: bool = False) -> Iterator[Path]:
    """`with atomic_directory(out) as staging:` write into `staging`; on success it becomes
    `out`, on any error (or interrupt) it is removed and `out` is untouched."""
    target = Path(target)
    staging = staging_directory(target)
    try:
        yield staging
        publish(staging, target, replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
