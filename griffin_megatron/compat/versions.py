"""The installed Megatron-Core release, and the ranges of releases a compatibility piece targets.

Every version-specific piece of griffin_megatron asks `megatron_core_in(low, high)` with the
releases it was measured on, so that a release which fixes an upstream bug upstream (or one we
have not tested) gets Megatron-Core's own code unchanged.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Tuple

SUPPORTED = ((0, 16), (0, 20))  # [low, high): pyproject.toml's megatron-core>=0.16,<0.20


def _parse(version: str) -> Tuple[int, int, int]:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:
        raise ValueError(f"cannot read a release number from megatron-core version {version!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def megatron_core_version() -> Tuple[int, int, int]:
    """(major, minor, patch) of the installed megatron-core."""
    try:
        return _parse(metadata.version("megatron-core"))
    except metadata.PackageNotFoundError:  # a source checkout on PYTHONPATH
        from megatron.core.package_info import __version__

        return _parse(__version__)


def megatron_core_in(low: Tuple[int, ...], high: Tuple[int, ...]) -> bool:
    """Whether the installed release is in [low, high), compared as (major, minor[, patch])."""
    version = megatron_core_version()
    return tuple(low) <= version[: len(low)] and version[: len(high)] < tuple(high)


def has_megatron_training() -> bool:
    """Whether this megatron-core ships `megatron.training` (Megatron-LM's pretrain(); the
    wheels carry it from 0.18 on)."""
    from importlib.util import find_spec

    return find_spec("megatron.training") is not None
