"""Module-scoped tiny models (one process, TP=1), run on one intra-op thread.

The tiny models' ops are microseconds long: a second OpenMP thread only adds synchronisation,
and on a machine shared with other jobs each op can stall waiting for a preempted thread.
"""

import pytest
import torch
from tiny_models import build_tiny_model


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def griffin():
    return build_tiny_model("RRA")


@pytest.fixture(scope="module")
def hawk():
    return build_tiny_model("R")
