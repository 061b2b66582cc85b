"""`griffin-megatron preprocess`: raw text (JSON lines or text files) -> Megatron indexed dataset."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help=".jsonl files (one document per line) or text files; globs expand")
    parser.add_argument("--output-prefix", required=True,
                        help="writes PREFIX.bin, PREFIX.idx and PREFIX.meta.json")
    parser.add_argument("--tokenizer",
                        help="tokenizer.json, SentencePiece .model, or a directory with one "
                        "(default: train a byte-level BPE on the input, saved beside the output)")
    parser.add_argument("--vocab-size", type=int, default=32768,
                        help="vocabulary of the trained BPE (without --tokenizer)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="tokenizer processes")
    parser.add_argument("--json-key", default="text", help="text field of .jsonl records")
    parser.add_argument("--text-document", choices=("file", "line"), default="file",
                        help="text inputs: one document per file or per line")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")


def run(args: argparse.Namespace) -> int:
    from ..data.preprocess import preprocess

    result = preprocess(
        args.input, args.output_prefix, tokenizer=args.tokenizer, workers=args.workers,
        vocab_size=args.vocab_size, json_key=args.json_key, text_document=args.text_document,
        overwrite=args.overwrite,
    )
    print(f"wrote {result.prefix}.bin/.idx: {result.documents:,} documents, "
          f"{result.tokens:,} tokens (tokenizer {result.tokenizer_path})")
    print(f"train on it with: griffin-megatron train --data-path {result.prefix} ...")
    return 0
