"""Raw text -> Megatron indexed dataset (`<prefix>.bin` / `<prefix>.idx`), one document per entry,
each ending with the tokenizer's end-of-document token.

Inputs are JSON-lines files (one document per line, text under `--json-key`) or plain text files
(one document per file, or per line). Tokenization runs in worker processes; the dataset is written
under temporary names and renamed into place at the end, so an interrupted run leaves nothing that
looks like a dataset. `<prefix>.meta.json` records the tokenizer (kind, vocabulary, EOD, file hash)
so that training can refuse a tokenizer that does not match the data.
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import ConfigError, DataError, InputFileError, OutputExistsError
from ..output_paths import check_apart_from_inputs, check_creatable_file
from .tokenizers import HF_CONFIG_FILE, HF_FILE, TextTokenizer, load_tokenizer, train_byte_level_bpe

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TEXT_DOCUMENT_MODES = ("file", "line")
META_SUFFIX = ".meta.json"
DOCUMENTS_PER_TASK = 32


@dataclass
class PreprocessResult:
    prefix: Path
    documents: int
    tokens: int
    tokenizer_path: Path


MIN_TRAINED_VOCAB = 257


def expand_inputs(patterns: Sequence[str]) -> List[Path]:
    """Files named by the user, glob patterns expanded, in a stable order."""
    files: List[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise InputFileError(
                f"input {pattern} matches no file; pass existing .jsonl or text files (globs "
                "such as 'data/*.jsonl' are expanded)."
            )
        files.extend(Path(m) for m in matches)
    return files


def iter_documents(
    path: Path, json_key: str = "text", text_document: str = "file"
) -> Iterator[str]:
    """The documents of one input file."""
    if path.suffix in JSONL_SUFFIXES:
        yield from _jsonl_documents(path, json_key)
        return
    text = _utf8_text(path)
    if text_document == "file":
        if text:
            yield text
    else:
        yield from (line for line in text.splitlines(keepends=True) if line.strip())


def _not_text(path: Path, why: str) -> DataError:
    return DataError(
        f"{path} is not a text file ({why}); preprocess reads UTF-8 JSON lines (.jsonl) or "
        "UTF-8 text files: leave binary files out of --input."
    )


def _utf8_text(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise _not_text(path, f"byte {error.start} is not UTF-8") from None
    if "\x00" in text:
        raise _not_text(path, f"it holds a NUL byte at character {text.index(chr(0))}")
    return text


def _jsonl_documents(path: Path, json_key: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(
                        f"{path}:{number} is not valid JSON ({error.msg}); JSON-lines inputs need "
                        "one JSON object per line."
                    ) from None
                if not isinstance(record, dict) or json_key not in record:
                    raise DataError(
                        f"{path}:{number} has no {json_key!r} field; name the text field with "
                        "--json-key."
                    )
                yield str(record[json_key])
    except UnicodeDecodeError as error:
        raise _not_text(path, f"byte {error.start} of a line is not UTF-8") from None


def iter_corpus(files: Sequence[Path], json_key: str, text_document: str) -> Iterator[str]:
    for path in files:
        yield from iter_documents(path, json_key, text_document)


def meta_path(prefix: Union[str, Path]) -> Path:
    return Path(f"{prefix}{META_SUFFIX}")


def read_meta(prefix: Union[str, Path]) -> Optional[dict]:
    path = meta_path(prefix)
    return json.loads(path.read_text()) if path.is_file() else None


def dataset_files(prefix: Union[str, Path]) -> List[Path]:
    return [Path(f"{prefix}.bin"), Path(f"{prefix}.idx"), meta_path(prefix)]


# Workers: each loads the tokenizer once and encodes chunks of documents.
_worker_tokenizer: Optional[TextTokenizer] = None


def _init_worker(tokenizer_path: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = TextTokenizer(tokenizer_path)


def _encode_chunk(texts: List[str]) -> Tuple[List[List[int]], int]:
    """Token ids of each document, and the chunk's size in bytes (for the progress bar)."""
    size = sum(len(text.encode("utf-8", errors="replace")) for text in texts)
    return _worker_tokenizer.encode_batch(texts), size


def _chunks(documents: Iterator[str], size: int) -> Iterator[List[str]]:
    chunk: List[str] = []
    for document in documents:
        chunk.append(document)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ordered_results(pool, chunks: Iterator[List[str]], window: int):
    """Encode chunks in the pool, in order, keeping at most `window` chunks in flight (a corpus
    larger than memory streams through). A worker that dies raises BrokenProcessPool here."""
    pending: deque = deque()
    for chunk in chunks:
        pending.append(pool.submit(_encode_chunk, chunk))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _check_outputs(prefix: Path, overwrite: bool, trained_tokenizer: Optional[Path],
                   files: Sequence[Path]) -> None:
    trained = [] if trained_tokenizer is None else [
        trained_tokenizer, trained_tokenizer.parent / HF_CONFIG_FILE]
    for output in [*dataset_files(prefix), *trained]:
        check_apart_from_inputs(output, "--output-prefix", [("--input", f) for f in files])
    existing = [p for p in dataset_files(prefix) if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{existing[0]} already exists; choose another --output-prefix or pass --overwrite."
        )
    if trained_tokenizer is not None and trained_tokenizer.exists() and not overwrite:
        raise OutputExistsError(
            f"{trained_tokenizer} already exists and preprocess would train a new tokenizer there; "
            f"pass --tokenizer {trained_tokenizer} to reuse it, choose another output directory, "
            "or pass --overwrite."
        )


def preprocess(
    inputs: Sequence[str],
    output_prefix: Union[str, Path],
    tokenizer: Optional[Union[str, Path]] = None,
    workers: int = 1,
    vocab_size: int = 8192,
    json_key: str = "text",
    text_document: str = "file",
    overwrite: bool = False,
    progress: Optional[bool] = None,
) -> PreprocessResult:
    """Tokenize `inputs` into `<output_prefix>.bin/.idx` (+ `.meta.json`).

    tokenizer: a tokenizer file or directory; when None a byte-level BPE with `vocab_size` entries
        is trained on the inputs and saved as `tokenizer.json` beside the dataset.
    progress: show a tqdm bar (default: when stderr is a terminal).
    """
    if text_document not in TEXT_DOCUMENT_MODES:
        raise ConfigError(f"text_document={text_document!r} must be one of {TEXT_DOCUMENT_MODES}.")
    if workers < 1:
        raise ConfigError(f"--workers={workers} must be at least 1.")
    if tokenizer is None and vocab_size < MIN_TRAINED_VOCAB:
        raise ConfigError(
            f"--vocab-size={vocab_size} is too small for the trained byte-level BPE, which needs "
            f"at least {MIN_TRAINED_VOCAB} tokens (256 bytes and the end-of-document token); "
            "pass a larger --vocab-size, e.g. 8192."
        )
    files = expand_inputs(inputs)
    prefix = check_creatable_file(output_prefix, "--output-prefix").absolute()
    trained_path = None if tokenizer else prefix.parent / HF_FILE
    _check_outputs(prefix, overwrite, trained_path, files)
    if next(iter_corpus(files, json_key, text_document), None) is None:
        raise _no_documents(files)
    prefix.parent.mkdir(parents=True, exist_ok=True)

    if tokenizer is None:
        tok = train_byte_level_bpe(
            iter_corpus(files, json_key, text_document), prefix.parent, vocab_size=vocab_size
        )
    else:
        tok = load_tokenizer(tokenizer)
    try:
        return _write_dataset(files, prefix, tok, tokenizer, workers, json_key, text_document,
                              progress)
    except BaseException:
        if tokenizer is None:  # the tokenizer trained for data that was never written
            for name in (HF_FILE, HF_CONFIG_FILE):
                (prefix.parent / name).unlink(missing_ok=True)
        raise


def _no_documents(files) -> DataError:
    return DataError(
        f"the inputs ({', '.join(map(str, files))}) hold no documents; check the files and "
        "--json-key."
    )


def _write_dataset(files, prefix, tok, tokenizer, workers, json_key, text_document,
                   progress) -> PreprocessResult:
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder
    from tqdm import tqdm

    partial_bin = Path(f"{prefix}.bin.partial-{os.getpid()}")
    partial_idx = Path(f"{prefix}.idx.partial-{os.getpid()}")
    builder = IndexedDatasetBuilder(str(partial_bin), dtype=DType.optimal_dtype(tok.vocab_size))
    total_bytes = sum(p.stat().st_size for p in files)
    bar = tqdm(
        total=total_bytes, unit="B", unit_scale=True, desc=f"preprocess {prefix.name}",
        disable=(not progress) if progress is not None else None,
    )
    documents = tokens = 0
    chunks = _chunks(iter_corpus(files, json_key, text_document), DOCUMENTS_PER_TASK)
    pool = None
    try:
        if workers > 1:
            # spawn: the parent may hold threads (tokenizers, torch) that fork would copy badly.
            pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(str(tok.path),),
            )
            results = _ordered_results(pool, chunks, window=4 * workers)
        else:
            _init_worker(str(tok.path))
            results = map(_encode_chunk, chunks)
        for encoded, size in results:
            for ids in encoded:
                ids.append(tok.eod)
                builder.add_document(ids, [len(ids)])
                documents += 1
                tokens += len(ids)
            bar.update(size)
        if documents == 0:
            raise _no_documents(files)
        builder.finalize(str(partial_idx))
        os.replace(partial_bin, f"{prefix}.bin")
        os.replace(partial_idx, f"{prefix}.idx")
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        for leftover in (partial_bin, partial_idx):
            leftover.unlink(missing_ok=True)

    saved_tokenizer = tok.path if tokenizer else prefix.parent / HF_FILE
    meta = {
        "format": "griffin-megatron preprocess 1",
        "documents": documents,
        "tokens": tokens,
        "inputs": [str(p.absolute()) for p in files],
        "tokenizer": {**tok.fingerprint(), "path": str(Path(saved_tokenizer).absolute())},
    }
    meta_path(prefix).write_text(json.dumps(meta, indent=2) + "\n")
    return PreprocessResult(prefix, documents, tokens, Path(saved_tokenizer))
