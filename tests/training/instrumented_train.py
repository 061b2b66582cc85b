"""`griffin-megatron` with faults injected from the test side; the package itself reads none of
these variables. Run it as the CLI would be run: `python tests/training/instrumented_train.py
train ...`, or under torchrun in place of `-m griffin_megatron`.

    INSTRUMENT_NAN_AT_ITERATION=N  iteration N computes a NaN loss (and so NaN gradients)
    INSTRUMENT_PAUSE_IN_SAVE=N     the save of iteration N stops once its shards are written
                                   (before the rename and the `latest` update), writes
                                   <save>/PAUSED_IN_SAVE naming its staging directory, and waits
                                   to be killed
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

NAN_AT_ITERATION = "INSTRUMENT_NAN_AT_ITERATION"
PAUSE_IN_SAVE = "INSTRUMENT_PAUSE_IN_SAVE"
PAUSED_MARKER = "PAUSED_IN_SAVE"


def _poison(module, args, output):
    return output * float("nan")


def inject_nan(iteration: int) -> None:
    from megatron.core.utils import unwrap_model

    from griffin_megatron.training.trainer import Trainer

    original = Trainer.train_step

    def train_step(self, iterators):
        if self.iteration + 1 != iteration:
            return original(self, iterators)
        handles = [model.register_forward_hook(_poison)
                   for model in unwrap_model(list(self.chunks)) if model.post_process]
        try:
            return original(self, iterators)
        finally:
            for handle in handles:
                handle.remove()

    Trainer.train_step = train_step


def pause_in_save(iteration: int) -> None:
    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    original = dist_checkpointing.save

    def save(sharded_state_dict, checkpoint_dir, *args, **kwargs):
        result = original(sharded_state_dict, checkpoint_dir, *args, **kwargs)
        staging = Path(checkpoint_dir)
        if staging.name.startswith(f".iter_{iteration:07d}.partial-"):
            if dist.get_rank() == 0:
                (staging.parent / PAUSED_MARKER).write_text(f"{staging}\n")
            while True:
                time.sleep(1)
        return result

    dist_checkpointing.save = save


def main() -> int:
    if os.environ.get(NAN_AT_ITERATION):
        inject_nan(int(os.environ[NAN_AT_ITERATION]))
    if os.environ.get(PAUSE_IN_SAVE):
        pause_in_save(int(os.environ[PAUSE_IN_SAVE]))
    from griffin_megatron.cli.main import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
