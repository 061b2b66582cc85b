"""Training throughput of Griffin against a Megatron-Core GPT, side by side in one run.

Each row is one model at one sequence length: forward + backward + optimizer step on the same
number of tokens per step, timed over `--steps` steps after `--warmup` untimed ones (Triton
compiles its kernels there). Tokens/s, model TFLOP/s (griffin_megatron.flops: windowed
attention counted by its window, RG-LRU / Conv1D included) and MFU against the GPU's datasheet
dense bf16 peak. The optimizer is torch AdamW (fused on a GPU) on the bf16 parameters, the same
for both models; one GPU, no data / tensor parallelism. The Transformer is a Megatron-Core
GPTModel with one key/value head and Griffin's parameter count (gpt_baseline.mqa_matched_to).

    python benchmarks/train_throughput.py                       # GPU: Griffin-400M vs MQA GPT
    python benchmarks/train_throughput.py --device cpu --tiny   # CPU smoke test of the script

--markdown FILE appends the table, with the date and the machine, to FILE.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, also without installing it
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpt_baseline import build_gpt, mqa_matched_to  # noqa: E402

from griffin_megatron import compat  # noqa: E402
from griffin_megatron.flops import (  # noqa: E402
    griffin_forward_flops,
    model_flops_utilization,
    peak_bf16_tflops,
    training_flops,
)
from griffin_megatron.model import GriffinModel  # noqa: E402
from griffin_megatron.presets import get_preset  # noqa: E402
from griffin_megatron.runtime import ensure_initialized  # noqa: E402

GiB = 2**30


def griffin_config(seq_length: int, args):
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    return get_preset(
        "griffin-tiny" if args.tiny else "griffin-400m",
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        seq_length=seq_length,
        use_cpu_initialization=args.device == "cpu",
    )


def build(model_name: str, seq_length: int, args):
    """(model, vocab size, forward FLOPs of one sequence, description)."""
    config = griffin_config(seq_length, args)
    if model_name == "griffin":
        model = GriffinModel(config, backend=args.backend).to(args.device)
        preset = "griffin-tiny" if args.tiny else "griffin-400m"
        return model, config.vocab_size, griffin_forward_flops(config, seq_length), preset
    shape = mqa_matched_to(config)
    model = build_gpt(shape, seq_length, config.params_dtype, args.device)
    return model, shape.vocab_size, shape.forward_flops(seq_length), "gpt (global MQA)"


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(model_name: str, seq_length: int, args) -> dict:
    torch.manual_seed(0)
    model, vocab, forward_flops, description = build(model_name, seq_length, args)
    params = sum(p.numel() for p in model.parameters())
    micro_batch = max(1, args.tokens_per_step // seq_length)
    ids = torch.randint(0, vocab, (micro_batch, seq_length), device=args.device)
    positions = torch.arange(seq_length, device=args.device).expand(micro_batch, -1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device == "cuda")

    def step():
        loss = model(ids, positions, None, labels=ids).float().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    synchronize(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    synchronize(args.device)
    seconds = (time.perf_counter() - start) / args.steps
    flops = training_flops(forward_flops, micro_batch)
    row = {
        "model": description,
        "parameters": params,
        "seq": seq_length,
        "batch": micro_batch,
        "ms/step": 1000 * seconds,
        "tokens/s": micro_batch * seq_length / seconds,
        "TFLOP/s": flops / seconds / 1e12,
        "MFU": None,
        "peak GiB": torch.cuda.max_memory_allocated() / GiB if args.device == "cuda" else None,
        "loss": float(loss.detach()),
    }
    if args.peak_tflops:
        row["MFU"] = model_flops_utilization(flops, seconds, args.peak_tflops)
    del model, optimizer
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return row


COLUMNS = ("model", "parameters", "seq", "batch", "ms/step", "tokens/s", "TFLOP/s", "MFU", "peak GiB")


def format_cell(name: str, value) -> str:
    if value is None:
        return "-"
    if name == "parameters":
        return f"{value / 1e6:,.1f}M"
    if name == "TFLOP/s":
        return f"{value:,.1f}" if value >= 1 else f"{value:.2g}"
    if name == "MFU":
        return f"{value:.1%}"
    if name == "tokens/s":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def markdown_table(rows) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(c, row[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def ratio_lines(rows) -> list:
    """Griffin against the Transformer at each sequence length where both ran; the last line
    (RESULT: ...) is what benchmarks/gpu_validate.sh puts in its summary."""
    lines, summary = [], []
    for seq in sorted({row["seq"] for row in rows}):
        pair = {row["model"].split(" ")[0].split("-")[0]: row for row in rows if row["seq"] == seq}
        if set(pair) != {"griffin", "gpt"}:
            continue
        speed = pair["griffin"]["tokens/s"] / pair["gpt"]["tokens/s"]
        line = f"seq {seq}: Griffin / GPT tokens/s = {speed:.2f}"
        if pair["griffin"]["peak GiB"] and pair["gpt"]["peak GiB"]:
            memory = pair["griffin"]["peak GiB"] / pair["gpt"]["peak GiB"]
            line += f", peak memory = {memory:.2f}"
        lines.append(line)
        summary.append(f"{seq}: x{speed:.2f}")
    if summary:
        lines.append("RESULT: Griffin / GPT training tokens/s " + ", ".join(summary))
    return lines


def machine(device: str) -> str:
    if device == "cuda":
        import triton

        return (f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
                f"triton {triton.__version__}, CUDA {torch.version.cuda}")
    return f"{platform.processor() or platform.machine()} CPU, torch {torch.__version__}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny models (smoke test)")
    parser.add_argument("--models", default="griffin,gpt", help="comma-separated: griffin, gpt")
    parser.add_argument("--seq-lengths", type=int, nargs="+", default=None,
                        help="default: 2048 8192 (64 128 with --tiny)")
    parser.add_argument("--tokens-per-step", type=int, default=None,
                        help="tokens per step (micro-batch = tokens / seq); default 16384 (256 tiny)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backend", choices=("local", "te"), default="local",
                        help="Griffin's layer backend")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="per-GPU dense bf16 peak for MFU (default: from the GPU's name)")
    parser.add_argument("--markdown", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU; use --device cpu --tiny for a smoke test")
    args.seq_lengths = args.seq_lengths or ([64, 128] if args.tiny else [2048, 8192])
    args.tokens_per_step = args.tokens_per_step or (256 if args.tiny else 16384)
    if args.peak_tflops is None and args.device == "cuda":
        args.peak_tflops = peak_bf16_tflops(torch.cuda.get_device_name())
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - {"griffin", "gpt"}
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from griffin, gpt")

    ensure_initialized()
    rows = []
    print(" | ".join(COLUMNS), flush=True)
    # An entry point: on a CPU, Megatron's GPTModel asks torch.cuda for its device (rotary
    # embedding); the block answers on the CPU and does nothing where CUDA is available.
    with compat.cuda_stand_ins_on_cpu():
        for seq_length in args.seq_lengths:
            for name in models:
                row = measure(name, seq_length, args)
                rows.append(row)
                print(" | ".join(format_cell(c, row[c]) for c in COLUMNS), flush=True)
    table = markdown_table(rows)
    ratios = ratio_lines(rows)
    print("\n" + table + "\n\n" + "\n".join(ratios))
    if args.markdown:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        peak = f"{args.peak_tflops:g} TFLOP/s" if args.peak_tflops else "no peak known"
        with open(args.markdown, "a") as out:
            out.write(f"\n### Training throughput, {stamp}, {machine(args.device)}\n\n"
                      f"{args.tokens_per_step} tokens per step, {args.steps} timed steps after "
                      f"{args.warmup} warm-up steps; MFU against {peak}; peak GiB is "
                      f"torch's peak allocated memory over the timed steps.\n\n{table}\n\n"
                      + "".join(f"- {line}\n" for line in ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
