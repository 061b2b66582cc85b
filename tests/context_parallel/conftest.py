"""Launches shared by the context-parallel tests (gloo), run once per session; the measured
differences are printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.context_parallel.cp_worker import FOUR_RANK_LAYOUTS, TWO_RANK_LAYOUTS, compare_layouts
from tests.parallel.harness import launch

MEASURED = {}


def _merge(per_rank: list) -> dict:
    """Worst gradient difference over ranks; losses and coverage agree on every rank."""
    merged = {}
    for key in per_rank[0]:
        if key == "halo":
            merged[key] = [r[key] for r in per_rank]
            continue
        worst = max(per_rank, key=lambda r: r[key]["grad_rel"])[key]
        merged[key] = dict(per_rank[0][key], grad_rel=worst["grad_rel"], worst_param=worst["worst_param"])
        MEASURED[key] = merged[key]
    return merged


@pytest.fixture(scope="session")
def cp_two_rank_results():
    return _merge(launch(compare_layouts, 2, TWO_RANK_LAYOUTS))


@pytest.fixture(scope="session")
def cp_four_rank_results():
    return _merge(launch(compare_layouts, 4, FOUR_RANK_LAYOUTS, ("griffin", "hawk"), True))


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section("context parallelism vs single process (max relative difference)")
    for (arch, layout), m in sorted(MEASURED.items()):
        terminalreporter.write_line(
            f"{arch:8s} {layout:18s} loss {m['loss_rel']:.1e}  grads {m['grad_rel']:.1e}"
            f"  (all {m['params_total']} parameters; worst {m['worst_param']})"
        )
