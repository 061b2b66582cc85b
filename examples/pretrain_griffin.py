"""Pretrain Hawk or Griffin with Megatron-LM's own training loop, in the shape of Megatron-LM's
pretrain_gpt.py (megatron-core >= 0.19 on Python >= 3.12):

    torchrun --nproc-per-node 8 examples/pretrain_griffin.py \\
        --preset griffin-400m --tensor-model-parallel-size 2 --sequence-parallel \\
        --data-path DATA_PREFIX --tokenizer-type HuggingFaceTokenizer --tokenizer-model TOK_DIR \\
        --micro-batch-size 4 --global-batch-size 256 --train-iters 10000 --lr 3e-4 \\
        --lr-decay-style cosine --lr-warmup-iters 500 --bf16 \\
        --save CKPT --load CKPT --save-interval 1000 --ckpt-format torch_dist

Every Megatron-LM option keeps its meaning; Griffin adds --preset, --block-pattern,
--lru-width, --rglru-num-heads, --attention-window and --backend (see
griffin_megatron/megatron_training/arguments.py and docs/training.md).
"""

import sys

from griffin_megatron.megatron_training.pretrain import run

if __name__ == "__main__":
    sys.exit(run())
