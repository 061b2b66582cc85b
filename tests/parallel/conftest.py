"""Launches shared by the parallel tests: one per world size and backend, run once per session.

CPU (gloo) launches always run; the CUDA (NCCL) ones only under `-m cuda` with enough GPUs.
The measured differences are printed at the end of the run.
"""

from __future__ import annotations

import pytest
import torch

from tests.parallel.checkpoint_worker import four_rank_checks
from tests.parallel.harness import launch
from tests.parallel.layout_worker import ARCHS, TWO_RANK_LAYOUTS, compare_layouts

MEASURED = {}


def merge_layout_results(per_rank: list) -> dict:
    """Worst gradient difference over ranks; losses and coverage are the same on every rank."""
    merged = {}
    for key in per_rank[0]:
        worst = max(per_rank, key=lambda r: r[key]["grad_rel"])[key]
        merged[key] = dict(per_rank[0][key], grad_rel=worst["grad_rel"], worst_param=worst["worst_param"])
    return merged


def _require_gpus(backend: str, world_size: int) -> None:
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        pytest.skip(f"needs {world_size} CUDA GPUs, found {torch.cuda.device_count()}")


def _two_rank(backend: str) -> dict:
    _require_gpus(backend, 2)
    results = merge_layout_results(launch(compare_layouts, 2, TWO_RANK_LAYOUTS, ARCHS, backend=backend))
    MEASURED.update({(backend, *key): value for key, value in results.items()})
    return results


def _four_rank(backend: str, directory) -> dict:
    _require_gpus(backend, 4)
    per_rank = launch(four_rank_checks, 4, str(directory), backend=backend)
    layouts = merge_layout_results([r["layouts"] for r in per_rank])
    MEASURED.update({(backend, *key): value for key, value in layouts.items()})
    return dict(layouts=layouts, checkpoints=per_rank[0]["checkpoints"], directory=directory)


@pytest.fixture(scope="session")
def two_rank_results():
    return _two_rank("gloo")


@pytest.fixture(scope="session")
def four_rank_results(tmp_path_factory):
    return _four_rank("gloo", tmp_path_factory.mktemp("checkpoints-gloo"))


@pytest.fixture(scope="session")
def cuda_two_rank_results():
    return _two_rank("nccl")


@pytest.fixture(scope="session")
def cuda_four_rank_results(tmp_path_factory):
    return _four_rank("nccl", tmp_path_factory.mktemp("checkpoints-nccl"))


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section("parallel layouts vs single process (max relative difference)")
    for (backend, arch, layout), m in sorted(MEASURED.items()):
        terminalreporter.write_line(
            f"{backend:5s} {arch:8s} {layout:11s} loss {m['loss_rel']:.1e}  grads {m['grad_rel']:.1e}"
            f"  (all {m['params_total']} parameters; worst {m['worst_param']})"
        )
