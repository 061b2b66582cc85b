"""Integrity data of a checkpoint directory: every file's size and SHA-256, written into the
checkpoint's record when it is saved and checked before it is loaded, so that a flipped byte, a
truncated or missing shard, or a damaged `.metadata` is refused by name instead of loading (and
training on NaN) or failing deep inside torch.

Hashing reads every byte once; with several processes each hashes its share of the files. For
checkpoints so large that this costs minutes, `hashes=False` records and checks sizes only."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import torch.distributed as dist

from ..errors import CheckpointError

BLOCK = 1 << 24


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _world() -> tuple:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gathered(local: dict) -> dict:
    """The union of every rank's dict (on every rank)."""
    rank, world = _world()
    if world == 1:
        return local
    parts: List[Optional[dict]] = [None] * world
    dist.all_gather_object(parts, local)
    merged = {}
    for part in parts:
        merged.update(part)
    return merged


def describe_files(directory: Union[str, Path], names: Iterable[str], hashes: bool = True) -> dict:
    """{name: {"size", "sha256"?}} for files of `directory` (all ranks call this together when
    distributed; each hashes every world-th file)."""
    directory = Path(directory)
    names = sorted(names)
    rank, world = _world()
    local = {}
    for index, name in enumerate(names):
        entry = {"size": (directory / name).stat().st_size}
        if hashes and index % world == rank:
            entry["sha256"] = sha256(directory / name)
        local[name] = entry
    if not hashes:
        return local
    digests = _gathered({name: entry["sha256"] for name, entry in local.items() if "sha256" in entry})
    return {name: {"size": local[name]["size"], "sha256": digests[name]} for name in names}


def _problem(directory: Path, name: str, expected: dict, hashes: bool, mine: bool) -> Optional[str]:
    path = directory / name
    if not path.is_file():
        return f"checkpoint file {path} is missing"
    size = path.stat().st_size
    if size != expected["size"]:
        return (f"checkpoint file {path} has {size} bytes where {expected['size']} were written "
                "(truncated or overwritten)")
    if hashes and mine and "sha256" in expected and sha256(path) != expected["sha256"]:
        return f"checkpoint file {path} is damaged (its SHA-256 differs from the one recorded at save)"
    return None


def check_files(directory: Union[str, Path], files: Dict[str, dict], hashes: bool = True) -> None:
    """Raise CheckpointError naming the first missing, resized or altered file (on every rank
    alike when distributed; each rank hashes every world-th file)."""
    directory = Path(directory)
    rank, world = _world()
    problems = {}
    for index, name in enumerate(sorted(files)):
        problem = _problem(directory, name, files[name], hashes, mine=index % world == rank)
        if problem is not None:
            problems[name] = problem
    problems = _gathered(problems)
    if problems:
        first = problems[sorted(problems)[0]]
        raise CheckpointError(
            f"{first}; copy the checkpoint again from where it came from, or load an earlier "
            "iteration (--load <save>/iter_NNNNNNN)."
        )
