"""The token sequences to evaluate, each as (ids [N], positions [N]) int64 numpy arrays.

- `indexed_dataset_sequences`: one split of a Megatron indexed dataset, cut into samples of
  seq_length + 1 tokens by Megatron's `GPTDataset` with the training run's conventions (the
  `--split` string and seed select the same held-out documents training left out; position ids
  restart after every end-of-document token);
- `text_file_sequences`: raw text files (read by `read_text_files`), one document per file,
  tokenized with the model's tokenizer; a file longer than seq_length + 1 tokens is cut into
  consecutive pieces, each evaluated from a fresh state.

The checks (`checked_indexed_dataset`, `read_text_files`) run before the model loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy

from ..data.tokenizers import TextTokenizer
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


def checked_indexed_dataset(prefix: str, split: str = "95,5,0",
                            tokenizer: Optional[str] = None) -> TextTokenizer:
    """The tokenizer of dataset `prefix`, after the checks `train` makes before Megatron's
    dataset builder sees it: its files, its documents per --split (a split with a share but no
    document sends the builder into an endless loop) and its token ids against the tokenizer.
    Cheap, so evaluate runs it before the model loads."""
    from ..training.data import check_dataset_files, check_split_sizes, resolve_tokenizer

    check_dataset_files([prefix])
    check_split_sizes([prefix], split)
    return resolve_tokenizer([prefix], tokenizer)


def indexed_dataset_sequences(
    prefix: str,
    seq_length: int,
    tok: TextTokenizer,
    split: str = "95,5,0",
    split_name: str = "valid",
    seed: int = 1234,
    max_sequences: Optional[int] = None,
    cache_path: Optional[str] = None,
) -> Iterator[Sequence_]:
    """Samples of seq_length + 1 tokens from one split of `prefix` (one epoch, shuffled as
    training shuffles), at most max_sequences of them. `tok` comes from
    `checked_indexed_dataset`, which must have accepted the dataset and split."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset

    from ..data.megatron_adapter import MegatronTokenizerAdapter
    from ..run_config import gpt_dataset_config
    from ..training.data import ensure_dataset_helpers

    if split_name not in SPLITS:
        raise DataError(f"split {split_name!r} is not one of {', '.join(SPLITS)}.")
    ensure_dataset_helpers()
    config = gpt_dataset_config(([prefix], None), seq_length, split, seed, cache_path,
                                MegatronTokenizerAdapter(tok))
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


def read_text_files(paths: Sequence[str]) -> List[Tuple[Path, str]]:
    """(path, text) of each file, or one sentence for the first that is missing or not UTF-8.
    Read before the model loads, so a bad file costs no evaluation."""
    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise InputFileError(f"text file {path} does not exist; pass existing UTF-8 text files.")
    documents = []
    for path in files:
        try:
            documents.append((path, path.read_text(encoding="utf-8")))
        except UnicodeDecodeError as error:
            raise DataError(
                f"text file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
                f"offset {error.start}: {error.reason}); --text-files takes UTF-8 text: convert "
                f"text in another encoding first (e.g. iconv -f latin1 -t utf-8 {path}), or "
                "pass another file."
            ) from None
    return documents


def text_file_sequences(documents: Sequence[Tuple[Path, str]], encode,
                        seq_length: int) -> Iterator[Sequence_]:
    """Each file one document: its ids in pieces of at most seq_length + 1 tokens."""
    for path, text in documents:
        ids = numpy.asarray(encode(text), dtype=numpy.int64)
        if len(ids) < 2:
            raise DataError(f"{path} holds fewer than 2 tokens; there is nothing to predict.")
        for start in range(0, len(ids) - 1, seq_length):
            piece = ids[start:start + seq_length + 1]
            if len(piece) >= 2:
                yield piece, numpy.arange(len(piece), dtype=numpy.int64)
