"""The one check every command makes of a path it will create: refuse it before any work is done,
in one sentence naming the option, instead of an `OSError` traceback (or a bare errno) at the first
write. `mkdir -p` semantics: a directory may exist already or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

from .errors import InputFileError, OutputExistsError


def check_creatable_directory(path: Union[str, Path], option: str) -> Path:
    """`path` exists as a directory, or can be created: no part of it is a file and its nearest
    existing ancestor is a writable directory. Returns the path, user-expanded."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise InputFileError(f"{option} {path} is a file; pass a directory path.")
    _check_ancestors(target.absolute(), path, option)
    return target


def check_output_directory(path: Union[str, Path], option: str, overwrite: bool = False) -> Path:
    """A directory a command fills: creatable as above, and empty unless `overwrite` says its
    contents may be replaced. Returns the path, user-expanded."""
    target = check_creatable_directory(path, option)
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{target} already exists and is not empty; choose a new directory or pass "
            "overwrite=True (--overwrite) to replace it."
        )
    return target


def check_creatable_file(path: Union[str, Path], option: str) -> Path:
    """`path` names a file (or, for a prefix, files beside it) that can be written: it is not a
    directory and its directory exists or can be created. Returns the path, user-expanded."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise InputFileError(f"{option} {path} is a directory; pass a file path.")
    _check_ancestors(target.absolute().parent, path, option)
    return target


def _check_ancestors(directory: Path, shown: Union[str, Path], option: str) -> None:
    for ancestor in (directory, *directory.parents):
        if not ancestor.exists():
            continue
        if not ancestor.is_dir():
            raise InputFileError(
                f"{option} {shown} lies under {ancestor}, which is a file, not a directory; "
                "choose a path inside a directory."
            )
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise InputFileError(
                f"{option} {shown} cannot be written: {ancestor} is not writable by this user; "
                "choose a directory you can write to."
            )
        _probe(ancestor, shown, option)
        return


def _probe(directory: Path, shown: Union[str, Path], option: str) -> None:
    """Create and remove one empty directory in `directory`: permission bits do not tell the
    whole story (root passes `os.access` everywhere, but /sys or /proc refuse any new entry)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=directory))
    except OSError as error:
        raise InputFileError(
            f"{option} {shown} cannot be written: creating anything in {directory} fails "
            f"({error.strerror}); choose a directory you can write to."
        ) from None
