"""The one check every command makes of a path it will create: refuse it before any work is done,
in one sentence naming the option, instead of an `OSError` traceback (or a bare errno) at the first
write. `mkdir -p` semantics: a directory may exist already or not at all.

No command deletes or replaces its own input, or anything it did not write: an output directory
never is, holds or lies inside a path the command reads (real paths, symlinks resolved), and
`--overwrite` replaces only a directory that looks like the output being written (an `OutputKind`:
an HF export, a checkpoint), never one that holds anything else."""

from __future__ import annotations

import fnmatch
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

from .errors import InputFileError, OutputExistsError

PathLike = Union[str, Path]


def check_creatable_directory(path: Union[str, Path], option: str) -> Path:
    """`path` exists as a directory, or can be created: no part of it is a file and its nearest
    existing ancestor is a writable directory. Returns the path, user-expanded."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise InputFileError(f"{option} {path} is a file; pass a directory path.")
    _check_ancestors(target.absolute(), path, option)
    return target


@dataclass(frozen=True)
class OutputKind:
    """What a command writes into a directory, by entry names (shell patterns): an existing
    directory is replaced only when every entry matches `files` (regular files) or `folders`
    (directories, whose own entries must match `folder_files`) and at least one entry matches
    `required`."""

    name: str  # "an HF export"
    files: Tuple[str, ...]
    required: Tuple[str, ...]
    folders: Tuple[str, ...] = ()
    folder_files: Tuple[str, ...] = ()

    def foreign_entries(self, directory: Path) -> list:
        """The entries of `directory` that this kind of output does not consist of ("data/" for
        a folder), sorted; all of them when nothing required is there."""
        entries = sorted(directory.iterdir())
        foreign = [_shown(e) for e in entries if not self._owns(e)]
        if not foreign and not any(_matches(e.name, self.required) for e in entries):
            return [_shown(e) for e in entries]
        return foreign

    def _owns(self, entry: Path) -> bool:
        if entry.is_symlink():
            return False
        if entry.is_file():
            return _matches(entry.name, self.files)
        if entry.is_dir() and _matches(entry.name, self.folders):
            return all(
                child.is_file() and not child.is_symlink()
                and _matches(child.name, self.folder_files)
                for child in entry.iterdir()
            )
        return False


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _shown(entry: Path) -> str:
    return entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else "")


# Names the checkpoint package writes (checkpoint.tokenizer_files.TOKENIZER_FILES, record.py's
# MODEL_RECORD and LATEST_FILE, lock.py's LOCK_FILE, atomic.py's staging infix), spelled out
# here because importing that package loads torch; tests/cli/test_overwrite.py keeps them equal.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                   "special_tokens_map.json", "added_tokens.json")
HF_EXPORT = OutputKind(
    name="an HF export",
    files=("config.json", "generation_config.json", "model.safetensors", "model-*.safetensors",
           "model.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json",
           *TOKENIZER_FILES),
    required=("config.json",),
)
# A model checkpoint (griffin_model.json beside Megatron's torch_dist files), or a training save
# directory (iter_NNNNNNN checkpoints, the `latest` pointer, the run's lock and staging folders).
_CHECKPOINT_FILES = ("griffin_model.json", ".metadata", "*.distcp", "common.pt", "metadata.json",
                     *TOKENIZER_FILES)
CHECKPOINT = OutputKind(
    name="a griffin-megatron checkpoint",
    files=(*_CHECKPOINT_FILES, "latest_checkpointed_iteration.txt", ".griffin-megatron.lock"),
    required=("griffin_model.json", ".metadata", "latest_checkpointed_iteration.txt"),
    folders=("iter_[0-9]*", ".*.partial-*"),
    folder_files=_CHECKPOINT_FILES,
)


def check_output_directory(
    path: PathLike,
    option: str,
    overwrite: bool = False,
    *,
    replaces: Optional[OutputKind] = None,
    inputs: Sequence[Tuple[str, Optional[PathLike]]] = (),
) -> Path:
    """A directory a command fills: creatable as above, apart from every input the command
    reads (`inputs`: (option, path) pairs, None skipped), and empty unless `overwrite` says its
    contents may be replaced, which they may only be when they look like `replaces`. Returns the
    path, user-expanded."""
    target = check_creatable_directory(path, option)
    check_apart_from_inputs(target, option, inputs)
    if not (target.is_dir() and any(target.iterdir())):
        return target
    if not overwrite:
        raise OutputExistsError(
            f"{target} already exists and is not empty; choose a new directory or pass "
            "overwrite=True (--overwrite) to replace it."
        )
    if replaces is None:
        raise ValueError("check_output_directory(overwrite=True) needs `replaces`, the kind of "
                         "directory the caller may replace")
    foreign = replaces.foreign_entries(target)
    if foreign:
        listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise OutputExistsError(
            f"{option} {target} holds {len(foreign)} "
            f"{'entry' if len(foreign) == 1 else 'entries'} that are not {replaces.name} "
            f"({listed}), so --overwrite will not replace it; move them away or choose a new "
            "directory."
        )
    return target


def check_apart_from_inputs(
    target: PathLike, option: str, inputs: Sequence[Tuple[str, Optional[PathLike]]]
) -> None:
    """Refuse an output directory that is, holds, or lies inside one of the command's inputs:
    writing it would delete or change what the command reads."""
    out = Path(os.path.realpath(Path(target).expanduser()))
    for input_option, input_path in inputs:
        if input_path is None:
            continue
        source = Path(os.path.realpath(Path(input_path).expanduser()))
        if out == source:
            relation = "is the same path as"
        elif source.is_relative_to(out):
            relation = "holds"
        elif out.is_relative_to(source):
            relation = "lies inside"
        else:
            continue
        raise OutputExistsError(
            f"{option} {target} {relation} {input_option} {input_path}, which this command "
            f"reads; choose an {option} outside it."
        )


def same_directory(a: Optional[PathLike], b: Optional[PathLike]) -> bool:
    """Both paths are given and name one directory (user-expanded, symlinks resolved)."""
    if a is None or b is None:
        return False
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


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
