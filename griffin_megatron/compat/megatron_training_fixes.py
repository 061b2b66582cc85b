"""Two fixes for megatron.training (megatron-core 0.19) that GPU users need too, applied while
`installed()` is active. The same changes as source patches against the megatron-core 0.19.2
release are in patches/ (for those who vendor Megatron-LM); tests/megatron_training/
test_upstream_fixes.py shows each unfixed original still failing.

1. `initialize._compile_dependencies` runs `make` in megatron/core/datasets on rank 0 at every
   start, but the wheels ship the dataset helpers compiled (`helpers_cpp*.so`) and no Makefile:
   `make` fails and `pretrain()` exits. Fixed: when `helpers_cpp` imports, nothing is compiled
   (the ranks still meet at the barrier); a source tree without it is compiled as before.
2. `DistributedOptimizer.load_parameter_state_from_dp_reshardable` (resuming a torch_dist
   checkpoint of the distributed optimizer, Megatron-LM's default layout) copies the saved
   values into the main parameters with grad mode on. With fp32 training the main parameters
   are the model's leaf parameters, and the in-place copy fails ("a leaf Variable that requires
   grad is being used in an in-place operation"). Fixed: the method runs under `no_grad`, as
   its sibling `load_parameter_state_from_fs_model_space` already does.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch
from megatron.core.package_info import __version__ as MEGATRON_CORE_VERSION

# Releases whose `load_parameter_state_from_dp_reshardable` lacks no_grad (checked: 0.19.2).
NO_GRAD_FIXED_VERSIONS = ("0.18.", "0.19.")


def helpers_are_compiled() -> bool:
    try:
        from megatron.core.datasets import helpers_cpp  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def no_make_for_compiled_helpers() -> Iterator[None]:
    from megatron.training import initialize

    original = initialize._compile_dependencies

    @functools.wraps(original)
    def _compile_dependencies():
        if not helpers_are_compiled():
            return original()
        torch.distributed.barrier()

    initialize._compile_dependencies = _compile_dependencies
    try:
        yield
    finally:
        initialize._compile_dependencies = original


def dp_reshardable_load_needs_no_grad() -> bool:
    return MEGATRON_CORE_VERSION.startswith(NO_GRAD_FIXED_VERSIONS)


@contextlib.contextmanager
def dp_reshardable_load_without_grad() -> Iterator[None]:
    if not dp_reshardable_load_needs_no_grad():
        yield
        return
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    original = DistributedOptimizer.load_parameter_state_from_dp_reshardable
    DistributedOptimizer.load_parameter_state_from_dp_reshardable = torch.no_grad()(original)
    try:
        yield
    finally:
        DistributedOptimizer.load_parameter_state_from_dp_reshardable = original


@contextlib.contextmanager
def installed() -> Iterator[None]:
    with no_make_for_compiled_helpers(), dp_reshardable_load_without_grad():
        yield
