"""`griffin-megatron evaluate`: loss and perplexity by position, at any sequence length.

    griffin-megatron evaluate --load CKPT --data-path PREFIX --seq-length 65536 --chunk-tokens 2048
    griffin-megatron evaluate --hf-dir DIR --text-files book.txt --seq-length 1048576
    torchrun --nproc-per-node 2 -m griffin_megatron evaluate --load CKPT --data-path PREFIX

Each sequence is prefilled --chunk-tokens at a time, continuing from the recurrent state and
the attention window's cache, so memory depends on the chunk size, not on --seq-length.
Writes <output-dir>/evaluation.json and evaluation.png together (an existing directory of
results only with --overwrite, see evaluation/output_dir.py); rank 0 prints the table. Every
check of the input and the output runs before the model loads.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

from ..dtypes import MODEL_DTYPES
from ..errors import ConfigError
from ..options import LOCAL_ATTENTION_CHOICES, LOCAL_ATTENTION_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--load", metavar="CKPT", help="griffin-megatron checkpoint or save directory")
    source.add_argument("--hf-dir", metavar="DIR", help="HF RecurrentGemma directory")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data-path", metavar="PREFIX",
                      help="Megatron indexed dataset prefix (from `griffin-megatron preprocess`)")
    data.add_argument("--text-files", nargs="+", metavar="FILE",
                      help="raw UTF-8 text files, one document each, tokenized with the model's tokenizer")
    parser.add_argument("--seq-length", type=int, required=True,
                        help="tokens of context per evaluated sequence (may exceed the training length)")
    parser.add_argument("--chunk-tokens", type=int, default=1024,
                        help="tokens per forward through the cache (bounds memory)")
    parser.add_argument("--split", default="95,5,0",
                        help="train,valid,test weights, as given to training (indexed data)")
    parser.add_argument("--split-name", choices=("train", "valid", "test"), default="valid",
                        help="which split of --data-path to evaluate")
    parser.add_argument("--seed", type=int, default=1234, help="the training run's --seed (sample order)")
    parser.add_argument("--max-sequences", type=int, default=None,
                        help="evaluate at most this many sequences (default: the whole split)")
    parser.add_argument("--data-cache-path", default=None, help="where Megatron caches dataset indices")
    parser.add_argument("--tokenizer", metavar="PATH",
                        help="tokenizer (default: the one saved with the model / recorded by preprocess)")
    parser.add_argument("--output-dir", default="evaluation", help="where the JSON and PNG go")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier evaluation in --output-dir")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.add_argument("--dtype", choices=MODEL_DTYPES, default="fp32", help="parameter dtype")
    parser.add_argument("--tensor-parallel-size", type=int, default=None,
                        help="default: every launched process (WORLD_SIZE)")
    parser.add_argument("--pipeline-parallel-size", type=int, default=1,
                        help="only 1: evaluation carries every layer's state from chunk to chunk")
    parser.add_argument("--local-attention", choices=LOCAL_ATTENTION_CHOICES, default="auto",
                        help=LOCAL_ATTENTION_HELP)


def check_arguments(args: argparse.Namespace) -> None:
    if args.seq_length < 1:
        raise ConfigError(f"--seq-length {args.seq_length} must be a positive number of tokens.")
    if args.chunk_tokens < 1:
        raise ConfigError(
            f"--chunk-tokens {args.chunk_tokens} must be a positive number of tokens (e.g. 1024)."
        )
    if args.max_sequences is not None and args.max_sequences < 1:
        raise ConfigError(f"--max-sequences {args.max_sequences} must be at least 1.")
    if args.data_path:
        from ..training.arguments import check_split_format

        check_split_format(args.split)
    from ..evaluation.output_dir import check_output_dir

    check_output_dir(args.output_dir, args.overwrite, _model_inputs(args))


def _model_inputs(args: argparse.Namespace) -> list:
    """The directories evaluate reads, which its --output-dir must stay apart from."""
    return [("--load", args.load), ("--hf-dir", args.hf_dir)]


def _checked_data(args: argparse.Namespace):
    """The dataset's tokenizer, or the text files' contents: every data check, before the model
    loads."""
    from ..evaluation.sequences import checked_indexed_dataset, read_text_files

    if args.data_path:
        return checked_indexed_dataset(args.data_path, args.split, args.tokenizer)
    return read_text_files(args.text_files)


def _sequences(args: argparse.Namespace, data):
    from ..evaluation.sequences import indexed_dataset_sequences, text_file_sequences

    if args.data_path:
        return indexed_dataset_sequences(
            args.data_path, args.seq_length, data, split=args.split, split_name=args.split_name,
            seed=args.seed, max_sequences=args.max_sequences, cache_path=args.data_cache_path,
        )
    from ..loading import model_tokenizer_dir
    from ..generation import load_generation_tokenizer as load_tokenizer

    tokenizer = load_tokenizer(model_tokenizer_dir(args.load, args.hf_dir, args.tokenizer))
    sequences = text_file_sequences(data, tokenizer.encode, args.seq_length)
    if args.max_sequences is not None:
        import itertools

        sequences = itertools.islice(sequences, args.max_sequences)
    return sequences


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    data = _checked_data(args)
    if not args.no_plot:
        from ..evaluation.report import import_pyplot

        import_pyplot()  # fail before the evaluation, not after it
    from ..evaluation.output_dir import write_outputs
    from ..evaluation.perplexity import evaluate_sequences
    from ..evaluation.report import format_table, plot_loss_by_position, summary
    from ..loading import load_model

    tensor_parallel = args.tensor_parallel_size or int(os.environ.get("WORLD_SIZE", "1"))
    model = load_model(args.load, args.hf_dir, args.dtype, tensor_parallel,
                       args.pipeline_parallel_size, args.local_attention)

    import torch.distributed as dist

    from ..modules.flex_attention import describe_local_attention

    printing = not dist.is_initialized() or dist.get_rank() == 0
    if printing:
        print(describe_local_attention(
            model.config.local_attention_impl, model.backend, model.stage_has_attention,
            next(model.parameters()).device), flush=True)

    def progress(index: int, tokens: int) -> None:
        if printing:
            print(f"sequence {index + 1}: {tokens} tokens", flush=True)

    buckets = evaluate_sequences(model, _sequences(args, data), args.chunk_tokens, args.seq_length,
                                 on_sequence=progress)
    result = summary(
        buckets,
        model=args.load or args.hf_dir,
        data=args.data_path or args.text_files,
        seq_length=args.seq_length,
        chunk_tokens=args.chunk_tokens,
        split=args.split if args.data_path else None,
        split_name=args.split_name if args.data_path else None,
        training_seq_length=model.config.seq_length,
    )
    if printing:
        print(format_table(result))
        name = Path(args.load or args.hf_dir).name
        plot = None if args.no_plot else functools.partial(
            plot_loss_by_position, {name: result}, training_length=model.config.seq_length)
        out = write_outputs(args.output_dir, result, args.overwrite, plot,
                            _model_inputs(args))
        written = ", ".join(sorted(entry.name for entry in out.iterdir()))
        print(f"wrote {written} in {out}")
    return 0
