"""`python -m griffin_megatron.megatron_training ARGS`: Megatron-LM's pretrain() for Griffin."""

import sys

from .pretrain import run

if __name__ == "__main__":
    sys.exit(run())
