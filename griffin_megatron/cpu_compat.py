"""Bridges for the few places where Megatron-Core 0.16 assumes CUDA, active only without CUDA.

Installed by `griffin_megatron.runtime.ensure_initialized` (and by the training driver) when
`torch.cuda.is_available()` is False; on a GPU machine `install()` does nothing.

- RNG tracker: Megatron's CudaRNGStatesTracker stores CUDA generator states; on a CPU the
  tracked states are CPU generator states instead (same seeds, same fork semantics).
- `torch.cuda.synchronize()` (checkpoint writer, timers) has nothing to wait for: a no-op.
- `torch.cuda.current_device()` is used as a tensor device (schedules, checkpoint metadata
  exchange): it names the CPU.
"""

from __future__ import annotations

import contextlib

import torch
from megatron.core.tensor_parallel import random as megatron_random

_installed = False


class CpuRNGStatesTracker(megatron_random.CudaRNGStatesTracker):
    """Megatron's named RNG streams, kept as CPU generator states."""

    def add(self, name, seed):
        self._is_initialized = True
        if seed in self.seeds_:
            raise Exception(f"seed {seed} already exists")
        if name in self.states_:
            raise Exception(f"rng state {name} already exists")
        self.seeds_.add(seed)
        original = torch.get_rng_state()
        torch.manual_seed(seed)
        self.states_[name] = torch.get_rng_state()
        torch.set_rng_state(original)

    @contextlib.contextmanager
    def fork(self, name=megatron_random._MODEL_PARALLEL_RNG_TRACKER_NAME):
        if name not in self.states_:
            raise Exception(f"rng state {name} is not added")
        original = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(original)


def _install_rng_tracker() -> None:
    megatron_random._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    megatron_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = True


def _install_cuda_device_stand_ins() -> None:
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.current_device = lambda: "cpu"


def install() -> bool:
    """Install every bridge once; returns True when active (no CUDA)."""
    global _installed
    if torch.cuda.is_available():
        return False
    if not _installed:
        _install_rng_tracker()
        _install_cuda_device_stand_ins()
        _installed = True
    return True
