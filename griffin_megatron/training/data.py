"""Training data through Megatron-Core's datasets: `BlendedMegatronDatasetBuilder` + `GPTDataset`
over indexed datasets written by `griffin-megatron preprocess` (or Megatron-LM's tools).

Every rank builds the datasets (rank 0 first, the others then read its index caches) and reads
its own micro-batches, so tensor-parallel ranks and pipeline stages all see the same batch
without a broadcast: every pipeline stage needs `position_ids` to find document boundaries.
Position ids restart after each end-of-document token (`reset_position_ids`), which is where the
model resets its recurrence, convolution and attention window.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy
import torch
from megatron.core import parallel_state

from ..data.megatron_adapter import MegatronTokenizerAdapter
from ..data.preprocess import read_meta
from ..data.tokenizers import TextTokenizer, load_tokenizer
from ..errors import DataError, InputFileError
from ..run_config import gpt_dataset_config

# The first bytes of every Megatron .idx file (megatron.core.datasets.indexed_dataset).
INDEX_HEADER = b"MMIDIDX\x00\x00"
# Tokens read per dataset when checking that its ids fit the tokenizer's vocabulary.
VOCAB_CHECK_TOKENS = 1 << 26


def ensure_dataset_helpers() -> None:
    """Megatron's dataset index builders are C++ (`megatron.core.datasets.helpers_cpp`). The
    megatron-core wheels ship it compiled; a source install compiles it with `make` on first
    use, on rank 0 only, as Megatron-LM does."""
    try:
        from megatron.core.datasets import helpers_cpp  # noqa: F401

        return
    except ImportError:
        pass
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        torch.distributed.barrier()
    else:
        from megatron.core.datasets.utils import compile_helpers

        compile_helpers()
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
    from megatron.core.datasets import helpers_cpp  # noqa: F401,F811


def parse_blend(tokens: List[str]) -> Tuple[List[str], Optional[List[float]]]:
    """--data-path 'p1 p2' or 'w1 p1 w2 p2' -> (prefixes, weights or None)."""

    def number(token: str) -> Optional[float]:
        try:
            return float(token)
        except ValueError:
            return None

    numbers = [number(t) for t in tokens]
    if all(n is None for n in numbers):
        return list(tokens), None
    pairs_ok = len(tokens) % 2 == 0 and all(
        (n is not None) == (i % 2 == 0) for i, n in enumerate(numbers)
    )
    if not pairs_ok or any(n <= 0 for n in numbers[0::2]):
        raise DataError(
            f"--data-path {' '.join(tokens)} mixes weights and prefixes; give prefixes only "
            "('p1 p2') or positive weight/prefix pairs ('0.7 p1 0.3 p2')."
        )
    return list(tokens[1::2]), [float(w) for w in tokens[0::2]]


def check_dataset_files(prefixes: List[str]) -> None:
    for prefix in prefixes:
        missing = [p for p in (f"{prefix}.bin", f"{prefix}.idx") if not Path(p).is_file()]
        if missing:
            raise InputFileError(
                f"dataset {prefix} is missing {missing[0]}; --data-path takes the prefix that "
                "`griffin-megatron preprocess --output-prefix` wrote (without .bin/.idx)."
            )


def resolve_tokenizer(prefixes: List[str], tokenizer: Optional[str]) -> TextTokenizer:
    """The --tokenizer, or the one preprocess recorded; checked against every dataset."""
    metas = {prefix: read_meta(prefix) for prefix in prefixes}
    if tokenizer is None:
        recorded = [m["tokenizer"]["path"] for m in metas.values() if m is not None]
        if not recorded:
            raise DataError(
                f"no tokenizer given and dataset {prefixes[0]} records none (it was not written "
                "by `griffin-megatron preprocess`); pass --tokenizer."
            )
        tokenizer = recorded[0]
    tok = load_tokenizer(tokenizer)
    fingerprint = tok.fingerprint()
    for prefix, meta in metas.items():
        if meta is not None:
            wrote = meta["tokenizer"]
            if wrote["sha256"] != fingerprint["sha256"]:
                raise DataError(
                    f"dataset {prefix} was tokenized with {wrote['path']} (vocabulary "
                    f"{wrote['vocab_size']}), not with {tok.path} (vocabulary {tok.vocab_size}); "
                    "pass the tokenizer the data was preprocessed with, or preprocess again."
                )
        check_token_ids_fit(prefix, tok)
    return tok


def open_indexed_dataset(prefix: str):
    """Megatron's IndexedDataset of `prefix`, or one sentence if its files are damaged."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    def unreadable(why: str) -> DataError:
        return DataError(
            f"dataset {prefix} cannot be read ({why}): {prefix}.idx or {prefix}.bin is damaged "
            "or not a Megatron indexed dataset; run `griffin-megatron preprocess` again."
        )

    # A bad header is checked here: IndexedDataset would leave a half-built object whose
    # __del__ prints its own AttributeError at exit.
    with open(f"{prefix}.idx", "rb") as index:
        if index.read(len(INDEX_HEADER)) != INDEX_HEADER:
            raise unreadable(f"{prefix}.idx does not start with Megatron's index header")
    try:
        dataset = IndexedDataset(prefix, mmap=True)
        if dataset.sequence_lengths.size:
            last = int(dataset.index.sequence_pointers[-1]) + int(dataset.sequence_lengths[-1]) * \
                numpy.dtype(dataset.index.dtype).itemsize
            if last > Path(f"{prefix}.bin").stat().st_size:
                raise ValueError(f"{prefix}.bin is shorter than its index says")
    except (AssertionError, ValueError, OSError, struct.error, IndexError) as error:
        raise unreadable(str(error) or type(error).__name__) from None
    return dataset


def check_token_ids_fit(prefix: str, tok: TextTokenizer) -> None:
    """The largest id in (the start of) the dataset must exist in the tokenizer."""
    dataset = open_indexed_dataset(prefix)
    count = min(int(dataset.sequence_lengths.sum()), VOCAB_CHECK_TOKENS)
    tokens = numpy.memmap(f"{prefix}.bin", dtype=dataset.index.dtype, mode="r", shape=(count,))
    largest = int(tokens.max()) if count else -1
    if largest >= tok.vocab_size:
        raise DataError(
            f"dataset {prefix} holds token id {largest} but tokenizer {tok.path} has only "
            f"{tok.vocab_size} tokens; pass the tokenizer the data was preprocessed with."
        )


SPLIT_NAMES = ("training", "validation", "test")


def documents_per_split(documents: int, split: str) -> List[Optional[int]]:
    """How many documents Megatron's builder gives each split (None: a split without a share),
    by its own rule (split matrix, then rounding of the book-ends)."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )

    matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))
    return [None if bounds is None else
            int(round(bounds[1] * float(documents))) - int(round(bounds[0] * float(documents)))
            for bounds in matrix]


def check_split_sizes(prefixes: List[str], split: str) -> None:
    """A split with a share but no document sends Megatron's GPTDataset into an endless epoch
    loop (no tokens per epoch); refuse it while it is still a sentence."""
    from megatron.core.datasets.gpt_dataset import GPTDataset

    for prefix in prefixes:
        documents = GPTDataset.numel_low_level_dataset(open_indexed_dataset(prefix))
        counts = documents_per_split(documents, split)
        if any(count == 0 for count in counts):
            given = ", ".join(f"{count} {name}" for count, name in zip(counts, SPLIT_NAMES)
                              if count is not None)
            empty = next(name for count, name in zip(counts, SPLIT_NAMES) if count == 0)
            raise DataError(
                f"dataset {prefix} has {documents} document{'' if documents == 1 else 's'}, which "
                f"--split {split} divides into "
                f"{given}, so the {empty} split is empty; add documents, or give that split no "
                "share (e.g. --split 100,0,0 trains without validation)."
            )


def dataset_sizes(train_iters: int, eval_iters: int, global_batch_size: int) -> List[int]:
    """Samples to draw per split (train, valid, test). Validation uses the same eval_iters
    global batches every time, so its losses are comparable across the run."""
    eval_samples = eval_iters * global_batch_size
    return [train_iters * global_batch_size, eval_samples, eval_samples]


def build_datasets(data_path: List[str], split: str, seed: int, cache_path: Optional[str],
                   eod_mask_loss: bool, sizes: List[int], tok: TextTokenizer, seq_length: int):
    """(train, valid, test) Megatron datasets of `sizes` samples (dataset_sizes); valid/test are
    None for empty splits."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset

    ensure_dataset_helpers()
    config = gpt_dataset_config(parse_blend(data_path), seq_length, split, seed, cache_path,
                                MegatronTokenizerAdapter(tok), eod_mask_loss=eod_mask_loss)
    builder = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config)
    return builder.build()


class PretrainingSampler:
    """Batches of dataset indices for this data-parallel rank, starting after the samples
    already consumed (resume): each global step takes the next global_batch_size indices, and
    each rank its own micro_batch_size slice of every micro_batch_size x dp block (the layout of
    Megatron-LM's MegatronPretrainingSampler)."""

    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int,
                 data_parallel_rank: int, data_parallel_size: int):
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.rank = data_parallel_rank
        self.block = micro_batch_size * data_parallel_size

    def __iter__(self) -> Iterator[List[int]]:
        start = self.consumed_samples
        while start + self.block <= self.total_samples:
            first = start + self.rank * self.micro_batch_size
            yield list(range(first, first + self.micro_batch_size))
            start += self.block


def _loader(dataset, sampler: PretrainingSampler, num_workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers,
        pin_memory=torch.cuda.is_available(), persistent_workers=False,
    )


@dataclass
class DataIterators:
    """Iterators of micro-batches, one per model chunk (virtual pipeline stages each walk the
    same micro-batch sequence, as Megatron's interleaved schedule expects)."""

    train: List[Iterator]
    valid_dataset: object
    micro_batch_size: int

    def validation(self) -> Optional[List[Iterator]]:
        """Fresh iterators over the fixed validation batches."""
        if self.valid_dataset is None:
            return None
        return [iter(self._valid_loader()) for _ in range(len(self.train))]

    def _valid_loader(self):
        sampler = PretrainingSampler(
            len(self.valid_dataset), 0, self.micro_batch_size,
            parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size(),
        )
        return _loader(self.valid_dataset, sampler, 0)


def build_data_iterators(datasets, consumed_samples: int, num_chunks: int, micro_batch_size: int,
                         num_workers: int) -> DataIterators:
    train, valid, _ = datasets
    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    iterators = []
    for _ in range(num_chunks):
        sampler = PretrainingSampler(len(train), consumed_samples, micro_batch_size, dp_rank,
                                     dp_size)
        iterators.append(iter(_loader(train, sampler, num_workers)))
    return DataIterators(iterators, valid, micro_batch_size)
