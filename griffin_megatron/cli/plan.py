"""`griffin-megatron plan`: check a recipe's parallel layout and size it before launching it.

Prints parameters, per-GPU memory (weights, gradients, optimizer state with and without the
distributed optimizer, activations with and without recompute), and FLOPs and tokens per step.
An impossible layout, or one that does not fit the GPUs, is an error naming the broken rule.
"""

from __future__ import annotations

import argparse

import yaml

from ..errors import ConfigError

GiB = 2**30


def _override(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE (a recipe key), got {text!r}")
    return key.strip(), yaml.safe_load(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, help="shipped recipe name (e.g. griffin-14b) or YAML path")
    parser.add_argument("--gpus", type=int, help="GPUs in the job (default: the recipe's cluster)")
    parser.add_argument("--gpu-memory-gb", type=float,
                        help="memory per GPU in GiB (default: the recipe's cluster)")
    parser.add_argument("--set", dest="overrides", type=_override, action="append", default=[],
                        metavar="KEY=VALUE", help="override a recipe key, e.g. --set micro-batch-size=2")
    parser.add_argument("--seq-length", type=int,
                        help="sequence length to plan for (the recipe's seq-length by default)")
    parser.add_argument("--vocab-size", type=int,
                        help="vocabulary of the tokenizer (default: the preset's)")
    parser.add_argument("--reserve", type=float, default=None,
                        help="fraction of GPU memory kept free for the CUDA context, NCCL and "
                             "fragmentation (default 0.10)")
    parser.add_argument("--mfu", type=float, default=0.4,
                        help="model FLOP utilisation assumed for the time estimate (default 0.4)")


def _gib(value: float) -> str:
    return f"{value / GiB:8.2f}"


def _row(label: str, values, note: str = "") -> str:
    return f"  {label:<40}" + "".join(f"{v:>12}" for v in values) + (f"   {note}" if note else "")


def _memory_table(plan) -> list:
    stages, other = plan.stages, plan.alternative_stages
    layout = plan.layout
    header = [f"stage {s.stage}" for s in stages]
    opt = "distributed" if layout.distributed_optimizer else "replicated"
    opt_other = "replicated" if layout.distributed_optimizer else "distributed"
    recompute = layout.recompute_granularity or "none"
    dtype = "bf16" if layout.bf16 else "fp32"
    lines = [
        f"memory per GPU (GiB; every TP / DP rank of a stage alike; {dtype} training)",
        _row("", header),
        _row("layers", [f"{s.layers[0]}-{s.layers[-1]}" if s.layers else "-" for s in stages]),
        _row("parameters per GPU", [f"{s.parameters / 1e6:,.0f}M" for s in stages]),
        _row(f"weights ({dtype})", [_gib(s.weights) for s in stages]),
        _row("gradients (fp32 main grads)", [_gib(s.gradients) for s in stages]),
        _row(f"optimizer state ({opt})", [_gib(s.optimizer) for s in stages]),
        _row(f"  if {opt_other}", [_gib(s.optimizer_other) for s in stages]),
        _row(f"activations (recompute: {recompute})", [_gib(s.activations) for s in stages]),
        _row(f"  {plan.alternative}", [_gib(s.activations) for s in other]),
        _row("micro-batch chunks in flight", [str(s.in_flight) for s in stages]),
        _row("total", [_gib(s.total) for s in stages]),
    ]
    usable = plan.gpu_memory_gb * GiB * (1 - plan.reserve)
    top = plan.busiest
    verdict = "fits" if top.total <= usable else "DOES NOT FIT"
    lines.append(_row(f"usable ({plan.gpu_memory_gb:g} GiB - {plan.reserve:.0%} reserve)",
                      [_gib(usable)], f"{verdict}: busiest stage uses {top.total / usable:.0%}"))
    return lines


def _flops_lines(plan, mfu: float) -> list:
    from ..flops import peak_bf16_tflops

    layout = plan.layout
    step = plan.step_flops
    tokens = layout.tokens_per_step
    forward = sum(plan.forward_flops.values())
    parts = ", ".join(f"{name} {value / forward:.1%}"
                      for name, value in sorted(plan.forward_flops.items(), key=lambda kv: -kv[1]))
    lines = [
        "compute (model FLOPs, forward + backward = 3 x forward; recompute not counted)",
        f"  tokens per step                   {tokens:,} ({layout.global_batch_size} x "
        f"{layout.seq_length})",
        f"  FLOPs per step                    {step:.3e} ({step / tokens:.3e} per token)",
        f"  FLOPs per GPU per step            {step / layout.gpus:.3e}",
        f"  by part                           {parts}",
    ]
    iters = plan.recipe.get("train-iters")
    peak = peak_bf16_tflops(plan.cluster.gpu) if plan.cluster else None
    if peak:
        seconds = step / layout.gpus / (peak * 1e12 * mfu)
        line = (f"  at {mfu:.0%} MFU of {peak:g} TFLOP/s      {seconds:.2f} s per step, "
                f"{tokens / seconds:,.0f} tokens/s")
        if iters:
            line += f"; {iters:,} steps in {seconds * iters / 86400:.1f} days"
        lines.append(line)
    return lines


def run(args: argparse.Namespace) -> int:
    from ..planning.context_parallel import report as context_parallel_report
    from ..planning.plan import DEFAULT_RESERVE, make_plan, memory_error

    reserve = DEFAULT_RESERVE if args.reserve is None else args.reserve
    if not 0 <= reserve < 1:
        raise ConfigError(f"--reserve={reserve} must be a fraction in [0, 1).")
    plan = make_plan(
        args.recipe,
        gpus=args.gpus,
        gpu_memory_gb=args.gpu_memory_gb,
        overrides={**dict(args.overrides),
                   **({"seq-length": args.seq_length} if args.seq_length else {})},
        vocab_size=args.vocab_size,
        reserve=reserve,
    )
    config, layout = plan.config, plan.layout
    family = "Hawk" if config.is_hawk else "Griffin"
    cluster = f" ({plan.cluster})" if plan.cluster else ""
    lines = [
        f"plan for {plan.source}",
        f"  model       {family}, preset {plan.recipe['preset']}: {config.num_layers} layers "
        f"({config.block_pattern} repeated), width {config.hidden_size}, RG-LRU "
        f"{config.lru_width}, window {config.attention_window}, vocabulary {config.vocab_size:,}",
        f"  parameters  {plan.counts.total:,}",
        f"  cluster     {layout.gpus} GPUs of {plan.gpu_memory_gb:g} GiB{cluster}",
        f"  layout      {layout.describe()}",
        f"  batch       global {layout.global_batch_size} sequences of {layout.seq_length} tokens, "
        f"micro-batch {layout.micro_batch_size}: {layout.num_microbatches} micro-batches per "
        "step on each data-parallel rank",
        "",
        *_memory_table(plan),
        "",
        *_flops_lines(plan, args.mfu),
        "",
        *context_parallel_report(plan),
    ]
    print("\n".join(lines))
    if plan.memory_problem:
        raise memory_error(plan)
    return 0
