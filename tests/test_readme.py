"""The README's three commands (install, main job, test) stay single and stay what CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(prefix: str) -> list:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    ") and line.strip().startswith(prefix)]


def test_one_install_and_one_test_command_and_ci_runs_them():
    installs, tests = _commands("pip install"), _commands("python -m pytest")
    assert len(installs) == 1 and len(tests) == 1, (installs, tests)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert installs[0] in ci and tests[0] in ci


def test_ci_runs_a_python_311_and_a_python_312_leg():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'run_leg py311 "$python311"' in ci and 'run_leg py312 "$python312"' in ci


def test_main_job_is_an_installed_command():
    assert "    griffin-megatron train" in (ROOT / "README.md").read_text().splitlines()
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'griffin-megatron = "griffin_megatron.cli.main:main"' in scripts
