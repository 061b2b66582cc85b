"""RG-LRU op throughput: forward and backward in GB/s and as a fraction of the HBM floor.

Two shapes of a training micro-batch (T = 2048): the paper's 400M (lru width 2048, B = 4) and
14B (lru width 8192, B = 2, one tensor-parallel rank holding every channel). Bytes are those of
the ideal fused kernel as design.md section 7 counts them: forward 4 tensors of T*B*D (x and two
gate pre-activations in, y out), backward 8 (x, both gates and dy in, three gradients out is 7;
the fp32 tile checkpoints and dw partial sums are rounded up to one more), so 8 B and 16 B per
element in bf16. `%HBM` divides that bandwidth by the
device's peak, read from its name (H100 3.35 TB/s, H200 4.8 TB/s).

    python benchmarks/rglru.py --device cuda --markdown F        # real sizes, under a minute
    python benchmarks/rglru.py --device cpu --tiny --markdown F  # tiny sizes, seconds (dry run)

On CUDA the op runs the Triton kernels after `warm_up` (so no row times compilation or
tuning), timed with CUDA events; `--compare-schedules` adds rows with each schedule forced. On
a CPU it runs the PyTorch scan (`backend="auto"`), wall clock. The table goes to stdout and,
with `--markdown F`, is appended to F. Every candidate's correctness on CUDA is checked by
`pytest -m cuda tests/ops/test_rglru_launch.py`, not here.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from datetime import date
from pathlib import Path

import torch

# Run from a checkout without installing it: this repository's package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from griffin_megatron.ops.rglru import rglru, warm_up  # noqa: E402

# (name, T, B, D)
SHAPES = (("400M", 2048, 4, 2048), ("14B", 2048, 2, 8192))
TINY_SHAPES = (("400M-tiny", 128, 2, 64), ("14B-tiny", 128, 1, 256))
# Tensors of N elements moved by the ideal fused kernels (design.md section 7).
FLOOR_TENSORS = {"fwd": 4, "bwd": 8}
PEAK_TBPS = {"H200": 4.8, "H100": 3.35}
RESETS_PER_TOKEN = 1 / 2048  # packed documents of ~2K tokens


def peak_tbps(device: torch.device):
    """The HBM peak by device name, or None (CPU, other GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tbps for key, tbps in PEAK_TBPS.items() if key in name), None)


def make_inputs(T, B, D, dtype, device):
    g = torch.Generator(device=device).manual_seed(0)  # drawn on the device
    x, gate_x, gate_a = (torch.randn(T, B, D, generator=g, dtype=dtype, device=device)
                         .requires_grad_() for _ in range(3))
    a_param = torch.randn(D, generator=g, device=device).requires_grad_()
    reset = torch.rand(T, B, generator=g, device=device) < RESETS_PER_TOKEN
    return x, gate_x, gate_a, a_param, reset


def timer(device: torch.device, repeats: int):
    """ms per call of fn: the best of `repeats` on a CPU (shared cores), the mean on CUDA."""
    def measure(fn):
        fn()  # warm (allocator, first-call costs)
        if device.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            for _ in range(repeats):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / repeats
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) * 1e3
    return measure


def passes(op, inputs):
    """(forward, backward) callables; backward reuses one forward's graph."""
    x, gate_x, gate_a, a_param, reset = inputs
    leaves = (x, gate_x, gate_a, a_param)

    def forward():
        with torch.no_grad():
            return op(x, gate_x, gate_a, a_param, reset=reset)

    y, _ = op(x, gate_x, gate_a, a_param, reset=reset)
    dy = torch.randn_like(y)

    def backward():
        return torch.autograd.grad(y, leaves, dy, retain_graph=True)
    return forward, backward


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (a dry run in seconds)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compare-schedules", action="store_true",
                        help="CUDA: also time each schedule forced (sequential, chunked)")
    parser.add_argument("--markdown", metavar="F", help="append the table to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("rglru.py: --device cuda needs a visible NVIDIA GPU; use --device cpu --tiny for a "
              "dry run on a CPU.", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    shapes = TINY_SHAPES if args.tiny else SHAPES
    peak = peak_tbps(device)
    variants = [("auto", None)]
    if args.compare_schedules and device.type == "cuda":
        variants += [("sequential", False), ("chunked", True)]
    if device.type == "cuda":
        from griffin_megatron.ops.rglru import launch, schedule, triton_op

        warm_up([(T, B, D) for _, T, B, D in shapes], dtype, device)
        name = torch.cuda.get_device_name(device)
    else:
        name = "CPU (PyTorch scan)"
    measure = timer(device, args.repeats)
    title = (f"RG-LRU op, {name}, torch {torch.__version__}, {args.dtype}, "
             f"{date.today().isoformat()}; %HBM against "
             + (f"{peak} TB/s" if peak else "no known peak"))
    rows = ["| shape | T | B | D | schedule | pass | ms | GB/s | %HBM |",
            "|---|---|---|---|---|---|---|---|---|"]
    print(title)
    print("\n".join(rows))
    headline = []  # gpu_validate.sh's summary cell: the schedule the rule picks, per shape/pass
    for label, T, B, D in shapes:
        inputs = make_inputs(T, B, D, dtype, device)
        for variant, chunked in variants:
            if device.type == "cuda":
                op = functools.partial(triton_op.rglru_triton, chunked=chunked)
                chosen = (schedule.choose_schedule(T, B, D, itemsize, device)
                          if chunked is None else schedule.Schedule(chunked, chunked))
            else:
                op, chosen = rglru, None
            forward, backward = passes(op, inputs)
            if device.type == "cuda" and chunked is not None:
                # warm_up tuned the schedule the rule picks; tune the forced one before timing.
                with launch.tuning():
                    forward(), backward()
            for pass_name, fn in (("fwd", forward), ("bwd", backward)):
                ms = measure(fn)
                gbps = FLOOR_TENSORS[pass_name] * T * B * D * itemsize / (ms * 1e-3) / 1e9
                if chosen is None:
                    sched = "torch scan"
                else:
                    is_chunked = chosen.forward_chunked if pass_name == "fwd" else \
                        chosen.backward_chunked
                    sched = ("chunked" if is_chunked else "sequential") + \
                        ("*" if variant == "auto" else "")
                fraction = f"{100 * gbps / (peak * 1e3):.1f}" if peak else "n/a"
                row = (f"| {label} | {T} | {B} | {D} | {sched} | {pass_name} | {ms:.3f} | "
                       f"{gbps:.3g} | {fraction} |")
                rows.append(row)
                print(row, flush=True)
                if variant == "auto":
                    headline.append(f"{label} {pass_name} {gbps:.3g} GB/s"
                                    + (f" ({fraction}% HBM)" if peak else ""))
        del inputs
    footer = ("GB/s: the ideal fused kernel's bytes (fwd 4, bwd 8 tensors of T*B*D) per second; "
              "* the schedule rglru_triton(chunked=None) picks.")
    print(footer)
    print("RESULT: " + ", ".join(headline))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n{title}\n\n" + "\n".join(rows) + f"\n\n{footer}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
