"""Bridges for the places where Megatron-Core 0.16 assumes CUDA, active only without CUDA.

Installed by `griffin_megatron.runtime.ensure_initialized` (and by the training driver) when
`torch.cuda.is_available()` is False; on a GPU machine `install()` does nothing. With them,
Megatron-Core's own pipeline schedules, DistributedDataParallel, optimizers (including the
distributed optimizer) and dist_checkpointing run unchanged on CPUs over gloo.

- RNG tracker: Megatron's CudaRNGStatesTracker stores CUDA generator states; on a CPU the
  tracked states are CPU generator states instead (same seeds, same fork semantics).
- "CUDA" RNG state save/restore (activation recompute's CheckpointFunction): the device
  generator is the CPU generator.
- `torch.cuda.synchronize()` (checkpoint writer, timers, p2p) has nothing to wait for: a no-op.
- `torch.cuda.current_device()` is used as a tensor device (DDP grad buffers, schedules, p2p
  shapes, checkpoint metadata exchange): it names the CPU.
- CUDA requests written as literals inside megatron.core -- `device="cuda"` (the schedules'
  token counter, optimizer flags, grad-norm buffers, checkpoint exchange buffers), `.cuda()`,
  `pin_memory=True`, and type-name checks such as `grad.type() == 'torch.cuda.FloatTensor'`
  (gradient clipping, distributed optimizer) -- are answered on the CPU by a torch-function
  mode. It only rewrites calls made from megatron.core's own code: anywhere else a CUDA request
  on a machine without CUDA still fails as usual.
"""

from __future__ import annotations

import contextlib
import sys

import torch
from megatron.core.tensor_parallel import random as megatron_random
from torch.overrides import TorchFunctionMode

MEGATRON_PACKAGE = "megatron.core"

_installed = False
_mode = None


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


def _cpu_generator_state(device=None, clone=False, graph_safe=False):
    return torch.get_rng_state()


def _set_cpu_generator_state(new_state, device=-1, graph_safe=False):
    torch.set_rng_state(new_state)


def _install_rng_state_functions() -> None:
    # CheckpointFunction (activation recompute) saves and restores "the CUDA generator" through
    # these two module functions; on a CPU the generator that dropout draws from is the CPU one.
    megatron_random._get_cuda_rng_state = _cpu_generator_state
    megatron_random._set_cuda_rng_state = _set_cpu_generator_state


def _install_cuda_device_stand_ins() -> None:
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.current_device = lambda: "cpu"


def _is_cuda_device(device) -> bool:
    if isinstance(device, bool):
        return False
    if isinstance(device, int):
        return True  # an integer device is a CUDA ordinal
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, torch.device) and device.type == "cuda"


def _called_from_megatron() -> bool:
    """Whether the torch call being handled was made by megatron.core's code (frames of torch's
    own Python wrappers in between are skipped)."""
    frame = sys._getframe(2)  # 0: this function, 1: __torch_function__, 2: the caller
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not (module == "torch" or module.startswith("torch.")):
            return module.startswith(MEGATRON_PACKAGE)
        frame = frame.f_back
    return False


# Tensor methods the mode may rewrite whatever their arguments; any other call only when it
# names a device.
_METHODS_TO_CHECK = frozenset({torch.Tensor.type, torch.Tensor.cuda, torch.Tensor.to})


class MegatronCudaRequestsOnCpu(TorchFunctionMode):
    """Answers Megatron-Core's literal CUDA requests with CPU tensors (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Fast path: every torch call of the process passes through here, and most neither name
        # a device nor are one of the methods above (halves the per-call cost of small ops).
        if func not in _METHODS_TO_CHECK and kwargs.get("device") is None:
            return func(*args, **kwargs)
        if func is torch.Tensor.type and _called_from_megatron():
            return self._type(args, kwargs)
        if func is torch.Tensor.cuda and _called_from_megatron():
            return args[0]
        if _is_cuda_device(kwargs.get("device")) and _called_from_megatron():
            kwargs = {**kwargs, "device": "cpu"}
            if kwargs.get("pin_memory"):
                kwargs["pin_memory"] = False
        elif func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            if _called_from_megatron():
                args = (args[0], "cpu") + tuple(args[2:])
        return func(*args, **kwargs)

    @staticmethod
    def _type(args, kwargs):
        tensor = args[0]
        requested = args[1] if len(args) > 1 else kwargs.get("dtype")
        if requested is None:
            # The name the tensor would have on a GPU: Megatron checks for 'torch.cuda.*Tensor'.
            name = torch.Tensor.type(tensor)
            return name if ".cuda." in name else name.replace("torch.", "torch.cuda.", 1)
        if isinstance(requested, str):
            requested = requested.replace("torch.cuda.", "torch.", 1)
        return torch.Tensor.type(tensor, requested, *args[2:], **{
            k: v for k, v in kwargs.items() if k != "dtype"
        })


def _install_cuda_request_mode() -> None:
    global _mode
    _mode = MegatronCudaRequestsOnCpu()
    # Entered for good: the mode stays on this thread's torch-function stack.
    _mode.__enter__()


@contextlib.contextmanager
def paused():
    """Run a block without the torch-function mode: for our own code that never takes
    Megatron-Core's CUDA-literal paths (generation, where a token step is hundreds of small ops
    and the mode's Python call on each was a third of the step's time on a CPU)."""
    if _mode is None or torch.overrides._get_current_function_mode() is not _mode:
        yield  # not installed, or another mode entered above ours: leave the stack alone
        return
    with torch.overrides._pop_mode_temporarily():
        yield


def install() -> bool:
    """Install every bridge once; returns True when active (no CUDA)."""
    global _installed
    if torch.cuda.is_available():
        return False
    if not _installed:
        _install_rng_tracker()
        _install_rng_state_functions()
        _install_cuda_device_stand_ins()
        _install_cuda_request_mode()
        _installed = True
    return True


def is_active() -> bool:
    return _installed
