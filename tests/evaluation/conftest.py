"""Tiny random Hawk / Griffin models (the generation tests' builders), on one intra-op thread."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "generation"))

from tiny_models import build_tiny_model  # noqa: E402


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
