"""Compile the RG-LRU Triton kernels for sm_90 (H100 / H200) on any machine, without a GPU.

The interpreter runs a kernel's Python, so it lets through what only the compiler rejects (a
global that is not a tl.constexpr, an op without a lowering), and register spills exist only in
compiled code. This compiles every kernel variant and autotuning candidate ahead of time with
Triton's bundled ptxas and reads the resource usage with its cuobjdump:

    python benchmarks/rglru_compile_check.py [--first-candidates] [--fp32]

Prints one row per variant (registers and the full resource line) and the Triton version, and
exits 1 when one fails to compile or spills registers. The optional tensors are compiled present
(HAS_RESET, HAS_H0, HAS_DFINAL, HAS_INIT all set): the variants with the most live registers.
It must run in a process where TRITON_INTERPRET was never set: Triton's own `tl.sum` and
`tl.sigmoid` are jit functions, interpreted for good once triton is imported with it set
(tests/ops/test_rglru_triton_compile.py runs this script in a subprocess for that reason).
Per-version tables are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton

# Run from a checkout without installing it: this repository's package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from griffin_megatron.ops.rglru import triton_kernels  # noqa: E402
from griffin_megatron.ops.rglru.triton_op import BWD_CANDIDATES, FWD_CANDIDATES  # noqa: E402

SM90 = ("cuda", 90, 32)
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def pointer_types(dtype: str):
    """Signature of every pointer argument: inputs and their gradients in `dtype`, the rest fp32."""
    types = {name: "*fp32" for name in (
        "w_ptr", "h0_ptr", "states_ptr", "final_ptr", "map_a_ptr", "map_b_ptr", "init_ptr",
        "carries_ptr", "dfinal_ptr", "k_in_ptr", "dw_partial_ptr", "dh0_ptr")}
    types.update({name: f"*{dtype}" for name in (
        "x_ptr", "gx_ptr", "ga_ptr", "y_ptr", "dy_ptr", "dx_ptr", "dgx_ptr", "dga_ptr")})
    types["reset_ptr"] = "*u8"
    return types


def variants(first_candidates: bool, dtypes):
    """(kernel name, input dtype, label, constexprs, num_warps) for each variant to compile."""
    tile = {"TILE": triton_kernels.TILE_T, "HAS_RESET": True}
    fwd = FWD_CANDIDATES[:1] if first_candidates else FWD_CANDIDATES
    bwd = BWD_CANDIDATES[:1] if first_candidates else BWD_CANDIDATES
    for dtype in dtypes:
        for block_d, warps in fwd:
            for sequential in (True, False):
                yield ("rglru_fwd_kernel", dtype, "sequential" if sequential else "chunked",
                       dict(tile, HAS_H0=True, SEQUENTIAL=sequential, BLOCK_D=block_d), warps)
            for kernel in ("rglru_fwd_summary_kernel", "rglru_bwd_summary_kernel"):
                yield kernel, dtype, "chunked", dict(tile, BLOCK_D=block_d), warps
        for block_d, warps in bwd:
            for sequential in (True, False):
                yield ("rglru_bwd_kernel", dtype, "sequential" if sequential else "chunked",
                       dict(tile, HAS_DFINAL=True, SEQUENTIAL=sequential, BLOCK_D=block_d), warps)
    for reverse in (False, True):
        yield ("carry_scan_kernel", "fp32", "reverse" if reverse else "forward",
               {"HAS_INIT": True, "REVERSE": reverse, "BLOCK_N": 64, "BLOCK_D": 32}, 4)


def compile_for_sm90(kernel: str, dtype: str, constexprs, num_warps: int) -> str:
    """Compile one variant; returns cuobjdump's resource-usage line (REG, STACK, LOCAL, ...)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(triton_kernels, kernel)
    while not isinstance(fn, triton.runtime.JITFunction):  # under its @triton.heuristics
        fn = fn.fn
    types = pointer_types(dtype)
    signature = {
        name: "constexpr" if name in constexprs else types.get(name, "i32") for name in fn.arg_names
    }
    compiled = triton.compile(ASTSource(fn, signature, constexprs=constexprs),
                              target=GPUTarget(*SM90), options={"num_warps": num_warps})
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "kernel.cubin")
        with open(cubin, "wb") as f:
            f.write(compiled.asm["cubin"])
        usage = subprocess.run([CUOBJDUMP, "--dump-resource-usage", cubin], check=True,
                               capture_output=True, text=True).stdout
    return next(line.strip() for line in usage.splitlines() if "REG:" in line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-candidates", action="store_true",
                        help="only the first (default) autotuning candidate of each kernel")
    parser.add_argument("--fp32", action="store_true", help="float32 inputs too (default bf16)")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("unset TRITON_INTERPRET: interpreted kernels cannot be compiled", file=sys.stderr)
        return 2
    print(f"triton {triton.__version__}, sm_90, compile only", flush=True)
    failures = 0
    for kernel, dtype, label, constexprs, warps in variants(
            args.first_candidates, ("bf16", "fp32") if args.fp32 else ("bf16",)):
        name = f"{kernel} {label} BLOCK_D={constexprs['BLOCK_D']} warps={warps} {dtype}"
        try:
            usage = compile_for_sm90(kernel, dtype, constexprs, warps)
        except Exception as error:  # report every variant, then fail
            failures += 1
            print(f"FAIL  {name}: {type(error).__name__}: {error}", flush=True)
            continue
        spilled = any(int(re.search(rf"{field}:(\d+)", usage).group(1))
                      for field in ("STACK", "LOCAL"))
        failures += spilled
        regs = re.search(r"REG:(\d+)", usage).group(1)
        print(f"{'SPILL' if spilled else 'ok   '} {name}: {regs} registers  [{usage}]", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
