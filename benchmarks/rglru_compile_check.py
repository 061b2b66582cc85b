"""Compile the RG-LRU Triton kernels for sm_90 (H100 / H200) as they launch, without a GPU.

Register spills exist only in compiled code, and the interpreter lets through what only the
compiler rejects. This script runs the host code (`rglru_fwd` / `rglru_bwd`, both schedules)
on CPU tensors of a training shape with the launches recorded instead of run
(`launch.recording()`), once per candidate of every kernel, with the optional tensors (resets,
initial state, dL/d final state) given and absent, and compiles each recorded launch for sm_90
twice:

- `launch`: with the specialisation Triton's launcher attaches, computed by Triton's own binder
  from the real arguments (`tt.divisibility` 16 on 16-byte-aligned pointers and on integers
  divisible by 16, integers equal to 1 and None as constants): what a GPU compiles;
- `plain`: the same without the divisibility hints (unaligned views, odd widths).

For each it reads Triton's own `ptxas -v` report (the ptxas it bundles, its flags): registers
per thread, spill stores and loads, and the blocks per SM those registers and warps allow. It
exits 1 when any variant fails to compile or spills, or when a default candidate uses more
registers than `schedule.REGISTERS` (the schedule rule's table) says.

    python benchmarks/rglru_compile_check.py [--quick] [--fp32] [--markdown F]
    python benchmarks/rglru_compile_check.py --triton-dirs DIR [DIR ...]   # one run per Triton

`--triton-dirs` reruns the script once per folder holding a `triton` package (e.g. from
`pip install --no-deps --target DIR triton==3.6.0`), that folder first on PYTHONPATH.
It must run where TRITON_INTERPRET was never set: Triton's own jit helpers are interpreted for
good once triton is imported with it (tests/ops/test_rglru_triton_compile.py uses a subprocess).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run from a checkout without installing it: this repository's package comes first.
sys.path.insert(0, str(ROOT))

# A 400M-sized micro-batch: the widths of every preset are multiples of 16, as here, so the
# divisibility hints match a training launch; T and B are not specialised on.
SHAPE = dict(T=256, B=2, D=2048)


def blocks_per_sm(registers: int, num_warps: int) -> int:
    from griffin_megatron.ops.rglru.schedule import blocks_per_sm as rule
    return rule(registers, num_warps)


def recorded_launches(dtype, first_only: bool, optional_absent: bool):
    """Every distinct launch (kernel name, schedule, optional tensors, candidate) of the host
    code: both schedules of both passes, per candidate (forced), with the optional tensors
    (resets, initial state, dL/d final state) present and, if asked, absent."""
    import torch

    from griffin_megatron.ops.rglru import launch, triton_op

    T, B, D = SHAPE["T"], SHAPE["B"], SHAPE["D"]
    g = torch.Generator().manual_seed(0)
    x, gate_x, gate_a, dy = (torch.randn(T, B, D, generator=g).to(dtype) for _ in range(4))
    w = -torch.rand(D, generator=g)
    present = (torch.zeros(T, B, dtype=torch.bool), torch.zeros(B, D), torch.zeros(B, D))
    optionals = [present] + ([(None, None, None)] if optional_absent else [])
    fwd, bwd = launch.CANDIDATES["fwd"], launch.CANDIDATES["bwd"]
    count = 1 if first_only else max(len(fwd), len(bwd))
    seen = {}
    for index in range(count):
        forced = dict(fwd=fwd[min(index, len(fwd) - 1)], bwd=bwd[min(index, len(bwd) - 1)])
        with launch.forcing(**forced), launch.recording() as launches:
            for reset, h0, dfinal in optionals:
                for chunked in (False, True):
                    _, _, states = triton_op.rglru_fwd(x, gate_x, gate_a, w, reset, h0, chunked)
                    triton_op.rglru_bwd(x, gate_x, gate_a, w, reset, states, dy, dfinal, chunked)
        for rec in launches:
            seen.setdefault((rec.name, schedule_of(rec), optional_of(rec), rec.candidate), rec)
    return list(seen.values())


def optional_of(rec) -> str:
    """Which optional tensors the launch passes: "all" or "none" (the HAS_* variants)."""
    names = ("reset_ptr", "h0_ptr", "dfinal_ptr", "init_ptr")
    given = [rec.args[name] is not None for name in names if name in rec.args]
    return "all" if all(given) else "none" if not any(given) else "some"


def schedule_of(rec) -> str:
    """sequential / chunked for the tile kernels (summaries are chunked only), forward /
    reverse for the carry scan."""
    if "SEQUENTIAL" in rec.args:
        return "sequential" if rec.args["SEQUENTIAL"] else "chunked"
    if "REVERSE" in rec.args:
        return "reverse" if rec.args["REVERSE"] else "forward"
    return "chunked"


def launch_specialisation(rec, hints: bool):
    """(jit function, signature, constexprs, attrs, options) as Triton's launcher derives them
    for `rec`; attrs (the divisibility hints) left empty when `hints` is False."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    jit = rec.kernel
    heuristics = {}
    while not isinstance(jit, JITFunction):  # unwrap @triton.heuristics, applying its rules
        heuristics.update({k: rule(rec.args) for k, rule in jit.values.items()})
        jit = jit.fn
    kwargs = {**rec.args, **heuristics, "BLOCK_D": rec.candidate.block_d,
              **rec.candidate.options()}
    backend = make_backend(GPUTarget("cuda", 90, 32))
    binder = create_function_from_signature(jit.signature, jit.params, backend)
    bound, specialization, options = binder(**kwargs)
    options, signature, constexprs, attrs = jit._pack_args(backend, kwargs, bound,
                                                           specialization, options)
    return jit, signature, constexprs, (attrs if hints else {}), options


def compile_and_measure(rec, hints: bool) -> dict:
    """Compile for sm_90 and read ptxas -v: registers, spill stores / loads (bytes)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    jit, signature, constexprs, attrs, options = launch_specialisation(rec, hints)
    # Triton's own ptxas run (its flags differ by version, e.g. 3.9's --regAllocOptLevel=2)
    # prints its -v report with TRITON_DUMP_PTXAS_LOG; TRITON_ALWAYS_COMPILE skips the cache,
    # which would skip ptxas. Both are set for this process in main().
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        compiled = triton.compile(ASTSource(jit, signature, constexprs, attrs),
                                  target=GPUTarget("cuda", 90, 32), options=options.__dict__)
    log = report.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "triton.cubin")
        with open(cubin, "wb") as f:
            f.write(compiled.asm["cubin"])
        # The cubin Triton built must agree with the report: its registers, per cuobjdump.
        cuobjdump = os.path.join(os.path.dirname(get_ptxas(90).path), "cuobjdump")
        resources = subprocess.run([cuobjdump, "--dump-resource-usage", cubin], check=True,
                                   capture_output=True, text=True).stdout
    usage = parse_ptxas_log(log)
    triton_registers = int(re.search(r"REG:(\d+)", resources).group(1))
    if triton_registers != usage["registers"]:
        raise RuntimeError(f"ptxas -v reports {usage['registers']} registers but Triton's cubin "
                           f"has {triton_registers}: the report is not this build's")
    return dict(usage, blocks=blocks_per_sm(usage["registers"], rec.candidate.num_warps))


def parse_ptxas_log(log: str) -> dict:
    """registers, spill stores / loads and stack frame (bytes) from `ptxas -v`'s info lines."""
    def field(pattern):
        match = re.search(pattern, log)
        return int(match.group(1)) if match else 0

    return dict(registers=field(r"Used (\d+) registers"),
                stores=field(r"(\d+) bytes spill stores"), loads=field(r"(\d+) bytes spill loads"),
                stack=field(r"(\d+) bytes stack frame"))


def check(args) -> int:
    import torch
    import triton

    from griffin_megatron.ops.rglru import launch
    from griffin_megatron.ops.rglru.schedule import REGISTERS

    dtypes = (torch.bfloat16, torch.float32) if args.fp32 else (torch.bfloat16,)
    header = (f"triton {triton.__version__}, sm_90 (ptxas {get_ptxas_version()}), compile only; "
              f"launch = the launcher's divisibility hints, plain = none; shape T, B, D = "
              f"{SHAPE['T']}, {SHAPE['B']}, {SHAPE['D']}")
    rows = ["| kernel | schedule | candidate | dtype | hints | optional | registers "
            "| spill st/ld B | blocks/SM |", "|---|---|---|---|---|---|---|---|---|"]
    print(header, flush=True)
    failures = 0
    for dtype in dtypes:
        dtype_name = str(dtype).replace("torch.", "")
        for rec in recorded_launches(dtype, args.quick, optional_absent=not args.quick):
            schedule = schedule_of(rec)
            optional = optional_of(rec)
            for hints in (True,) if args.quick else (True, False):
                name = (f"{rec.name} {schedule} {rec.candidate} {dtype_name} "
                        f"{'launch' if hints else 'plain'} optional={optional}")
                try:
                    m = compile_and_measure(rec, hints)
                except Exception as error:  # report every variant, then fail
                    failures += 1
                    print(f"FAIL  {name}: {type(error).__name__}: {error}", flush=True)
                    continue
                spilled = m["stores"] or m["loads"] or m["stack"]
                limit = REGISTERS.get((rec.name, schedule))
                default = rec.group is None or rec.candidate == launch.CANDIDATES[rec.group][0]
                # The schedule rule models launches, which carry the hints.
                stale = hints and default and limit is not None and m["registers"] > limit
                failures += bool(spilled) + bool(stale)
                status = "SPILL" if spilled else "STALE" if stale else "ok   "
                print(f"{status} {name}: {m['registers']} registers, spill stores "
                      f"{m['stores']} B, loads {m['loads']} B, stack {m['stack']} B, "
                      f"{m['blocks']} blocks/SM"
                      + (f" (schedule.REGISTERS says {limit})" if stale else ""), flush=True)
                rows.append(f"| {rec.name} | {schedule} | {rec.candidate.block_d} x "
                            f"{rec.candidate.num_warps} | {dtype_name} | "
                            f"{'launch' if hints else 'plain'} | {optional} | {m['registers']} | "
                            f"{m['stores']}/{m['loads']} | {m['blocks']} |")
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n{header}\n\n" + "\n".join(rows) + "\n")
    if failures:
        print(f"FAILED: {failures} variant(s) spill, fail to compile or exceed the schedule's "
              "register table", flush=True)
    else:
        print("passed: no variant spills", flush=True)
    return 1 if failures else 0


def get_ptxas_version() -> str:
    from triton.backends.nvidia.compiler import get_ptxas
    out = subprocess.run([get_ptxas(90).path, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\S+),", out)
    return match.group(1) if match else "?"


def per_triton(args, argv) -> int:
    """Rerun this script once per Triton folder; exit 1 when any run failed."""
    rest = [a for a in argv if a not in args.triton_dirs and a != "--triton-dirs"]
    missing = [d for d in args.triton_dirs if not (Path(d) / "triton" / "__init__.py").is_file()]
    if missing:
        print(f"rglru_compile_check: {missing[0]} holds no triton package; install one there "
              "with `pip install --no-deps --target DIR triton==VERSION`.", file=sys.stderr)
        return 2
    status = 0
    for folder in args.triton_dirs:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(folder).resolve()), str(ROOT)] + env.get("PYTHONPATH", "").split(os.pathsep))
        result = subprocess.run([sys.executable, __file__, *rest], env=env)
        status = status or result.returncode
    return status


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the default candidates only, as launched with every optional "
                             "tensor given (what CI checks in seconds); else every candidate, "
                             "with and without hints, optional tensors given and absent")
    parser.add_argument("--fp32", action="store_true", help="float32 inputs too (default bf16)")
    parser.add_argument("--markdown", metavar="F", help="append the table to this file")
    parser.add_argument("--triton-dirs", nargs="+", metavar="DIR",
                        help="run once per folder holding a triton package (pip --target)")
    args = parser.parse_args(argv)
    if args.triton_dirs:
        return per_triton(args, argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("rglru_compile_check: TRITON_INTERPRET=1 is set, and interpreted kernels cannot be "
              "compiled; unset it and run again.", file=sys.stderr)
        return 2
    # Read by Triton when it compiles (see compile_and_measure); this process only compiles.
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    os.environ["TRITON_ALWAYS_COMPILE"] = "1"
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
