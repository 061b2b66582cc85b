"""patches/ holds each upstream Megatron-Core fix as a unified diff against the release it targets.

Every patch for the installed release applies cleanly to its sources (`patch --dry-run`), and the
release patched with them passes the distributed-optimizer checkpoint scenario without
griffin_megatron's in-process fixes (so the diffs are the fixes, not just text that applies).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from griffin_megatron.compat.versions import megatron_core_version

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ".".join(map(str, megatron_core_version()))
PATCHES = sorted((ROOT / "patches").glob(f"megatron-core-{RELEASE}-*.patch"))
DISTOPT_PATCHES = [p for p in PATCHES if "-distopt-" in p.name]


def megatron_site() -> Path:
    """The directory holding the installed `megatron` package (the patches' -p1 root)."""
    import megatron.core

    return Path(megatron.core.__file__).resolve().parents[2]


def test_the_ci_releases_have_their_patches():
    for release in ("0.16.1", "0.19.2"):
        names = {p.name for p in (ROOT / "patches").glob(f"megatron-core-{release}-distopt-*.patch")}
        assert len(names) == 3, (release, names)


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs the `patch` program")
@pytest.mark.parametrize("patch_file", PATCHES, ids=lambda p: p.name)
def test_patch_applies_cleanly_to_the_installed_release(patch_file):
    result = subprocess.run(
        ["patch", "--dry-run", "--batch", "-p1", "-d", str(megatron_site()), "-i", str(patch_file)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs the `patch` program")
@pytest.mark.skipif(not DISTOPT_PATCHES, reason=f"no distributed-optimizer patches for {RELEASE}")
def test_patched_release_needs_no_in_process_fix(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(megatron_site() / "megatron", site / "megatron",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for patch_file in DISTOPT_PATCHES:
        subprocess.run(["patch", "--batch", "--quiet", "-p1", "-d", str(site), "-i", str(patch_file)],
                       check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("patched_distopt_worker.py")),
         str(tmp_path / "checkpoint")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0 and "patched release OK" in result.stdout, (
        result.stdout[-3000:] + result.stderr[-5000:]
    )
