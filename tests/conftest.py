"""Session-wide setup.

- Without CUDA, Triton kernels run in the interpreter. TRITON_INTERPRET must be set before
  Triton is first imported (Megatron-Core imports it too), so it is set here, in the conftest
  pytest loads first; tests/ops/conftest.py adds the interpreter speed-up.
- One single-process Megatron parallel state for in-process model tests. Multi-process tests
  launch their own workers and never use it.
- The fixtures several folders share (tests/fixtures/plugin.py). Every folder of tests/ is a
  package, so tests and their helpers import each other as `tests.<folder>.<module>`.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

pytest_plugins = ["tests.fixtures.plugin"]


@pytest.fixture(scope="session")
def megatron_single_process():
    from griffin_megatron.runtime import ensure_initialized

    ensure_initialized()
    yield
