"""Local attention three ways, side by side in one run: FlexAttention (compiled), the blocked SDPA
path, and dense-mask SDPA on the math kernel (the attention a Transformer-Engine-less naive
implementation gets: one SDPA call over the whole sequence with a [T, T] boolean mask of
causal, window and document; SDPA's math kernel materialises the fp32 scores).

Shapes of the griffin-400m preset's attention layer (12 query heads, 1 key/value head, head
dim 128) at T=8192, W=1024, B=2 (the recipe's 16K tokens per micro-batch), four packed
documents per row. Forward time on a CPU (PyTorch has no FlexAttention backward there), forward
and forward+backward on CUDA; peak memory is what the call adds: torch's allocator peak on CUDA,
the process's resident set sampled every millisecond on a CPU. Outputs of every row are checked
against the blocked path before any timing.

    python benchmarks/local_attention.py --device cuda --markdown F   # bf16
    python benchmarks/local_attention.py --device cpu [--tiny] --markdown F   # fp32
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL = dict(T=8192, window=1024, batch=2, heads=12, head_dim=128, documents=4)
TINY = dict(T=512, window=64, batch=1, heads=4, head_dim=64, documents=3)
DENSE_CPU_LIMIT = 2 << 30  # bytes of fp32 scores the dense row may materialise on a CPU


class PeakMemory:
    """Bytes a call adds at its peak: the CUDA allocator's peak, or on a CPU the resident set
    sampled every millisecond by a thread (an estimate: allocations shorter than that and
    memory the allocator already held are not seen)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
            return self
        import psutil

        self.process = psutil.Process()
        self.before = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.added = torch.cuda.max_memory_allocated() - self.before
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.added = self.peak - self.before


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _inputs(size: dict, device, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    T, B, H, d = size["T"], size["batch"], size["heads"], size["head_dim"]
    q = torch.randn(T, B, H, d, generator=generator).to(device, dtype)
    k = torch.randn(T, B, 1, d, generator=generator).to(device, dtype)
    v = torch.randn(T, B, 1, d, generator=generator).to(device, dtype)
    position_ids = torch.empty(B, T, dtype=torch.long)
    for row in range(B):
        cuts = torch.randperm(T - 1, generator=generator)[:size["documents"] - 1] + 1
        bounds = [0, *sorted(int(c) for c in cuts), T]
        for start, end in zip(bounds[:-1], bounds[1:]):
            position_ids[row, start:end] = torch.arange(end - start)
    return q, k, v, position_ids.to(device)


def _dense_mask(tokens_since_start, window: int):
    """[B, 1, T, T] boolean: key j visible from query i (causal, window, document)."""
    T = tokens_since_start.shape[0]
    distance = torch.arange(T, device=tokens_since_start.device).view(T, 1) - torch.arange(
        T, device=tokens_since_start.device).view(1, T)
    since = tokens_since_start.t().unsqueeze(-1)  # [B, T, 1]
    return ((distance >= 0) & (distance < window) & (distance <= since)).unsqueeze(1)


def _implementations(size, device, seq, scale, compile_flex: bool) -> List[tuple]:
    """(name, make(), note): make() returns the attention function [T, B, H, d] -> same, with
    whatever it prepares once per forward (masks) done inside make, timed separately. The
    blocked path comes first: the others are compared with it."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from griffin_megatron.modules.flex_attention import flex_local_attention, local_attention_mask
    from griffin_megatron.modules.blocked_attention import local_attention

    window, since = size["window"], seq.tokens_since_start

    def flex():
        mask = local_attention_mask(since, window)
        return lambda q, k, v: flex_local_attention(q, k, v, mask, scale=scale,
                                                    compiled=compile_flex)

    def blocked():
        return lambda q, k, v: local_attention(q, k, v, window=window, scale=scale,
                                               tokens_since_start=since)

    def dense_math():
        mask = _dense_mask(since, window)

        def attend(q, k, v):
            qh, kh, vh = (t.permute(1, 2, 0, 3) for t in (q, k, v))
            with sdpa_kernel(SDPBackend.MATH):
                out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=scale,
                                                     enable_gqa=True)
            return out.permute(2, 0, 1, 3)

        return attend

    flex_row = (("flex (compiled)", flex, "torch.compile(flex_attention), one BlockMask")
                if compile_flex else
                ("flex (eager)", flex, "eager flex_attention (unfused reference), one BlockMask"))
    rows = [("blocked SDPA", blocked, "the shipped CPU path; SDPA picks its kernel"), flex_row]
    B, H, T = size["batch"], size["heads"], size["T"]
    score_bytes = B * H * T * T * 4
    if device.type == "cpu" and score_bytes > DENSE_CPU_LIMIT:
        rows.append(("dense-mask SDPA (math)", None,
                     f"skipped: {score_bytes / 2**30:.1f} GiB of fp32 scores on a shared CPU"))
    else:
        rows.append(("dense-mask SDPA (math)", dense_math, "[T, T] bool mask, math kernel"))
    return rows


def _time(call: Callable, device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(size: dict, device: torch.device, dtype: torch.dtype, repeats: int,
        compile_flex: bool = True) -> List[dict]:
    from griffin_megatron.sequence import build_sequence_params

    q, k, v, position_ids = _inputs(size, device, dtype)
    seq = build_sequence_params(size["T"], size["batch"], device, position_ids)
    scale = size["head_dim"] ** -0.5
    backward = device.type == "cuda"
    grad_out = torch.randn_like(q)
    reference = None
    rows = []
    for name, make, note in _implementations(size, device, seq, scale, compile_flex):
        row = dict(name=name, note=note, fwd_ms=None, fwd_mib=None, bwd_ms=None, bwd_mib=None,
                   first_s=None, prepare_ms=None, error=None)
        rows.append(row)
        if make is None:
            continue
        make()  # the first build pays one-time imports
        _sync(device)
        start = time.perf_counter()
        attend = make()
        _sync(device)
        row["prepare_ms"] = 1e3 * (time.perf_counter() - start)
        with torch.no_grad():
            start = time.perf_counter()
            out = attend(q, k, v)  # the first call compiles flex
            _sync(device)
            row["first_s"] = time.perf_counter() - start
            if reference is None:
                reference = out.float()
            row["error"] = ((out.float() - reference).norm() / reference.norm()).item()
            del out
            with PeakMemory(device) as memory:
                attend(q, k, v)
            row["fwd_mib"] = memory.added / 2**20
            row["fwd_ms"] = 1e3 * _time(lambda: attend(q, k, v), device, repeats)
        if backward:
            leaves = [t.detach().requires_grad_() for t in (q, k, v)]

            def step():
                attend(*leaves).backward(grad_out)
                for t in leaves:
                    t.grad = None

            step()  # compiles the backward
            with PeakMemory(device) as memory:
                step()
            row["bwd_mib"] = memory.added / 2**20
            row["bwd_ms"] = 1e3 * _time(step, device, repeats)
    return rows


def _format(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: List[dict], header: str) -> str:
    lines = [header, "",
             "| implementation | fwd ms | fwd peak MiB | fwd+bwd ms | fwd+bwd peak MiB "
             "| first call s | mask build ms | rel. diff vs blocked | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        error = "-" if r["error"] is None else f"{r['error']:.1e}"
        lines.append(
            f"| {r['name']} | {_format(r['fwd_ms'])} | {_format(r['fwd_mib'])} "
            f"| {_format(r['bwd_ms'])} | {_format(r['bwd_mib'])} | {_format(r['first_s'], 2)} "
            f"| {_format(r['prepare_ms'])} | {error} | {r['note']} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tiny", action="store_true",
                        help=f"tiny sizes ({TINY}), a few seconds on a CPU: a dry run (on a CPU "
                        "flex then runs eagerly: compiling it takes longer than the run)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per row, median reported (default: 5 on CUDA, 3 on "
                        "a CPU)")
    parser.add_argument("--markdown", metavar="FILE", help="append the table to FILE")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("local_attention.py: --device cuda needs a usable CUDA device; run with "
              "--device cpu instead.", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    size = TINY if args.tiny else FULL
    repeats = args.repeats or (5 if device.type == "cuda" else 3)
    rows = run(size, device, dtype, repeats,
               compile_flex=not (args.tiny and device.type == "cpu"))
    where = torch.cuda.get_device_name() if device.type == "cuda" else (
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    header = (f"### Local attention, {datetime.date.today()}: {where}, torch {torch.__version__}, "
              f"{str(dtype).replace('torch.', '')}\n\nT={size['T']} W={size['window']} "
              f"B={size['batch']}, {size['heads']} query heads x 1 key/value head, head dim "
              f"{size['head_dim']}, {size['documents']} documents per row; median of {repeats}")
    text = table(rows, header)
    print(text)
    # gpu_validate.sh's summary cell: forward time and peak memory of each implementation run.
    print("RESULT: " + ", ".join(
        f"{r['name'].split(',')[0]} {_format(r['fwd_ms'])} ms / {_format(r['fwd_mib'], 0)} MiB"
        for r in rows if r["fwd_ms"] is not None))
    if args.markdown:
        with open(args.markdown, "a") as handle:
            handle.write(text + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
