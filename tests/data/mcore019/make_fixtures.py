"""Writes the checkpoints in this folder with megatron-core 0.19 (the Python 3.12 venv), for
tests/compat/test_checkpoints_across_releases.py, which opens them on every release:

    model/          `griffin-megatron convert hf-to-mcore` of a tiny random HF RecurrentGemma
    pretrain/       Megatron-LM's pretrain() (griffin_megatron.megatron_training), one iteration
                    of a tiny Hawk, model weights only (--no-save-optim --no-save-rng)

Run from the repository root: `python -m tests.data.mcore019.make_fixtures` (about a minute).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def run(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True)


def main() -> None:
    from griffin_megatron.compat import megatron_core_version
    from griffin_megatron.data.preprocess import preprocess
    from tests.fixtures.corpus import documents, write_jsonl
    from tests.fixtures.hf_models import make_hf_model

    assert megatron_core_version()[:2] == (0, 19), megatron_core_version()
    for name in ("model", "pretrain"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        make_hf_model(hidden_size=32, lru_width=32, num_attention_heads=2, vocab_size=64,
                      intermediate_size=64, attention_window_size=4).save_pretrained(scratch / "hf")
        run(["-m", "griffin_megatron", "convert", "hf-to-mcore", "--hf-dir", str(scratch / "hf"),
             "--out", str(HERE / "model")], cwd=scratch)
        write_jsonl(scratch / "docs.jsonl", documents(100))
        prefix = preprocess([str(scratch / "docs.jsonl")], scratch / "data" / "corpus",
                            vocab_size=300).prefix
        run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m",
             "griffin_megatron.megatron_training", "--preset", "hawk-tiny", "--num-layers", "1",
             "--hidden-size", "16", "--ffn-hidden-size", "32", "--num-attention-heads", "2",
             "--kv-channels", "8", "--lru-width", "16", "--rglru-num-heads", "2",
             "--seq-length", "16", "--micro-batch-size", "2", "--global-batch-size", "2",
             "--lr", "1e-3", "--train-iters", "1", "--eval-iters", "1", "--eval-interval", "1000",
             "--split", "98,2,0", "--distributed-backend", "gloo", "--ckpt-format", "torch_dist",
             "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", str(prefix.parent),
             "--data-path", str(prefix), "--save", str(scratch / "save"), "--save-interval", "1",
             "--no-save-optim", "--no-save-rng", "--make-vocab-size-divisible-by", "16"],
            cwd=scratch)
        shutil.copytree(scratch / "save" / "iter_0000001", HERE / "pretrain")


if __name__ == "__main__":
    main()
