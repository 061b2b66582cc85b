"""A non-editable install finds its shipped recipes by name, from outside the checkout.

The project is built into a wheel from a copy of this tree and installed with `pip install --no-deps
--target` (the dependencies are the ones of this environment); the installed `griffin-megatron`
command then runs in an empty directory with only the install on its path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(command, cwd, env, timeout=600):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _source_copy(destination: Path) -> Path:
    """What the wheel is built from, copied so that the build leaves nothing in the checkout
    and no earlier build's leftovers reach the wheel."""
    destination.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    shutil.copytree(REPO / "griffin_megatron", destination / "griffin_megatron",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def test_installed_package_ships_its_recipes(tmp_path):
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    source = _source_copy(tmp_path / "source")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--quiet", "--wheel-dir", str(wheels), str(source)], cwd=tmp_path, env=os.environ)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("griffin_megatron-*.whl")
    installed = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                      str(site), str(wheel)], cwd=tmp_path, env=os.environ)
    assert installed.returncode == 0, installed.stderr[-3000:]

    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    env.pop("GRIFFIN_MEGATRON_DEBUG", None)
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, str(site / "bin" / "griffin-megatron")]
    where = _run([sys.executable, "-c", "import griffin_megatron; print(griffin_megatron.__file__)"],
                 cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr

    planned = _run([*command, "plan", "--recipe", "griffin-14b"], cwd=work, env=env)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert f"plan for {site}" in planned.stdout
    assert "TP 4 x PP 1 x DP 16 = 64 GPUs" in planned.stdout

    # `train --config NAME` reads the shipped recipe: its TP=4 meets this single process, and
    # the layout check refuses it before anything starts (no data, no process group).
    trained = _run([*command, "train", "--config", "griffin-14b", "--data-path", "corpus"],
                   cwd=work, env=env)
    assert trained.returncode == 2, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert trained.stderr.strip().splitlines()[-1] == (
        "griffin-megatron train: error: the layout breaks rule 'gpus': 1 GPUs is not a multiple "
        "of tensor x pipeline x context parallel size = 4 x 1 x 1 = 4 (GPUs = TP x PP x CP x DP); "
        "launch a multiple of their product.")
    assert list(work.iterdir()) == []
