"""`griffin-megatron train`: pretrain Hawk / Griffin with Megatron-Core.

One process:          griffin-megatron train --data-path data/corpus --train-iters 1000 ...
Several (CPU or GPU): torchrun --nproc-per-node 8 -m griffin_megatron train ...
No --data-path:       a tiny Griffin on the Python standard library's sources (a few minutes
                      on a laptop), ending with the commands to generate from it and export it.
"""

from __future__ import annotations

import argparse
import os
import shlex

from ..training.arguments import add_training_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .. import runtime
    from ..training.arguments import finalize_arguments
    from ..training.loop import pretrain

    run_config, config = finalize_arguments(args)
    if os.environ.get("RANK", "0") == "0":
        import torch

        from ..modules.flex_attention import describe_local_attention

        has_attention = "A" in config.block_pattern
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = run_config.model
        print(describe_local_attention(model.local_attention, model.backend, has_attention, device),
              flush=True)
    if run_config.default_run:
        from ..training.default_run import limit_cpu_threads

        note = limit_cpu_threads()
        if note and os.environ.get("RANK", "0") == "0":
            print(note, flush=True)
    try:
        result = pretrain(run_config, config)
        if result.is_reporter:
            _report(result, run_config.default_run)
    finally:
        runtime.destroy()
    return 0


def _report(result, default_run: bool) -> None:
    if result.first_validation_loss is not None:
        print(f"validation loss: first {result.first_validation_loss:.4f}, last "
              f"{result.last_validation_loss:.4f}")
    if result.skipped_iterations:
        print(f"skipped iterations (non-finite loss or gradients): {result.skipped_iterations}")
    if result.checkpoint is None:
        return
    save = shlex.quote(str(result.save))
    prompt = "def fibonacci(n):" if default_run else "Once upon a time"
    print(f"checkpoint: {result.checkpoint}")
    print("next:")
    print(f"  griffin-megatron generate --load {save} --prompt {shlex.quote(prompt)}")
    hf_dir = shlex.quote(str(result.save) + "-hf")
    print(f"  griffin-megatron convert mcore-to-hf --ckpt {save} --out {hf_dir}")
    if result.stopped_by_signal:
        print(f"  resume: griffin-megatron train ... --load {save} --save {save}")
