"""`griffin-megatron train` with no --data-path: a tiny Griffin trained on text every machine has,
the Python standard library's own top-level modules (about 170 files, 4-5 MB).

On first use the files are tokenized with a byte-level BPE trained on them, into
`~/.cache/griffin-megatron/` (or $XDG_CACHE_HOME/griffin-megatron/); later runs reuse it. The
settings below are defaults: any option on the command line or in --config still wins.
"""

from __future__ import annotations

import glob
import os
import sysconfig
from pathlib import Path
from typing import List, Optional

from ..errors import InputFileError
from ..checkpoint import atomic_directory

CORPUS_VERSION = 1
VOCAB_SIZE = 2048
PREFIX_NAME = "stdlib"

# Sized to finish in a few minutes on two CPU cores with validation loss well below its start.
SETTINGS = {
    "preset": "griffin-tiny",
    "hidden_size": 128,
    "lru_width": 128,
    "ffn_hidden_size": 384,
    "num_attention_heads": 4,
    "kv_channels": 32,
    "rglru_num_heads": 4,
    "num_layers": 3,
    "attention_window": 64,
    "seq_length": 128,
    "micro_batch_size": 8,
    "global_batch_size": 16,
    "train_iters": 300,
    "lr": 3e-3,
    "min_lr": 3e-4,
    "lr_warmup_iters": None,  # a tenth of --train-iters
    "lr_decay_style": "cosine",
    "weight_decay": 0.1,
    "split": "95,5,0",
    "eval_interval": 100,
    "eval_iters": 4,
    "log_interval": 25,
}


def limit_cpu_threads() -> Optional[str]:
    """One intra-op thread on a CPU unless OMP_NUM_THREADS says otherwise (as torchrun does for
    each of its processes). The default model is so small that a second thread gains little, and
    on a machine whose cores are busy with other work, threads that wait for each other made
    steps 20x slower (measured on 2 shared cores). Returns a note for the log, or None."""
    import torch

    if torch.cuda.is_available() or "OMP_NUM_THREADS" in os.environ:
        return None
    torch.set_num_threads(1)
    return "using 1 CPU thread (set OMP_NUM_THREADS to use more)"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "griffin-megatron"


def corpus_dir() -> Path:
    version = f"py{sysconfig.get_python_version()}"
    return cache_root() / f"stdlib-{version}-bpe{VOCAB_SIZE}-v{CORPUS_VERSION}"


def corpus_files() -> List[str]:
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    if not files:
        raise InputFileError(
            f"found no Python sources under {sysconfig.get_paths()['stdlib']} for the default "
            "run; pass your own data with --data-path (see `griffin-megatron preprocess`)."
        )
    return files


def prepare_corpus(progress: Optional[bool] = None) -> str:
    """The dataset prefix of the default corpus, building it on first use. Built in a temporary
    directory and renamed into place, so an interrupted build is never mistaken for a cache."""
    from ..data.preprocess import dataset_files, preprocess

    target = corpus_dir()
    prefix = target / PREFIX_NAME
    if all(path.is_file() for path in dataset_files(prefix)):
        return str(prefix)
    with atomic_directory(target, replace=True) as staging:
        print(f"preparing the default corpus (Python standard library sources) in {target}",
              flush=True)
        result = preprocess(corpus_files(), staging / PREFIX_NAME, vocab_size=VOCAB_SIZE,
                            progress=progress)
        # The record names the tokenizer by path: point it at its final place.
        meta_file = dataset_files(staging / PREFIX_NAME)[2]
        meta_file.write_text(meta_file.read_text().replace(str(staging), str(target)))
    print(f"  {result.documents} files, {result.tokens:,} tokens", flush=True)
    return str(prefix)
