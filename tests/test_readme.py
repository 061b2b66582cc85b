"""The README's quick start is two commands, each doing its own set-up on a fresh clone: one
installs the package and runs the main job, the other installs the test extras and runs the
tests; CI runs the second exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN_JOB = "pip install -e . && griffin-megatron train"
TESTS = 'pip install -e ".[test]" && python -m pytest -q'


def _readme_commands() -> list:
    """The README's indented command lines that install something."""
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    pip install")]


def test_two_quick_start_commands_each_with_its_own_install():
    assert _readme_commands() == [MAIN_JOB, TESTS]


def test_ci_runs_the_readme_test_command_in_each_leg():
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line.strip() for line in ci.splitlines()].count(TESTS) == 1  # inside run_leg
    assert 'run_leg py311 "$python311"' in ci and 'run_leg py312 "$python312"' in ci
    # The leg's subshell ends with the test command, so its status is the leg's.
    leg = re.search(r"\(\n(.*?)\n    \)\n", ci, flags=re.DOTALL).group(1)
    assert leg.strip().splitlines()[-1].strip() == TESTS


def test_main_job_is_an_installed_command():
    """The main job needs no extra: tests/training/test_train_cli.py runs the default
    `griffin-megatron train` with the extras' packages hidden."""
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'griffin-megatron = "griffin_megatron.cli.main:main"' in scripts
