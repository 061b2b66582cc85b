"""The length-extrapolation study on a CPU: Griffin, Hawk and a global-attention Transformer
trained alike at a short length, then evaluated far past it on held-out text.

    python benchmarks/extrapolation.py                       # the full study (see RESULTS.md)
    python benchmarks/extrapolation.py --train-iters 40 --eval-length 1024 --held-out-files 3

Training: `griffin-megatron train` on the default corpus (the top-level modules of the Python
standard library, default_run.py) with its settings: width 128, 3 layers, 300 steps of 16 x 128
tokens. The three models differ only in --block-pattern:
- griffin: RRA (local MQA attention, window 64);
- hawk: R (recurrent only);
- attention: A in every layer with a window longer than every evaluation length, i.e. global
  causal MQA attention with RoPE (the Transformer baseline, Griffin's MLP blocks).
Evaluation: `griffin-megatron evaluate --text-files` on held-out text not in the training
corpus: stdlib modules inside packages (asyncio/, email/, ...), which the default corpus (top-level
`*.py` only) never contains, each file one document, to --eval-length tokens (32x by default).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from datetime import datetime, timezone
from pathlib import Path

MODELS = {
    "griffin": ["--block-pattern", "RRA"],
    "hawk": ["--block-pattern", "R"],
    "attention": ["--block-pattern", "A"],  # window set to the evaluation length below
}


def held_out_files(count: int, min_tokens: int) -> list:
    """The first `count` package modules (sorted by path) holding at least min_tokens tokens."""
    from griffin_megatron.data.tokenizers import load_tokenizer
    from griffin_megatron.training.default_run import corpus_dir, prepare_corpus

    prepare_corpus(progress=False)
    tokenizer = load_tokenizer(corpus_dir() / "tokenizer.json")
    stdlib = sysconfig.get_paths()["stdlib"]
    chosen = []
    for path in sorted(glob.glob(os.path.join(stdlib, "*", "*.py"))):
        if "site-packages" in path or "/test" in path or "/idlelib/" in path:
            continue
        if len(tokenizer.encode(Path(path).read_text(encoding="utf-8"))) >= min_tokens:
            chosen.append(path)
            if len(chosen) == count:
                break
    return chosen


def cli(*args) -> None:
    subprocess.run([sys.executable, "-m", "griffin_megatron", *args], check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-iters", type=int, default=300)
    parser.add_argument("--train-length", type=int, default=128)
    parser.add_argument("--eval-length", type=int, default=4096)
    parser.add_argument("--held-out-files", type=int, default=8)
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--models", default="griffin,hawk,attention")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/extrapolation"))
    parser.add_argument("--markdown", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--skip-existing", action="store_true",
                        help="reuse a model's evaluation.json already in --out-dir (resume a study)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    files = held_out_files(args.held_out_files, args.eval_length + 1)
    print(f"held-out documents: {', '.join(Path(f).parent.name + '/' + Path(f).name for f in files)}")
    curves, seconds = {}, {}
    for name in args.models.split(","):
        began = time.perf_counter()
        result_file = args.out_dir / f"{name}-eval" / "evaluation.json"
        if args.skip_existing and result_file.is_file():
            curves[name] = json.loads(result_file.read_text())
            seconds[name] = float("nan")
            continue
        save = args.out_dir / name
        shutil.rmtree(save, ignore_errors=True)  # a fresh run, not a resume
        extra = list(MODELS[name])
        if name == "attention":
            extra += ["--attention-window", str(args.eval_length)]
        cli("train", *extra, "--seq-length", str(args.train_length),
            "--train-iters", str(args.train_iters), "--eval-interval", str(args.train_iters),
            "--save", str(save))
        cli("evaluate", "--load", str(save), "--text-files", *files,
            "--seq-length", str(args.eval_length), "--chunk-tokens", str(args.chunk_tokens),
            "--output-dir", str(args.out_dir / f"{name}-eval"), "--no-plot")
        curves[name] = json.loads((args.out_dir / f"{name}-eval" / "evaluation.json").read_text())
        seconds[name] = time.perf_counter() - began

    from griffin_megatron.evaluation.report import bucket_table_markdown, plot_loss_by_position

    png = plot_loss_by_position(
        curves, args.out_dir / "extrapolation.png", training_length=args.train_length,
        title=f"held-out loss by position (trained at {args.train_length} tokens)")
    table = bucket_table_markdown(curves)
    totals = ", ".join(f"{n} {c['loss']:.3f} ({seconds[n] / 60:.1f} min)" for n, c in curves.items())
    print(table)
    print(f"overall loss: {totals}\nwrote {png}")
    if args.markdown:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        with open(args.markdown, "a") as out:
            out.write(
                f"\n### Length extrapolation ({stamp}, {platform.machine()}, CPU, 1 thread)\n\n"
                f"Trained {args.train_iters} steps at {args.train_length} tokens; evaluated on "
                f"{len(files)} held-out documents to {args.eval_length} tokens "
                f"({args.eval_length // args.train_length}x). Mean loss (nats/token) per bucket:\n\n"
                f"{table}\n\nOverall loss and wall time (train + evaluate): {totals}.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
