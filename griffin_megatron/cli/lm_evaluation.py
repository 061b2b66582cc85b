"""`griffin-megatron lm-eval`: lm-evaluation-harness tasks on a checkpoint, without an HF export.

    griffin-megatron lm-eval --load CKPT --tasks hellaswag,piqa,arc_easy --batch-size 8
    griffin-megatron lm-eval --load CKPT --tasks my_task --include-path my_tasks/

Uses the model type `griffin-megatron` (griffin_megatron/evaluation/lm_eval_model.py). Needs the
`eval` extra. Results go to stdout as lm-eval's table and to --output-path as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..dtypes import MODEL_DTYPES
from ..errors import ConfigError, DataError, InputFileError, MissingDependencyError
from ..options import LOCAL_ATTENTION_CHOICES, LOCAL_ATTENTION_HELP
from ..output_paths import check_creatable_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--load", metavar="CKPT", help="griffin-megatron checkpoint or save directory")
    source.add_argument("--hf-dir", metavar="DIR", help="HF RecurrentGemma directory")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    parser.add_argument("--include-path", metavar="DIR", help="directory of extra task YAML files")
    parser.add_argument("--num-fewshot", type=int, default=None)
    parser.add_argument("--limit", type=float, default=None, help="documents per task (or a fraction)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--chunk-tokens", type=int, default=1024, help="prefill chunk through the cache")
    parser.add_argument("--tokenizer", metavar="DIR", help="transformers tokenizer directory")
    parser.add_argument("--dtype", choices=MODEL_DTYPES, default="fp32")
    parser.add_argument("--tensor-parallel-size", type=int, default=None,
                        help="default: every launched process (WORLD_SIZE)")
    parser.add_argument("--output-path", default=None, help="write lm-eval's results here as JSON")
    parser.add_argument("--local-attention", choices=LOCAL_ATTENTION_CHOICES, default="auto",
                        help=LOCAL_ATTENTION_HELP)
    parser.add_argument("--seed", type=int, default=0)


def import_lm_eval():
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise MissingDependencyError(
            "lm-eval is not installed; install it with pip install 'griffin-megatron[eval]'."
        ) from None
    return lm_eval, TaskManager


def task_names(args: argparse.Namespace, task_manager) -> list:
    names = [name.strip() for name in args.tasks.split(",") if name.strip()]
    known = set(task_manager.all_tasks)
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        raise ConfigError(
            f"lm-eval knows no task named {unknown[0] if unknown else repr(args.tasks)}; list the "
            "available ones with `lm_eval ls tasks`, or add your YAML with --include-path."
        )
    return names


def check_task_data(tasks: list, task_manager) -> None:
    """Build each task once before the model loads: building a task opens its data set through
    HF `datasets`, which downloads what is not cached, and without the network that is a
    ConnectionError deep inside lm-eval (after minutes of retries unless HF_DATASETS_OFFLINE=1).
    simple_evaluate builds the tasks again, from the cache."""
    import datasets
    from lm_eval.tasks import get_task_dict

    for name in tasks:
        try:
            get_task_dict([name], task_manager)
        except ConnectionError as error:  # datasets: "Couldn't reach 'X' on the Hub (...)"
            cache = datasets.config.HF_DATASETS_CACHE
            raise DataError(
                f"lm-eval task {name} needs data that is not cached here and cannot be "
                f"downloaded ({error}); the cache is looked for in {cache} "
                "(HF_DATASETS_CACHE, by default ~/.cache/huggingface/datasets): fill it on a "
                "machine with network and run with HF_DATASETS_OFFLINE=1, or pass a task YAML "
                "over local files with --include-path (examples: tests/data/lm_eval_tasks)."
            ) from None


def run(args: argparse.Namespace) -> int:
    if args.chunk_tokens < 1:
        raise ConfigError(f"--chunk-tokens {args.chunk_tokens} must be a positive number of tokens.")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be at least 1.")
    if args.include_path and not Path(args.include_path).is_dir():
        raise InputFileError(f"--include-path {args.include_path} is not a directory of task YAML files.")
    if args.output_path:
        check_creatable_file(args.output_path, "--output-path")
    lm_eval, TaskManager = import_lm_eval()
    source = Path(args.load or args.hf_dir)
    if not source.exists():  # before lm-eval indexes its thousands of task files
        from ..errors import CheckpointError

        raise CheckpointError(
            f"checkpoint {source} does not exist; pass the directory that `griffin-megatron "
            "train --save` or `convert` wrote."
        )
    task_manager = TaskManager(include_path=args.include_path)
    tasks = task_names(args, task_manager)
    check_task_data(tasks, task_manager)

    from ..evaluation.lm_eval_model import GriffinMegatronLM
    from ..loading import load_model

    tensor_parallel = args.tensor_parallel_size or int(os.environ.get("WORLD_SIZE", "1"))
    model = load_model(args.load, args.hf_dir, args.dtype, tensor_parallel,
                       local_attention=args.local_attention)
    lm = GriffinMegatronLM(load=args.load, hf_dir=args.hf_dir, tokenizer=args.tokenizer,
                           batch_size=args.batch_size, chunk_tokens=args.chunk_tokens, model=model)
    results = lm_eval.simple_evaluate(
        model=lm, tasks=tasks, num_fewshot=args.num_fewshot, limit=args.limit,
        task_manager=task_manager, random_seed=args.seed, numpy_random_seed=args.seed,
        torch_random_seed=args.seed, fewshot_random_seed=args.seed, log_samples=False,
    )

    import torch.distributed as dist

    if results is not None and (not dist.is_initialized() or dist.get_rank() == 0):
        from lm_eval.utils import make_table

        print(make_table(results))
        if args.output_path:
            out = Path(args.output_path)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"results": results["results"]}, indent=2, default=str) + "\n")
            print(f"wrote {out}")
    return 0
