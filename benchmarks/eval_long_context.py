"""Peak memory of a long-context evaluation on a CPU: one sequence of N tokens evaluated in
chunks through the cache, for several N at a fixed chunk size, each in a fresh process.

    python benchmarks/eval_long_context.py --tokens 65536 1048576 --chunk-tokens 2048
    python benchmarks/eval_long_context.py --tokens 1048576 --markdown benchmarks/RESULTS.md

The model is the default run's shape (griffin-tiny at width 128, 3 layers RRA, window 64,
vocabulary 2048) with random weights: memory, not quality, is measured. The tokens are the
default corpus (Python standard library sources) read through a memory map and evaluated as
one document of N tokens (tiled if the corpus is shorter). Peak RSS is the process's
ru_maxrss, which includes the Python interpreter, torch and Megatron-Core (~0.4 GB before any
model exists); the activations of a chunk and the fixed-size cache come on top.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def corpus_tokens(count: int) -> numpy.ndarray:
    """count ids from the default corpus; a memory map when the corpus is long enough."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from griffin_megatron.training.default_run import prepare_corpus

    prefix = prepare_corpus(progress=False)
    dtype = IndexedDataset(prefix, mmap=True).index.dtype
    ids = numpy.memmap(f"{prefix}.bin", dtype=dtype, mode="r")
    if len(ids) >= count:
        return ids[:count]
    return numpy.resize(numpy.asarray(ids), count)  # tiled copy: 2 bytes per token


class Positions:
    """Position ids 0..N-1 of one document, made per slice so that they take no memory."""

    def __init__(self, length: int):
        self.shape = (1, length)

    def __getitem__(self, index):
        rows, columns = index
        start, stop, _ = columns.indices(self.shape[1])
        return numpy.arange(start, stop, dtype=numpy.int64)[None]


def measure(tokens: int, chunk_tokens: int) -> dict:
    import torch

    from griffin_megatron.evaluation.buckets import PositionBuckets, log_spaced_edges
    from griffin_megatron.evaluation.chunked import chunked_token_losses
    from griffin_megatron.model import GriffinModel
    from griffin_megatron.presets import get_preset
    from griffin_megatron.runtime import ensure_initialized
    from griffin_megatron.training.default_run import SETTINGS, VOCAB_SIZE

    torch.set_num_threads(1)
    ensure_initialized()
    shape = {k: SETTINGS[k] for k in ("hidden_size", "lru_width", "ffn_hidden_size",
                                      "num_attention_heads", "kv_channels", "rglru_num_heads",
                                      "num_layers", "attention_window", "seq_length")}
    torch.manual_seed(0)
    config = get_preset(SETTINGS["preset"], **shape, vocab_size=VOCAB_SIZE,
                        use_cpu_initialization=True, rglru_backend="torch")
    model = GriffinModel(config).eval()
    ids = corpus_tokens(tokens)[None]  # [1, N]
    positions = Positions(tokens)
    buckets = PositionBuckets(log_spaced_edges(tokens))
    rss_before = peak_rss_mib()
    began = time.perf_counter()
    for start, losses in chunked_token_losses(model, ids, positions, chunk_tokens):
        target_positions = torch.arange(start + 1, start + 1 + losses.shape[1])
        buckets.add(target_positions, losses)
    seconds = time.perf_counter() - began
    return {
        "tokens": tokens, "chunk_tokens": chunk_tokens, "seconds": round(seconds, 1),
        "tokens_per_s": round((tokens - 1) / seconds), "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_evaluation_mib": round(rss_before, 1),
        "loss": round(buckets.mean_loss, 4), "scored_tokens": buckets.total_tokens,
    }


def markdown(rows) -> str:
    lines = ["| tokens | chunk | seconds | tokens/s | peak RSS (MiB) | RSS before eval (MiB) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tokens']:,} | {r['chunk_tokens']} | {r['seconds']} | "
                     f"{r['tokens_per_s']:,} | {r['peak_rss_mib']} | {r['rss_before_evaluation_mib']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[65536, 1048576])
    parser.add_argument("--chunk-tokens", type=int, default=2048)
    parser.add_argument("--markdown", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.tokens[0], args.chunk_tokens)))
        return 0
    rows = []
    for tokens in args.tokens:  # a fresh process each, so each peak is its own
        out = subprocess.run([sys.executable, __file__, "--one", "--tokens", str(tokens),
                              "--chunk-tokens", str(args.chunk_tokens)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows)
    print(table)
    if args.markdown:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        with open(args.markdown, "a") as out:
            out.write(f"\n### Long-context evaluation memory ({stamp}, {platform.processor() or platform.machine()}, "
                      f"1 thread)\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
