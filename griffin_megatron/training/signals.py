"""SIGTERM (what SLURM's scancel and torchrun send to every process of a job before killing it)
and SIGINT (Ctrl-C, which the terminal sends to the whole process group) end training cleanly:
the handler only records the signal; after the current step every rank learns whether any rank
got it (one all-reduce), then all save a checkpoint of that step and exit together with status 0.

The save needs no helper process that the same signal could have killed: checkpoint writes run
in the trainer itself (griffin_megatron.checkpoint.writes), and the writer processes that
megatron-core 0.16 forks inherit this handler, so they finish their file instead of dying."""

from __future__ import annotations

import signal
from typing import Iterable

import torch
import torch.distributed as dist

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ExitSignalHandler:
    """Context manager that records exit signals instead of dying on them."""

    def __init__(self, signals: Iterable[int] = HANDLED_SIGNALS):
        self.signals = tuple(signals)
        self.received = None
        self._previous = {}

    def __enter__(self) -> "ExitSignalHandler":
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _record(self, signum, frame) -> None:
        self.received = signum

    def received_anywhere(self) -> bool:
        """Whether any rank has received a signal (all ranks must call this together)."""
        flag = torch.tensor([1.0 if self.received is not None else 0.0],
                            device="cuda" if torch.cuda.is_available() else "cpu")
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else "a signal"
