"""How the RG-LRU Triton kernels are launched: candidate tiles, the choice among them, tuning.

Triton's `triton.autotune` benchmarks on the first call of every new key, inside whatever step
makes that call, even when pruning leaves one config: a device synchronisation and a 256 MB
cache-flush buffer, and an error inside CUDA-graph capture. Here nothing is timed during a step:

- a call with one eligible candidate (small shapes, the interpreter) launches it directly;
- a call with several launches the one `warm_up` measured for its key, or, for a key nobody
  warmed up, the first candidate (logged once per key, naming the warm-up to call);
- timing happens only inside `tuning()`, which `warm_up.py` enters, and is refused during
  CUDA-graph capture.

`recording()` collects the launches (kernel, arguments, candidate) instead of running them:
benchmarks/rglru_compile_check.py compiles exactly what a launch would. `forcing()` pins a
candidate per group, so tests can run every candidate.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One tile configuration: channels per program and warps per program."""

    block_d: int
    num_warps: int

    def __str__(self) -> str:
        return f"BLOCK_D={self.block_d} warps={self.num_warps}"

    def options(self) -> dict:
        """The launch options besides BLOCK_D."""
        return dict(num_warps=self.num_warps)


# Candidates per group, the default first. A tile holds TILE_T (64) x BLOCK_D fp32 values per
# live tensor; per thread that is 64 * BLOCK_D / (32 * warps). ptxas picks a register target
# from the block size (65536 / threads per SM it wants resident) and, right at that target,
# spills a few bytes rather than give up a block per SM. As launched (with the divisibility
# hints) or without hints, with the optional tensors given or absent, in bf16 or fp32, these
# spilled on at least one of triton 3.6.0 / 3.7.1 / 3.9.0: forward (32, 8) 8-12 B at 80
# registers, (64, 8) 20-40 B at 128, (16, 4) 8 B at 80 (fp32, 3.7.1), (16, 8) and (16, 16)
# 8 B at 64; backward (16, 8) 4 B at 128, (32, 16) 20 B at 128. A register cap (`maxnreg`) made
# ptxas spill the variant without hints instead. What is left:
# - forward (32, 16): 40-83 registers, 1 block of 16 warps per SM sequentially, 3 chunked;
# - backward (8, 4): 128-133 registers, 3-4 blocks of 4 warps per SM; (16, 16): ~114, 1 block.
# benchmarks/rglru_compile_check.py compiles every candidate as launched and without hints, on
# triton 3.6.0, 3.7.1 and 3.9.0, and fails on a spill; benchmarks/RESULTS.md has the table.
# "fwd" serves the forward kernel and both summary kernels, "bwd" the backward kernel.
CANDIDATES: Dict[str, Tuple[Candidate, ...]] = {
    "fwd": (Candidate(32, 16),),
    "bwd": (Candidate(8, 4), Candidate(16, 16)),
}
# Below this many elements a call takes microseconds: the first candidate is good enough, and
# tuning would only compile the others.
AUTOTUNE_MIN_ELEMENTS = 1 << 22


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1) instead of compiling.

    The one place that asks: candidate pruning, the carry-scan block and the device check use it.
    """
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@dataclass(frozen=True)
class RecordedLaunch:
    """A launch as `recording()` saw it: the kernel, its keyword arguments, the candidate."""

    kernel: object  # the @triton.jit function (under its heuristics)
    name: str
    group: Optional[str]
    args: dict
    candidate: Candidate


_tuning = contextvars.ContextVar("rglru_tuning", default=False)
_recorded: contextvars.ContextVar[Optional[List[RecordedLaunch]]] = contextvars.ContextVar(
    "rglru_recorded", default=None)
_forced: contextvars.ContextVar[Dict[str, Candidate]] = contextvars.ContextVar(
    "rglru_forced", default={})


@contextlib.contextmanager
def tuning():
    """Inside: a call with several candidates and no measured choice times them all once."""
    token = _tuning.set(True)
    try:
        yield
    finally:
        _tuning.reset(token)


@contextlib.contextmanager
def recording():
    """Inside: launches are appended to the yielded list instead of running."""
    launches: List[RecordedLaunch] = []
    token = _recorded.set(launches)
    try:
        yield launches
    finally:
        _recorded.reset(token)


@contextlib.contextmanager
def forcing(**candidates: Candidate):
    """Inside: the named groups ("fwd", "bwd") launch the given candidate whatever the shape."""
    for group, candidate in candidates.items():
        if candidate not in CANDIDATES[group]:
            raise ValueError(f"rglru: {candidate} is not a {group!r} candidate "
                             f"({', '.join(map(str, CANDIDATES[group]))}).")
    token = _forced.set({**_forced.get(), **candidates})
    try:
        yield
    finally:
        _forced.reset(token)


def refuse_during_capture() -> None:
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            "rglru: tuning the Triton kernels times them with device synchronisations, which "
            "CUDA-graph capture forbids; call griffin_megatron.ops.rglru.warm_up (or "
            "warm_up_kernels(model, micro_batch, seq_len)) before capturing."
        )


def _time_ms(launch, repeats: int = 5) -> float:
    """Mean time of `repeats` launches after one untimed one (which also compiles)."""
    launch()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        launch()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeats


class KernelLauncher:
    """Launches one kernel with a candidate chosen without timing anything during a step."""

    def __init__(self, name: str, kernel, group: Optional[str], key: Sequence[str],
                 fixed: Optional[Candidate] = None):
        self.name = name
        self.kernel = kernel
        self.group = group  # None: the `fixed` candidate only (the latency-bound carry scan)
        self.key = tuple(key)
        self.fixed = fixed
        self.chosen: Dict[tuple, Candidate] = {}  # measured by warm-up, per key
        self._untuned_logged: set = set()

    def eligible(self, args: dict) -> Tuple[Candidate, ...]:
        """The candidates a call may use: all for large calls on a GPU, else only the first."""
        if self.group is None:
            return (self.fixed,)
        forced = _forced.get().get(self.group)
        if forced is not None:
            return (forced,)
        candidates = CANDIDATES[self.group]
        if interpreting() or args["T"] * args["B"] * args["D"] < AUTOTUNE_MIN_ELEMENTS:
            return candidates[:1]
        return candidates

    def _key(self, args: dict) -> tuple:
        # The first tensor is an input ([T, B, D], the model's dtype). Optional tensors (resets,
        # states) do not enter the key: a prefill with a cached state reuses training's choice.
        first = next(v for v in args.values() if isinstance(v, torch.Tensor))
        return (str(first.device), str(first.dtype)) + tuple(args[k] for k in self.key)

    def _choose(self, grid, args: dict) -> Candidate:
        candidates = self.eligible(args)
        if len(candidates) == 1:
            return candidates[0]
        key = self._key(args)
        if key in self.chosen:
            return self.chosen[key]
        if _tuning.get():
            refuse_during_capture()
            times = {c: _time_ms(lambda c=c: self._run(grid, args, c)) for c in candidates}
            self.chosen[key] = min(times, key=times.get)
            logger.info("rglru %s %s: %s", self.name, key,
                        ", ".join(f"{c} {ms:.3f} ms" for c, ms in times.items()))
            return self.chosen[key]
        if key not in self._untuned_logged:
            self._untuned_logged.add(key)
            logger.info("rglru %s: no warm-up measured key %s; launching the first candidate "
                        "(%s). griffin_megatron.ops.rglru.warm_up tunes it.",
                        self.name, key, candidates[0])
        return candidates[0]

    def _run(self, grid, args: dict, candidate: Candidate) -> None:
        self.kernel[grid(candidate.block_d)](
            **args, BLOCK_D=candidate.block_d, **candidate.options())

    def __call__(self, grid, **args) -> None:
        """grid: a function of the chosen BLOCK_D giving the launch grid."""
        candidate = self._choose(grid, args)
        recorded = _recorded.get()
        if recorded is not None:
            recorded.append(RecordedLaunch(self.kernel, self.name, self.group, args, candidate))
            return
        self._run(grid, args, candidate)
