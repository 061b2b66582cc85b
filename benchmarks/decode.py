"""Decode benchmark: Griffin and Hawk against a multi-query Transformer, and against HF generate.

For each context length (prompt tokens) and batch size every model generates greedily with
`griffin_megatron.generation.stream_generate` (the public path), and the table reports:
- prefill: seconds from the call to the first new token (prompt fed in chunks of --chunk);
- decode tok/s: batch / median time of one decode step (the median ignores the spikes of a
  shared machine), with ms per step; `--clock cpu` times by CPU time on one thread instead;
- cache MiB/seq: bytes of the generation cache after the run, divided by the batch size.

Models, all with the same width, depth, GeGLU MLP, heads (head dim 128, one key/value head),
vocabulary and random weights:
- griffin: recurrent, recurrent, local attention (window --window);
- hawk: recurrent blocks only;
- mqa-transformer: global multi-query attention in every layer: Megatron-Core's GPTModel with
  the local layer spec (RoPE, our SDPA core attention) and a window longer than any sequence.
  Its key/value cache is preallocated for prompt + new tokens, so it grows linearly with the
  context, and each step attends to the filled part with one SDPA call, in place.
- hf-griffin: HF `RecurrentGemmaForCausalLM.generate` (greedy) holding griffin's weights, batch
  1, timed the same way with a streamer; `same` says whether its tokens equal ours.

    python benchmarks/decode.py                      # ~9M-parameter models, a few minutes
    python benchmarks/decode.py --quick              # smoke run (seconds)
    python benchmarks/decode.py --plot decode.png    # also plot tokens/s and cache size
    python benchmarks/decode.py --clock cpu          # on a machine shared with other jobs
    python benchmarks/decode.py --rounds 5           # griffin vs HF alternated 5 times (median)
    python benchmarks/decode.py --width 512 --heads 4    # ~27M parameters (~20 min of CPU)
    python benchmarks/decode.py --width 768 --lru-width 1024 --depth 12 --heads 6 \\
        --batch16-contexts 1024 4096 8192 16384      # the paper's 100M size, all contexts
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

# Run from a checkout without installing it: this repository's package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("griffin", "hawk", "mqa-transformer")
MIB = 2**20


def build_models(args):
    """Our three models (random weights, same sizes) and HF's copy of griffin."""
    from griffin_megatron.config import GriffinConfig
    from griffin_megatron.model import GriffinModel
    from griffin_megatron.runtime import ensure_initialized

    ensure_initialized()
    longest = max(args.contexts + args.batch16_contexts) + args.new_tokens
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    common = dict(
        num_layers=args.depth,
        hidden_size=args.width,
        ffn_hidden_size=3 * args.width,
        num_attention_heads=args.heads,
        num_query_groups=1,
        kv_channels=128,
        lru_width=args.lru_width or args.width,
        rglru_num_heads=args.rglru_heads or args.heads,
        vocab_size=args.vocab,
        seq_length=longest,
        use_cpu_initialization=True,
        params_dtype=dtype,
        bf16=args.bf16,
        rglru_backend="torch" if args.device == "cpu" else "auto",
    )
    patterns = {
        "griffin": dict(block_pattern="RRA", attention_window=args.window),
        "hawk": dict(block_pattern="R", attention_window=args.window),
        "mqa-transformer": dict(block_pattern="A", attention_window=longest),
    }
    if args.match_parameters:
        from griffin_megatron.presets import count_parameters

        # The transformer's MLP widened until it has griffin's parameters (one-channel steps).
        griffin = count_parameters(GriffinConfig(**common, **patterns["griffin"]))
        plain = GriffinConfig(**common, **patterns["mqa-transformer"])
        per_channel = 3 * args.width * args.depth + 2 * args.depth  # fc1 (2), fc2, their biases
        ffn = 3 * args.width + round((griffin - count_parameters(plain)) / per_channel)
        patterns["mqa-transformer"]["ffn_hidden_size"] = ffn
    models = {}
    for name in args.models:
        torch.manual_seed(0)
        config = GriffinConfig(**{**common, **patterns[name]})
        models[name] = GriffinModel(config).eval().to(args.device)
    return models


def build_hf_copy(model):
    from transformers import RecurrentGemmaForCausalLM

    from griffin_megatron.interop.hf_config import hf_config_from_architecture
    from griffin_megatron.interop.hf_mapping import megatron_to_hf
    from griffin_megatron.checkpoint.full_state import gather_full_state_dict

    hf = RecurrentGemmaForCausalLM(hf_config_from_architecture(model.config)).eval()
    missing, unexpected = hf.load_state_dict(
        megatron_to_hf(gather_full_state_dict(model), model.config), strict=False
    )
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    return hf


# The clock every timestamp is read from: wall time, or with --clock cpu this process's CPU time
# (one thread), which other processes on a shared machine barely disturb.
clock = time.perf_counter


def _summary(times, batch):
    """times: the clock at the call, then after each new token."""
    steps = [b - a for a, b in zip(times[1:], times[2:])]
    step = statistics.median(steps)
    return {"prefill_s": times[1] - times[0], "ms_step": step * 1e3, "tok_s": batch / step}


def run_ours(model, prompts, args):
    from griffin_megatron.generation import stream_generate
    from griffin_megatron.generation import GriffinInferenceCache

    length = len(prompts[0])
    cache = GriffinInferenceCache(len(prompts), max_length=length + args.new_tokens,
                                  device=args.device)
    times, tokens = [clock()], []
    for step in stream_generate(model, prompts, max_new_tokens=args.new_tokens,
                                prefill_chunk_size=args.chunk, cache=cache):
        times.append(clock())
        tokens.append(step[0])
    result = _summary(times, len(prompts))
    result["cache_mib"] = cache.nbytes() / len(prompts) / MIB
    return result, tokens


class _Timestamps:
    """An HF streamer that only records when each piece arrives (prompt first)."""

    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(clock())

    def end(self):
        pass


def run_hf(hf, prompt, args):
    streamer = _Timestamps()
    with torch.inference_mode():
        start = clock()
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=args.new_tokens, do_sample=False,
                          eos_token_id=None, pad_token_id=0, streamer=streamer)
    times = [start] + streamer.times[1:]
    return _summary(times, 1), out[0, len(prompt):].tolist()


def make_prompts(batch, length, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (batch, length), generator=g).tolist()


def benchmark(args, models, hf):
    rows = []
    jobs = [(1, c) for c in args.contexts] + [(16, c) for c in args.batch16_contexts]
    for batch, context in jobs:
        prompts = make_prompts(batch, context, args.vocab)
        ours_tokens = None
        for name in args.models:
            if args.warmup:  # the same job once untimed: kernels compile and tune there
                run_ours(models[name], prompts, args)
            result, tokens = run_ours(models[name], prompts, args)
            if name == "griffin":
                ours_tokens = tokens
            parameters = sum(p.numel() for p in models[name].parameters())
            rows.append({"model": name, "batch": batch, "context": context,
                         "parameters": parameters, **result})
            print(_format_row(rows[-1]), flush=True)
            gc.collect()
        if batch == 1 and hf is not None and context in args.hf_contexts:
            result, tokens = run_hf(hf, prompts[0], args)
            rows.append({"model": "hf-griffin", "batch": 1, "context": context, **result,
                         "cache_mib": float("nan"), "same": tokens == ours_tokens})
            print(_format_row(rows[-1]), flush=True)
            gc.collect()
    return rows


def alternating_ratios(models, hf, args):
    """griffin and HF generate, batch 1, alternated `--rounds` times at each HF context: the
    ratio of each round's decode tok/s, so that a shift in the machine's speed during the run
    falls on both sides of every ratio. Returns {context: [ratio per round]}."""
    ratios = {}
    for context in args.hf_contexts:
        prompts = make_prompts(1, context, args.vocab)
        ratios[context] = []
        for _ in range(args.rounds):
            ours, _ = run_ours(models["griffin"], prompts, args)
            theirs, _ = run_hf(hf, prompts[0], args)
            ratios[context].append(ours["tok_s"] / theirs["tok_s"])
            gc.collect()
        print(f"griffin / HF at {context} tokens, {args.rounds} alternated rounds: "
              + " ".join(f"{r:.2f}" for r in ratios[context]), flush=True)
    return ratios


HEADER = (f"{'model':<16}{'batch':>6}{'context':>9}{'prefill s':>11}{'decode tok/s':>14}"
          f"{'ms/step':>10}{'cache MiB/seq':>15}  note")


def _format_row(r):
    note = "" if "same" not in r else ("same tokens as griffin" if r["same"] else "TOKENS DIFFER")
    cache = "-" if r["cache_mib"] != r["cache_mib"] else f"{r['cache_mib']:.3f}"
    return (f"{r['model']:<16}{r['batch']:>6}{r['context']:>9}{r['prefill_s']:>11.2f}"
            f"{r['tok_s']:>14.1f}{r['ms_step']:>10.2f}{cache:>15}  {note}")


def _find(rows, model, batch, context):
    for r in rows:
        if (r["model"], r["batch"], r["context"]) == (model, batch, context):
            return r
    return None


def goals(rows, args, ratios=None):
    lines = []
    past_window = sorted({r["context"] for r in rows if r["model"] == "griffin" and r["batch"] == 1
                          and r["context"] >= args.window})
    for model in args.models:
        sizes = [_find(rows, model, 1, c)["cache_mib"] for c in past_window]
        if len(sizes) >= 2:
            lines.append(f"cache MiB/seq of {model} from {past_window[0]} to {past_window[-1]} "
                         f"tokens: {sizes[0]:.3f} -> {sizes[-1]:.3f} (x{sizes[-1] / sizes[0]:.2f})")
    for context in args.batch16_contexts:
        g, t = _find(rows, "griffin", 16, context), _find(rows, "mqa-transformer", 16, context)
        if g is None or t is None:
            continue
        ratio = g["tok_s"] / t["tok_s"]
        lines.append(f"decode tok/s at {context} tokens, batch 16: griffin / mqa-transformer = "
                     f"{ratio:.2f} (goal >= 2 at 8192: "
                     f"{'met' if ratio >= 2 else 'missed'})" if context == 8192 else
                     f"decode tok/s at {context} tokens, batch 16: griffin / mqa-transformer = "
                     f"{ratio:.2f}")
    for context in args.hf_contexts:
        g, h = _find(rows, "griffin", 1, context), _find(rows, "hf-griffin", 1, context)
        if ratios and context in ratios:
            ratio = statistics.median(ratios[context])
            how = (f"median of {len(ratios[context])} alternated rounds, range "
                   f"{min(ratios[context]):.2f}-{max(ratios[context]):.2f}")
        elif g and h:
            ratio, how = g["tok_s"] / h["tok_s"], "one round"
        else:
            continue
        lines.append(f"batch-1 decode tok/s at {context} tokens: griffin / HF generate = "
                     f"{ratio:.2f} ({how}; goal >= 2: {'met' if ratio >= 2 else 'missed'})")
    return lines


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    for color, model in enumerate(MODELS + ("hf-griffin",)):
        for batch, style in ((1, "-o"), (16, "--s")):
            points = sorted((r["context"], r) for r in rows
                            if r["model"] == model and r["batch"] == batch)
            if not points:
                continue
            contexts = [c for c, _ in points]
            speed.plot(contexts, [r["tok_s"] for _, r in points], style, color=f"C{color}",
                       label=f"{model}, batch {batch}")
            if batch == 1 and model != "hf-griffin":
                memory.plot(contexts, [r["cache_mib"] for _, r in points], style,
                            color=f"C{color}", label=model)
    for axis, label in ((speed, "decode tokens/s"), (memory, "cache MiB per sequence")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("context (prompt tokens)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def write_markdown(args, rows, lines):
    import datetime

    where = (f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}" if args.device == "cuda"
             else f"{platform.processor() or platform.machine()} CPU")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(args.markdown, "a") as out:
        out.write(f"\n### Decode, {stamp}, {where}, torch {torch.__version__}\n\n"
                  f"Width {args.width}, depth {args.depth}, {args.heads} heads x 128 (one "
                  f"key/value head), vocabulary {args.vocab}, window {args.window}, "
                  f"{'bf16' if args.bf16 else 'fp32'}, {args.new_tokens} new tokens, greedy, "
                  "through griffin_megatron.generation for every model (the transformer keeps a "
                  "preallocated key/value cache).\n\n"
                  "| model | parameters | batch | context | prefill s | decode tok/s | ms/step | "
                  "cache MiB/seq |\n|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            if r["model"] == "hf-griffin":
                continue
            out.write(f"| {r['model']} | {r['parameters'] / 1e6:,.2f}M | {r['batch']} | "
                      f"{r['context']} | {r['prefill_s']:.2f} | {r['tok_s']:,.1f} | "
                      f"{r['ms_step']:.2f} | {r['cache_mib']:.3f} |\n")
        out.write("".join(f"\n- {line}" for line in lines) + "\n")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--lru-width", type=int, default=None, help="default: --width")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=2, help="query heads of dim 128")
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--rglru-heads", type=int, default=None,
                        help="blocks of the RG-LRU gates (default: --heads)")
    parser.add_argument("--preset", default=None,
                        help="take width, RG-LRU width and heads, depth, heads, vocabulary and "
                        "window from this preset (e.g. griffin-400m)")
    parser.add_argument("--window", type=int, default=1024, help="griffin's attention window")
    parser.add_argument("--contexts", type=int, nargs="*",
                        default=[1024, 2048, 4096, 8192, 16384], help="batch-1 contexts")
    parser.add_argument("--batch16-contexts", type=int, nargs="*", default=[1024, 8192])
    parser.add_argument("--hf-contexts", type=int, nargs="*", default=[1024, 4096],
                        help="batch-1 contexts also run with HF generate")
    parser.add_argument("--rounds", type=int, default=1,
                        help="also alternate griffin and HF generate this many times per HF "
                        "context and report the median ratio")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=2048, help="prefill chunk (tokens)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: time by this process's CPU time on one thread (for a machine "
                        "shared with other jobs; equals wall time on an idle one)")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 parameters (default fp32)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--warmup", action="store_true",
                        help="run every job once untimed first (GPU kernels compile there)")
    parser.add_argument("--match-parameters", action="store_true",
                        help="widen mqa-transformer's MLP until it has griffin's parameter count")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="append the table and the ratios to this Markdown file")
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.depth, args.heads, args.vocab, args.window = 128, 3, 1, 1024, 64
        for name, quick in (("contexts", [64, 256]), ("batch16_contexts", [256]),
                            ("hf_contexts", [256])):
            if getattr(args, name) == parser.get_default(name):  # not given: the quick one
                setattr(args, name, quick)
        args.new_tokens, args.chunk = 8, 128
    if args.preset:
        from griffin_megatron.presets import get_preset

        config = get_preset(args.preset)
        args.width, args.lru_width, args.depth = (config.hidden_size, config.lru_width,
                                                  config.num_layers)
        args.heads, args.rglru_heads = config.num_attention_heads, config.rglru_num_heads
        args.vocab, args.window = config.vocab_size, config.attention_window
        if config.kv_channels != 128:
            parser.error(f"--preset {args.preset} has head dimension {config.kv_channels}; this "
                         "benchmark's models have 128.")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU; leave --device at cpu.")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1.")
    if args.new_tokens < 3:
        parser.error("--new-tokens must be at least 3 (the first token ends the prefill).")
    return args


def main(argv=None):
    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    global clock
    if args.clock == "cpu":
        args.threads, clock = 1, time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; width {args.width}, depth {args.depth}, "
          f"heads {args.heads} x 128 (1 kv head), vocab {args.vocab}, window {args.window}, "
          f"{args.new_tokens} new tokens, fp32, {args.clock} clock")
    print(f"load average before: {os.getloadavg()[0]:.1f} (timings assume an otherwise idle machine)")
    print(HEADER, flush=True)
    models = build_models(args)
    hf = (build_hf_copy(models["griffin"])
          if args.hf_contexts and "griffin" in models and args.device == "cpu" else None)
    rows = benchmark(args, models, hf)
    ratios = alternating_ratios(models, hf, args) if args.rounds > 1 and hf is not None else None
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print()
    print(HEADER)
    for r in rows:
        print(_format_row(r))
    print()
    lines = goals(rows, args, ratios)
    for line in lines:
        print(line)
    summary = [f"{c}x{b}: x{_find(rows, 'griffin', b, c)['tok_s'] / r['tok_s']:.2f}"
               for r in rows if r["model"] == "mqa-transformer"
               for b, c in [(r["batch"], r["context"])] if _find(rows, "griffin", b, c)]
    if summary:
        print("RESULT: griffin / mqa-transformer decode tok/s (context x batch) "
              + ", ".join(summary))
    if args.markdown:
        write_markdown(args, rows, lines)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
