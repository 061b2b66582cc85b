"""Bridges for the places where Megatron-Core assumes CUDA, active only on a machine without it.

With them, Megatron-Core's own pipeline schedules, DistributedDataParallel, optimizers (the
distributed one too) and dist_checkpointing run unchanged on CPUs over gloo. On a GPU machine
nothing here does anything. Nothing is installed for the whole process except the one piece
Megatron itself keeps for the whole process, its RNG tracker:

`cuda_requests_on_cpu()`: a block, entered around the Megatron calls that need it (DDP and
optimizer construction, dist_checkpointing save and load; the training loop and the test
workers enter it around their whole run). While it is open, and restored to torch's and
Megatron's own objects when the last one closes:
- torch.cuda.synchronize / current_device / current_stream / default_stream / Stream / stream /
  Event answer calls made from Megatron's code with CPU stand-ins (nothing to wait for; the
  current device is the CPU, which Megatron uses as a tensor device); a call from any other code
  reaches torch's own function and fails without CUDA as usual.
- "CUDA" RNG state save/restore (activation recompute's CheckpointFunction): the device
  generator is the CPU generator.
- CUDA requests written as literals inside Megatron -- `device="cuda"` (the schedules' token
  counter, optimizer flags, grad-norm buffers, checkpoint exchange buffers), `.cuda()`,
  `pin_memory=True`, and type-name checks such as `grad.type() == 'torch.cuda.FloatTensor'`
  (gradient clipping, distributed optimizer) -- are answered on the CPU by a torch-function
  mode (this thread only). It rewrites only calls made from Megatron's code.
`cuda_stand_ins_on_cpu()` is the same block without the mode (the first two parts): the command
line runs each command inside it, so that Megatron's tensor-parallel forward (generate,
evaluate) runs on CPUs at no cost per torch call.

`model_parallel_manual_seed(seed)`: Megatron's `model_parallel_cuda_manual_seed`, which creates
Megatron's RNG tracker (a module global of megatron.core.tensor_parallel.random) and seeds its
named streams. Megatron's layers fork that tracker whenever they draw random numbers (dropout,
initialisation) and checkpoints save its states, so it lives as long as the model, not for one
call. Without CUDA the tracker put there is `CpuRNGStatesTracker` (CPU generator states, same
seeds, same fork semantics), and only here, where Megatron would create its own.

Every Megatron-Core release the project supports (0.16 to 0.19) needs these on a CPU; they are
gated on the absence of CUDA, not on a version.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from typing import Iterator

import torch
from megatron.core.tensor_parallel import random as megatron_random
from torch.overrides import TorchFunctionMode

MEGATRON_PACKAGES = ("megatron.core", "megatron.training")


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


def use_cpu_rng_tracker() -> None:
    """Megatron's RNG tracker global becomes a CpuRNGStatesTracker (unless it is one already)."""
    if not isinstance(megatron_random._CUDA_RNG_STATE_TRACKER, CpuRNGStatesTracker):
        megatron_random._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
        megatron_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = True


def model_parallel_manual_seed(seed: int) -> None:
    """megatron.core.tensor_parallel.model_parallel_cuda_manual_seed(seed), with the tracker
    kept on the CPU generator when there is no CUDA (see the module docstring)."""
    if not torch.cuda.is_available():
        use_cpu_rng_tracker()
    megatron_random.model_parallel_cuda_manual_seed(seed)


def _cpu_generator_state(device=None, clone=False, graph_safe=False):
    return torch.get_rng_state()


def _set_cpu_generator_state(new_state, device=-1, graph_safe=False):
    torch.set_rng_state(new_state)


class _CpuStream:
    """What Megatron asks of a CUDA stream, on a machine whose work is already in order."""

    def wait_event(self, event):
        pass

    def wait_stream(self, stream):
        pass

    def synchronize(self):
        pass

    def record_event(self, event=None):
        return event or _CpuEvent()

    def query(self):
        return True


class _CpuEvent:
    """What Megatron asks of a CUDA event (timers, grad-sync readiness)."""

    def __init__(self, *args, **kwargs):
        pass

    def record(self, stream=None):
        pass

    def wait(self, stream=None):
        pass

    def synchronize(self):
        pass

    def query(self):
        return True

    def elapsed_time(self, other):
        return 0.0


# torch.cuda function -> what it gives a caller inside Megatron on a machine without CUDA.
# `current_device()` names the CPU because Megatron uses it as a tensor device (DDP buffers,
# schedules, p2p shapes, checkpoint metadata exchange). Megatron-Core 0.19 calls
# `current_stream()` on every gradient sync (param_and_grad_buffer.start_grad_sync).
_CPU_STAND_INS = {
    "synchronize": lambda device=None: None,
    "current_device": lambda: "cpu",
    "current_stream": lambda device=None: _CpuStream(),
    "default_stream": lambda device=None: _CpuStream(),
    "Stream": lambda *args, **kwargs: _CpuStream(),
    "Event": _CpuEvent,
    "stream": lambda stream=None: contextlib.nullcontext(),
}


def _scoped_to_megatron(name):
    """torch.cuda.<name> that answers Megatron's calls with the CPU stand-in and everybody
    else's with torch's own function or class (which fails without CUDA, as it should)."""
    original, stand_in = getattr(torch.cuda, name), _CPU_STAND_INS[name]
    if isinstance(original, type):
        return _scoped_class(original, stand_in)

    @functools.wraps(original)
    def dispatch(*args, **kwargs):
        if _called_from_megatron(depth=1):
            return stand_in(*args, **kwargs)
        return original(*args, **kwargs)

    return dispatch


def _scoped_class(original: type, stand_in) -> type:
    """A class in place of torch.cuda.Stream / Event: constructing it dispatches like the
    functions above, and it stays a class (other packages write `torch.cuda.Stream | None` in
    annotations and call isinstance with it)."""

    class ScopedToMegatron(type):
        def __call__(cls, *args, **kwargs):
            if _called_from_megatron(depth=1):
                return stand_in(*args, **kwargs)
            return original(*args, **kwargs)

        def __instancecheck__(cls, instance):
            return isinstance(instance, (original, _CpuStream, _CpuEvent))

        def __subclasscheck__(cls, subclass):
            return issubclass(subclass, original)

    return ScopedToMegatron(original.__name__, (), {"__module__": original.__module__,
                                                    "__doc__": original.__doc__})


def _is_cuda_device(device) -> bool:
    if isinstance(device, bool):
        return False
    if isinstance(device, int):
        return True  # an integer device is a CUDA ordinal
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, torch.device) and device.type == "cuda"


def _called_from_megatron(depth: int = 1) -> bool:
    """Whether the torch call being handled was made by Megatron's code (megatron.core, or
    megatron.training from 0.18 on); frames of torch's own Python wrappers in between are
    skipped. `depth` is how many frames separate the caller of this function from the call
    being judged (1: the handler was called by it directly)."""
    frame = sys._getframe(depth + 1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not (module == "torch" or module.startswith("torch.")):
            return module.startswith(MEGATRON_PACKAGES)
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


def _megatron_attribute_stand_ins() -> dict:
    """(module, attribute) -> what stands in for it inside the block, built from the attribute
    torch or Megatron has now."""
    stand_ins = {(torch.cuda, name): _scoped_to_megatron(name) for name in _CPU_STAND_INS}
    # CheckpointFunction (activation recompute) saves and restores "the CUDA generator" through
    # these two module functions; on a CPU the generator that dropout draws from is the CPU one.
    stand_ins[(megatron_random, "_get_cuda_rng_state")] = _cpu_generator_state
    stand_ins[(megatron_random, "_set_cuda_rng_state")] = _set_cpu_generator_state
    return stand_ins


# The attributes are the process's, so they are replaced when the first block opens in any
# thread and put back when the last one closes; the torch-function mode is per thread.
_attributes_lock = threading.Lock()
_open_blocks = 0
_replaced = {}  # (module, attribute) -> the object torch or Megatron had there
_request_mode = threading.local()


@contextlib.contextmanager
def _attributes_on_cpu() -> Iterator[None]:
    global _open_blocks
    with _attributes_lock:
        if _open_blocks == 0:
            for (owner, name), stand_in in _megatron_attribute_stand_ins().items():
                _replaced[(owner, name)] = getattr(owner, name)
                setattr(owner, name, stand_in)
        _open_blocks += 1
    try:
        yield
    finally:
        with _attributes_lock:
            _open_blocks -= 1
            if _open_blocks == 0:
                for (owner, name), original in _replaced.items():
                    setattr(owner, name, original)
                _replaced.clear()


@contextlib.contextmanager
def _requests_mode() -> Iterator[None]:
    if getattr(_request_mode, "depth", 0):
        yield
        return
    _request_mode.depth = 1
    try:
        with MegatronCudaRequestsOnCpu():
            yield
    finally:
        _request_mode.depth = 0


@contextlib.contextmanager
def cuda_stand_ins_on_cpu() -> Iterator[None]:
    """The torch.cuda stand-ins and RNG-state functions of `cuda_requests_on_cpu`, without its
    torch-function mode, so no torch call pays for it: enough for Megatron's tensor-parallel
    forward (its mappings allocate on `torch.cuda.current_device()`). Restored on exit;
    re-entrant; does nothing where CUDA is available."""
    if torch.cuda.is_available():
        yield
        return
    with _attributes_on_cpu():
        yield


@contextlib.contextmanager
def cuda_requests_on_cpu() -> Iterator[None]:
    """Inside this block Megatron's CUDA requests are answered on the CPU (see the module
    docstring); on exit torch.cuda and Megatron's RNG-state functions are torch's and
    Megatron's own again. Re-entrant; does nothing where CUDA is available.

    Entered around the Megatron calls that need it (DDP and optimizer construction, checkpoint
    save and load) and by the training loops and test workers around their run. Outside it
    (generation, where a token step is hundreds of small ops) no torch call pays for the mode."""
    if torch.cuda.is_available():
        yield
        return
    with _attributes_on_cpu(), _requests_mode():
        yield


def is_open() -> bool:
    """Whether a block is open in some thread (the attributes are replaced)."""
    return _open_blocks > 0
