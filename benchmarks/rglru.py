"""RG-LRU op benchmark.

On a GPU: the fused Triton kernels, forward and forward+backward, over a (T, B, D) grid. Each
row gives the time, G elements/s (N = T*B*D), the bytes the kernels actually move (counted
kernel by kernel in `moved_bytes`), the bandwidth that makes, and that bandwidth as a fraction
of the H200's 4.8 TB/s peak and of a device copy measured in the same run. `%floor` compares
with the ideal fused kernel (forward reads x, gate_x, gate_a and writes y; backward reads those
and dy and writes three gradients) running at the measured copy bandwidth.

On a CPU: the PyTorch path (backend="torch") against the step-by-step reference loop.

    python benchmarks/rglru.py [--quick] [--compare-schedules] [--dry-run]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from pathlib import Path

import torch

# Run from a checkout without installing it: this repository's package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from griffin_megatron.ops.rglru import RGLRU_C, rglru  # noqa: E402

H200_PEAK_TBPS = 4.8
RESETS_PER_TOKEN = 1 / 2048  # packed documents of ~2K tokens


def moved_bytes(T, B, D, itemsize, chunked: bool, backward: bool, tile_t: int) -> int:
    """DRAM bytes the Triton kernels read and write for a forward (+ backward), as launched by
    triton_op.py.

    Inputs of N elements are `itemsize` bytes; reset is 1 byte per (t, b); the per-tile buffers
    (tile maps, checkpoints, carries, partial sums) are fp32 [tiles, B, D]; w is fp32 [D].
    """
    n = T * B * D * itemsize
    reset = T * B
    tiles = -(-T // tile_t) * B * D * 4
    state = B * D * 4
    w = D * 4
    if chunked:
        summary = 3 * n + reset + w + 2 * tiles  # x, gate_x, gate_a in; tile maps out
        chain = 2 * tiles + tiles + state  # tile maps in; checkpoints, final state out
        apply = 3 * n + reset + w + tiles + n  # inputs and checkpoints in; y out
        forward = summary + chain + apply
    else:
        forward = 3 * n + reset + w + n + tiles + state
    if not backward:
        return forward
    if chunked:
        summary = 2 * n + reset + w + 2 * tiles  # gate_a, dy in; tile maps out
        chain = 2 * tiles + tiles + state  # tile maps in; carries, dL/dh0 out
        # x, gate_x, gate_a, dy, checkpoints, carries in; 3 gradients, dw partials out
        apply = 4 * n + reset + w + 2 * tiles + 3 * n + tiles
        reduce_dw = tiles
        return forward + summary + chain + apply + reduce_dw
    # x, gate_x, gate_a, dy, checkpoints in; 3 gradients, dw partials, dL/dh0 out; dw sum
    return forward + 4 * n + reset + w + tiles + 3 * n + 2 * state + state


def floor_bytes(T, B, D, itemsize, backward: bool) -> int:
    """The ideal fused kernels: forward 3 reads + 1 write, backward 4 reads + 3 writes."""
    n = T * B * D * itemsize
    return 11 * n if backward else 4 * n


def make_inputs(T, B, D, dtype, device, requires_grad):
    g = torch.Generator(device=device).manual_seed(0)  # drawn on the device: GBs at T = 32768
    x, gate_x, gate_a = (
        torch.randn(T, B, D, generator=g, dtype=dtype, device=device).requires_grad_(requires_grad)
        for _ in range(3)
    )
    a_param = torch.randn(D, generator=g, device=device).requires_grad_(requires_grad)
    reset = torch.rand(T, B, generator=g, device=device) < RESETS_PER_TOKEN
    return x, gate_x, gate_a, a_param, reset


def step_fn(op, inputs, backward: bool):
    """Forward only (no graph), or forward + backward with the gradients returned, not stored."""
    x, gate_x, gate_a, a_param, reset = inputs
    if not backward:
        def forward():
            with torch.no_grad():
                return op(x, gate_x, gate_a, a_param, reset=reset)
        return forward
    dy = torch.randn_like(x)

    def forward_backward():
        y, _ = op(x, gate_x, gate_a, a_param, reset=reset)
        return torch.autograd.grad(y, (x, gate_x, gate_a, a_param), dy)
    return forward_backward


def wall_clock_ms(fn, reps: int = 1, warmup: bool = True) -> float:
    """Best of `reps` timed calls: the CPU is shared, and the minimum is the least disturbed."""
    if warmup:
        fn()  # compilation, allocator warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def triton_main(args) -> None:
    """The kernel table; with --dry-run it runs on the CPU in the Triton interpreter."""
    import triton

    from griffin_megatron.ops.rglru import triton_op
    from griffin_megatron.ops.rglru.triton_kernels import TILE_T

    if args.dry_run:
        device, bench = torch.device("cpu"), wall_clock_ms
        device_name = "CPU, Triton interpreter (dry run: times are meaningless)"
        grid = ((70,), (1,), (37,))
    else:
        from triton.testing import do_bench

        device, device_name = torch.device("cuda"), torch.cuda.get_device_name()
        grid = ((2048, 8192), (1, 8), (2560, 704)) if args.quick else \
            ((2048, 8192, 32768), (1, 2, 8), (2560, 704))

        def bench(fn):
            return do_bench(fn, warmup=10, rep=50)
    dtype = getattr(torch, args.dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    src = torch.empty(2**28 if device.type == "cuda" else 2**22, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    copy_tbps = 2 * src.nbytes / (bench(lambda: dst.copy_(src)) * 1e-3) / 1e12
    del src, dst
    print(f"{device_name}  torch {torch.__version__}  triton {triton.__version__}  {args.dtype}")
    print(f"device copy: {copy_tbps:.2f} TB/s measured; peak {H200_PEAK_TBPS} TB/s (H200)")
    print(f"{'T':>6} {'B':>2} {'D':>5} {'pass':>7} {'schedule':>11} {'ms':>8} {'Gelem/s':>8} "
          f"{'GB':>6} {'TB/s':>5} {'%peak':>5} {'%copy':>5} {'%floor':>6}", flush=True)
    for T in grid[0]:
        for B in grid[1]:
            for D in grid[2]:
                auto = triton_op.choose_chunked(B, D, device)
                schedules = (False, True) if args.compare_schedules else (auto,)
                for backward in (False, True):
                    inputs = make_inputs(T, B, D, dtype, device, requires_grad=backward)
                    for chunked in schedules:
                        op = functools.partial(triton_op.rglru_triton, chunked=chunked)
                        ms = bench(step_fn(op, inputs, backward))
                        moved = moved_bytes(T, B, D, itemsize, chunked, backward, TILE_T)
                        tbps = moved / (ms * 1e-3) / 1e12
                        floor_ms = floor_bytes(T, B, D, itemsize, backward) / copy_tbps / 1e9
                        name = ("chunked" if chunked else "sequential") + "*" * (chunked == auto)
                        print(f"{T:>6} {B:>2} {D:>5} {'fwd+bwd' if backward else 'fwd':>7} "
                              f"{name:>11} {ms:>8.3f} {T * B * D / ms / 1e6:>8.1f} "
                              f"{moved / 1e9:>6.2f} {tbps:>5.2f} "
                              f"{100 * tbps / H200_PEAK_TBPS:>5.1f} "
                              f"{100 * tbps / copy_tbps:>5.1f} {100 * floor_ms / ms:>6.1f}",
                              flush=True)
                    del inputs
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    print("* the schedule rglru_triton(chunked=None) picks.  %floor: the ideal fused kernel's "
          "bytes at the measured copy bandwidth, as a fraction of the time taken.")


def cpu_main(args) -> None:
    """backend='torch' against the reference loop, float32."""
    T, B, D = (512, 2, 256) if args.quick else (2048, 2, 1024)
    print(f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), "
          f"torch {torch.__version__}, "
          "float32: backend='torch' against the step-by-step reference")
    print(f"{'T':>6} {'B':>2} {'D':>5} {'pass':>7} {'torch ms':>9} {'ref ms':>9} {'speed-up':>8} "
          f"{'Gelem/s':>8}", flush=True)
    for backward in (False, True):
        inputs = make_inputs(T, B, D, torch.float32, torch.device("cpu"), requires_grad=backward)
        fns = {backend: step_fn(functools.partial(rglru, backend=backend, c=RGLRU_C), inputs,
                                backward)
               for backend in ("torch", "reference")}
        # Rounds alternate the two backends so that both see the same load on a shared CPU. The
        # reference forward+backward takes ~10 s: one round, and no warm-up for it.
        rounds = 1 if backward else 5
        ms = {"torch": wall_clock_ms(fns["torch"], reps=1), "reference": float("inf")}
        for _ in range(rounds):
            ms["torch"] = min(ms["torch"], wall_clock_ms(fns["torch"], warmup=False))
            ms["reference"] = min(ms["reference"], wall_clock_ms(fns["reference"], warmup=False))
        print(f"{T:>6} {B:>2} {D:>5} {'fwd+bwd' if backward else 'fwd':>7} {ms['torch']:>9.1f} "
              f"{ms['reference']:>9.1f} {ms['reference'] / ms['torch']:>7.1f}x "
              f"{T * B * D / ms['torch'] / 1e6:>8.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                        help="input dtype of the Triton table (the CPU comparison is float32)")
    parser.add_argument("--compare-schedules", action="store_true",
                        help="time both the sequential and the chunked schedule for every shape")
    parser.add_argument("--dry-run", action="store_true",
                        help="run the Triton table on the CPU in the interpreter, tiny grid")
    args = parser.parse_args()
    if args.dry_run:
        # Read when the kernels are defined, so before triton_op is imported.
        os.environ["TRITON_INTERPRET"] = "1"
    if args.dry_run or torch.cuda.is_available():
        triton_main(args)
    else:
        cpu_main(args)


if __name__ == "__main__":
    main()
