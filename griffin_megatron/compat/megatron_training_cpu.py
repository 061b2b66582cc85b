"""Bridges that let `megatron.training.pretrain()` (megatron-core 0.19) run on CPUs over gloo.

griffin_megatron.compat.cpu bridges what Megatron-Core and Megatron-LM's loop share (the RNG
tracker, and within its block `torch.cuda.current_device/synchronize/Stream/stream/
current_stream` for Megatron's code and `device="cuda"` literals, `.cuda()` and
`torch.cuda.*Tensor` type checks inside megatron.core and megatron.training); `installed()`
opens that block too. Megatron-LM's training loop adds these, each bridged here
only while `installed()` is active, only on a machine without CUDA, and each shown failing
without its bridge by tests/megatron_training/test_cpu_bridges.py:

- `initialize_megatron` asserts CUDA unless `allow_no_cuda=True`, which `pretrain()` never
  passes: pretrain's call gets `allow_no_cuda=True`.
- `_initialize_distributed` creates the model-parallel groups only when
  `torch.cuda.device_count() > 0`: without devices they are created afterwards with the same
  sizes.
- `_set_random_seed` seeds the model-parallel RNG tracker only when `device_count() > 0`:
  without devices the tracker gets the seed Megatron-LM gives it on GPUs.
- `torch.cuda.get_rng_state` / `set_rng_state` (the RNG states in every checkpoint): the CPU
  generator, which is the generator dropout and initialisation draw from on a CPU.
- `get_device_arch_version()` in `validate_args` reads the properties of `cuda:0`: the
  architecture is reported as 0 (pre-Blackwell), and CUDA_DEVICE_MAX_CONNECTIONS=1, which
  validate_args then asks for with tensor parallelism, is set for the block if unset.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import torch

MAX_CONNECTIONS = "CUDA_DEVICE_MAX_CONNECTIONS"


def cuda_missing() -> bool:
    return not torch.cuda.is_available()


@contextlib.contextmanager
def patched(owner, name: str, value) -> Iterator[None]:
    """owner.name = value for the duration of the block."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


# initialize_megatron ---------------------------------------------------------------------------

@contextlib.contextmanager
def initialize_without_cuda() -> Iterator[None]:
    from megatron.training import training

    original = training.initialize_megatron

    @functools.wraps(original)
    def initialize_megatron(*args, **kwargs):
        kwargs["allow_no_cuda"] = True
        return original(*args, **kwargs)

    with patched(training, "initialize_megatron", initialize_megatron):
        yield


@contextlib.contextmanager
def model_parallel_groups_without_devices() -> Iterator[None]:
    from megatron.core import parallel_state as mpu
    from megatron.training import get_args, initialize

    original = initialize._initialize_distributed

    @functools.wraps(original)
    def _initialize_distributed(get_embedding_ranks, get_position_embedding_ranks, store,
                                skip_model_parallel_init=False):
        original(get_embedding_ranks, get_position_embedding_ranks, store,
                 skip_model_parallel_init=skip_model_parallel_init)
        if skip_model_parallel_init or mpu.model_parallel_is_initialized():
            return
        args = get_args()
        mpu.initialize_model_parallel(
            args.tensor_model_parallel_size,
            args.pipeline_model_parallel_size,
            args.virtual_pipeline_model_parallel_size,
            context_parallel_size=args.context_parallel_size,
            expert_model_parallel_size=args.expert_model_parallel_size,
            expert_tensor_parallel_size=args.expert_tensor_parallel_size,
            num_distributed_optimizer_instances=args.num_distributed_optimizer_instances,
            distributed_timeout_minutes=args.distributed_timeout_minutes,
            order="tp-cp-ep-dp-pp" if not args.use_tp_pp_dp_mapping else "tp-cp-ep-pp-dp",
            get_embedding_ranks=get_embedding_ranks,
            get_position_embedding_ranks=get_position_embedding_ranks,
            create_gloo_process_groups=args.use_gloo_process_groups,
        )

    with patched(initialize, "_initialize_distributed", _initialize_distributed):
        yield


@contextlib.contextmanager
def rng_tracker_seeding_without_devices() -> Iterator[None]:
    from megatron.core import parallel_state as mpu
    from megatron.training import initialize

    from .cpu import model_parallel_manual_seed

    original = initialize._set_random_seed

    @functools.wraps(original)
    def _set_random_seed(seed_, data_parallel_random_init=False, *args, **kwargs):
        original(seed_, data_parallel_random_init, *args, **kwargs)
        if seed_ is None or seed_ <= 0:
            return
        # The seed Megatron-LM gives the tracker on GPUs (initialize._set_random_seed).
        seed = seed_ + 100 * mpu.get_pipeline_model_parallel_rank()
        if data_parallel_random_init:
            seed += 10 * mpu.get_data_parallel_rank()
        model_parallel_manual_seed(seed)  # with Megatron's tracker on CPU generator states

    with patched(initialize, "_set_random_seed", _set_random_seed):
        yield


# generator state and device architecture ------------------------------------------------------

@contextlib.contextmanager
def cuda_rng_state_is_cpu_state() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(torch.cuda, "get_rng_state",
                                    lambda device="cuda": torch.get_rng_state()))
        stack.enter_context(patched(torch.cuda, "set_rng_state",
                                    lambda new_state, device="cuda": torch.set_rng_state(new_state)))
        yield


@contextlib.contextmanager
def no_device_architecture() -> Iterator[None]:
    from megatron.training import arguments

    # Architectures before Blackwell (reported here) need one CUDA connection with tensor
    # parallelism, which validate_args checks in the environment; a CPU has no connections.
    saved = os.environ.get(MAX_CONNECTIONS)
    os.environ.setdefault(MAX_CONNECTIONS, "1")
    try:
        with patched(arguments, "get_device_arch_version", lambda: 0):
            yield
    finally:
        if saved is None:
            os.environ.pop(MAX_CONNECTIONS, None)


BRIDGES = (
    initialize_without_cuda,
    model_parallel_groups_without_devices,
    rng_tracker_seeding_without_devices,
    cuda_rng_state_is_cpu_state,
    no_device_architecture,
)


@contextlib.contextmanager
def installed() -> Iterator[bool]:
    """Every bridge for the block, on a machine without CUDA (yields whether they are on);
    with CUDA nothing changes."""
    if not cuda_missing():
        yield False
        return
    from .cpu import cuda_requests_on_cpu

    with contextlib.ExitStack() as stack:
        stack.enter_context(cuda_requests_on_cpu())
        for bridge in BRIDGES:
            stack.enter_context(bridge())
        yield True
