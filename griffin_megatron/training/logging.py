"""What a training run reports: a Megatron-LM-style line every --log-interval steps, a tqdm bar
on a terminal, TensorBoard scalars (--tensorboard-dir) and Weights & Biases (--wandb-project).
Only one rank writes (rank 0; the driver brings the loss there from the last pipeline stage).

Throughput counts model FLOPs as griffin_megatron.flops does (windowed attention over its window,
RG-LRU and Conv1D elementwise work), per process ("GPU"); MFU is against the GPU's bf16 peak and
shown as n/a where no peak is known (CPUs).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from ..run_config import RunConfig


def memory_in_use_bytes() -> int:
    """Peak device memory on a GPU; the process's resident memory on a CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    import psutil

    return psutil.Process().memory_info().rss


@dataclass
class Throughput:
    tokens_per_step: int
    flops_per_step: float
    processes: int
    peak_tflops: Optional[float]

    def rates(self, seconds_per_step: float) -> dict:
        tflops = self.flops_per_step / seconds_per_step / self.processes / 1e12
        return {
            "tokens/s": self.tokens_per_step / seconds_per_step,
            "TFLOP/s/GPU": tflops,
            "MFU": tflops / self.peak_tflops if self.peak_tflops else None,
        }


@dataclass
class _Interval:
    losses: List[float] = field(default_factory=list)
    grad_norms: List[float] = field(default_factory=list)
    skipped: int = 0
    nan: int = 0
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)
    excluded: float = 0.0


def _fmt(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


class TrainingLogger:
    def __init__(self, run: RunConfig, throughput: Throughput, start_iteration: int,
                 is_writer: bool):
        self.train_iters = run.batch.train_iters
        self.log_interval = run.logging.log_interval
        self.seq_length = run.model.seq_length
        self.global_batch_size = run.batch.global_batch_size
        self.throughput = throughput
        self.is_writer = is_writer
        self.interval = _Interval()
        self.total_skipped = 0
        self.total_nan = 0
        self.bar = None
        self.tensorboard = None
        self.wandb = None
        if not is_writer:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=run.batch.train_iters, initial=start_iteration, unit="it",
                            dynamic_ncols=True, leave=False)
        # Both packages were checked for by arguments.check_arguments on every rank.
        settings = run.logging
        if settings.tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=settings.tensorboard_dir, max_queue=100)
        if settings.wandb_project:
            import wandb

            self.wandb = wandb.init(project=settings.wandb_project, name=settings.wandb_exp_name,
                                    config=run.as_options())

    def print(self, text: str) -> None:
        if not self.is_writer:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def _scalars(self, iteration: int, values: dict) -> None:
        values = {k: v for k, v in values.items() if v is not None}
        if self.tensorboard is not None:
            for name, value in values.items():
                self.tensorboard.add_scalar(name, value, iteration)
        if self.wandb is not None:
            self.wandb.log(values, step=iteration)

    def step(self, iteration: int, loss: Optional[float], grad_norm: Optional[float], lr: float,
             skipped: bool, consumed_samples: int) -> None:
        """Record one optimizer step; print the interval's line when it is complete."""
        interval = self.interval
        interval.steps += 1
        nan = loss is None or not math.isfinite(loss)
        interval.nan += int(nan)
        interval.skipped += int(skipped)
        self.total_nan += int(nan)
        self.total_skipped += int(skipped)
        if not skipped and not nan:
            interval.losses.append(loss)
            if grad_norm is not None:
                interval.grad_norms.append(grad_norm)
        if self.bar is not None:
            self.bar.update(1)
            if interval.losses:
                self.bar.set_postfix_str(f"loss {interval.losses[-1]:.3f}")
        if iteration % self.log_interval and iteration != self.train_iters:
            return
        seconds = (time.perf_counter() - interval.started - interval.excluded) / interval.steps
        rates = self.throughput.rates(seconds)
        mean_loss = sum(interval.losses) / len(interval.losses) if interval.losses else None
        mean_norm = sum(interval.grad_norms) / len(interval.grad_norms) if interval.grad_norms else None
        tokens = consumed_samples * self.seq_length
        line = " | ".join([
            f"iteration {iteration:>8d}/{self.train_iters:d}",
            f"consumed samples: {consumed_samples:d}",
            f"consumed tokens: {tokens:d}",
            f"elapsed ms/iter: {seconds * 1e3:.1f}",
            f"tokens/s: {rates['tokens/s']:.0f}",
            f"TFLOP/s/GPU: {rates['TFLOP/s/GPU']:.3g}",
            f"MFU: {_fmt(rates['MFU'], '.1%')}",
            f"lr: {lr:.3E}",
            f"global batch: {self.global_batch_size:d}",
            f"lm loss: {_fmt(mean_loss, '.6E')}",
            f"grad norm: {_fmt(mean_norm, '.3f')}",
            f"skipped/nan: {interval.skipped}/{interval.nan}",
        ])
        self.print(line)
        self._scalars(iteration, {
            "lm loss": mean_loss,
            "learning-rate": lr,
            "grad-norm": mean_norm,
            "tokens-per-sec": rates["tokens/s"],
            "tflops-per-gpu": rates["TFLOP/s/GPU"],
            "mfu": rates["MFU"],
            "memory-bytes": memory_in_use_bytes(),
            "skipped-iterations": self.total_skipped,
            "nan-iterations": self.total_nan,
            "consumed-tokens": tokens,
        })
        self.interval = _Interval()

    @contextlib.contextmanager
    def untimed(self):
        """Leave validation and checkpoint time out of the step timing."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.interval.excluded += time.perf_counter() - start

    def validation(self, iteration: int, loss: float) -> None:
        self.print(f"validation at iteration {iteration:d} | lm loss: {loss:.6E} | "
                   f"lm loss PPL: {math.exp(min(loss, 50)):.3f}")
        self._scalars(iteration, {"validation lm loss": loss})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
