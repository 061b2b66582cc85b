"""The token sequences to evaluate, each as (ids [N], positions [N]) int64 numpy arrays.

- `indexed_dataset_sequences`: one split of a Megatron indexed dataset, cut into samples of
  seq_length + 1 tokens by Megatron's `GPTDataset` with the training run's conventions (the
  `--split` string and seed select the same held-out documents training left out; position ids
  restart after every end-of-document token);
- `text_file_sequences`: raw text files, one document per file, tokenized with the model's
  tokenizer; a file longer than seq_length + 1 tokens is cut into consecutive pieces, each
  evaluated from a fresh state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy

from ..errors import DataError, InputFileError

SPLITS = ("train", "valid", "test")
Sequence_ = Tuple[numpy.ndarray, numpy.ndarray]


def positions_from_ids(ids: numpy.ndarray, eod: Optional[int], first: int = 0) -> numpy.ndarray:
    """Position ids restarting at 0 after every `eod` token (the training convention)."""
    length = len(ids)
    index = numpy.arange(length, dtype=numpy.int64)
    if eod is None:
        return index + first
    starts = numpy.zeros(length, dtype=bool)
    starts[1:] = ids[:-1] == eod
    last_start = numpy.maximum.accumulate(numpy.where(starts, index, -1))
    return numpy.where(last_start >= 0, index - last_start, index + first)


def indexed_dataset_sequences(
    prefix: str,
    seq_length: int,
    split: str = "95,5,0",
    split_name: str = "valid",
    seed: int = 1234,
    max_sequences: Optional[int] = None,
    cache_path: Optional[str] = None,
    tokenizer: Optional[str] = None,
) -> Iterator[Sequence_]:
    """Samples of seq_length + 1 tokens from one split of `prefix` (one epoch, shuffled as
    training shuffles), at most max_sequences of them."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset

    from ..training.data import (
        check_dataset_files,
        ensure_dataset_helpers,
        gpt_dataset_config,
        resolve_tokenizer,
    )

    try:
        check_dataset_files([prefix])
    except FileNotFoundError as error:
        raise InputFileError(error.args[0]) from None
    if split_name not in SPLITS:
        raise DataError(f"split {split_name!r} is not one of {', '.join(SPLITS)}.")
    tok = resolve_tokenizer([prefix], tokenizer)
    ensure_dataset_helpers()
    config = gpt_dataset_config(([prefix], None), seq_length, split, seed, cache_path, tok)
    sizes: List[Optional[int]] = [0, 0, 0]
    sizes[SPLITS.index(split_name)] = None  # one epoch of this split
    try:
        datasets = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()
    except (AssertionError, ValueError) as error:
        raise DataError(
            f"cannot cut the {split_name} split ({split}) of {prefix} into sequences of "
            f"{seq_length} tokens ({error}); use a shorter --seq-length or another --split."
        ) from None
    dataset = datasets[SPLITS.index(split_name)]
    if dataset is None or len(dataset) == 0:
        raise DataError(
            f"the {split_name} split ({split}) of {prefix} holds fewer than {seq_length + 1} "
            "tokens; use a shorter --seq-length or give that split a larger share with --split."
        )
    count = len(dataset) if max_sequences is None else min(max_sequences, len(dataset))
    for index in range(count):
        sample = dataset[index]
        ids = numpy.concatenate([sample["tokens"].numpy(), sample["labels"].numpy()[-1:]])
        yield ids, positions_from_ids(ids, tok.eod)


def text_file_sequences(paths: Sequence[str], encode, seq_length: int) -> Iterator[Sequence_]:
    """Each file one document: its ids in pieces of at most seq_length + 1 tokens."""
    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise InputFileError(f"text file {path} does not exist; pass existing UTF-8 text files.")
    for path in files:
        ids = numpy.asarray(encode(path.read_text(encoding="utf-8")), dtype=numpy.int64)
        if len(ids) < 2:
            raise DataError(f"{path} holds fewer than 2 tokens; there is nothing to predict.")
        for start in range(0, len(ids) - 1, seq_length):
            piece = ids[start:start + seq_length + 1]
            if len(piece) >= 2:
                yield piece, numpy.arange(len(piece), dtype=numpy.int64)
