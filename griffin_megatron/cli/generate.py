"""`griffin-megatron generate`: continue a text prompt, streaming the new text to the terminal.

    griffin-megatron generate --load CKPT --prompt "The capital of France is"
    griffin-megatron generate --hf-dir DIR --prompt "..." --temperature 0.8 --top-p 0.95
    torchrun --nproc-per-node 2 -m griffin_megatron generate --load CKPT --prompt "..."

The tokenizer is read from beside the checkpoint (or --tokenizer DIR). With torchrun every rank
runs the same loop with tensor parallelism over all ranks; rank 0 prints.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..dtypes import MODEL_DTYPES
from ..errors import ConfigError
from ..options import LOCAL_ATTENTION_CHOICES, LOCAL_ATTENTION_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--load", metavar="CKPT", help="griffin-megatron checkpoint or save directory")
    source.add_argument("--hf-dir", metavar="DIR", help="HF RecurrentGemma directory")
    parser.add_argument("--prompt", action="append", required=True,
                        help="text to continue (repeat for a batch)")
    parser.add_argument("--tokenizer", metavar="DIR",
                        help="tokenizer directory (default: the one saved with the model)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    parser.add_argument("--top-k", type=int, default=0, help="0 keeps all tokens")
    parser.add_argument("--top-p", type=float, default=1.0, help="1 keeps all tokens")
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling")
    parser.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-sequence")
    parser.add_argument("--dtype", choices=MODEL_DTYPES, default="fp32", help="parameter dtype")
    parser.add_argument("--tensor-parallel-size", type=int, default=None,
                        help="default: every launched process (WORLD_SIZE)")
    parser.add_argument("--local-attention", choices=LOCAL_ATTENTION_CHOICES, default="auto",
                        help=LOCAL_ATTENTION_HELP + "; decoding steps always attend to the "
                        "cached window with SDPA")


def run(args: argparse.Namespace) -> int:
    from ..generation import generate_text, load_generation_tokenizer
    from ..generation.sampling import SamplingParams

    for i, prompt in enumerate(args.prompt):
        if not prompt.strip():
            raise ConfigError(
                f"prompt {i + 1} is empty; give some text to continue, e.g. --prompt \"Once upon a time\"."
            )
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens {args.max_new_tokens} must be at least 1.")
    # Checked before the model loads (SamplingParams raises the sentence).
    SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    tensor_parallel = args.tensor_parallel_size or world
    if tensor_parallel > world or world % tensor_parallel:
        raise ConfigError(
            f"--tensor-parallel-size {tensor_parallel} needs a multiple of {tensor_parallel} "
            f"processes but {world} were launched; run it as `torchrun --nproc-per-node "
            f"{tensor_parallel} -m griffin_megatron generate ...`."
        )
    from ..loading import load_model, model_tokenizer_dir

    tokenizer = load_generation_tokenizer(
        model_tokenizer_dir(args.load, args.hf_dir, args.tokenizer))

    model = load_model(args.load, args.hf_dir, args.dtype, tensor_parallel,
                       local_attention=args.local_attention)

    import torch.distributed as dist

    from ..modules.flex_attention import describe_local_attention

    printing = not dist.is_initialized() or dist.get_rank() == 0
    single = len(args.prompt) == 1
    if printing:
        # On stderr: stdout is the generated text.
        print(describe_local_attention(
            model.config.local_attention_impl, model.backend, model.stage_has_attention,
            next(model.parameters()).device), file=sys.stderr, flush=True)

    def stream(row: int, piece: str) -> None:
        if printing and single:
            sys.stdout.write(piece)
            sys.stdout.flush()

    if printing and single:
        sys.stdout.write(args.prompt[0])
        sys.stdout.flush()
    texts = generate_text(
        model,
        tokenizer,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        eos=None if args.ignore_eos else tokenizer.eos_token_id,
        seed=args.seed,
        stream=stream,
    )
    if printing:
        if single:
            sys.stdout.write("\n")
        else:
            for prompt, text in zip(args.prompt, texts):
                print(f"{prompt}{text}\n")
    return 0
