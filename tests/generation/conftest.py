"""Module-scoped tiny models (one process, TP=1)."""

import pytest
from tiny_models import build_tiny_model


@pytest.fixture(scope="module")
def griffin():
    return build_tiny_model("RRA")


@pytest.fixture(scope="module")
def hawk():
    return build_tiny_model("R")
