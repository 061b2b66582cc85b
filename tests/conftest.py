"""Test-session setup that must happen before any test module imports Megatron-Core.

Without a GPU the Triton kernels run in Triton's interpreter (TRITON_INTERPRET=1, see
tests/ops/conftest.py). The variable has to be set before `megatron.core` is first imported:
that import sets up Triton's JIT, and kernels defined afterwards are then not interpreted
("Cannot call @triton.jit'd outside of the scope of a kernel"). pytest imports the test modules
of each folder in turn, so once a folder before tests/ops imports Megatron, the ops conftest
alone is too late; this root conftest is loaded first.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
