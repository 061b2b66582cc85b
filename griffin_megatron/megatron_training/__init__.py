"""Hawk and Griffin in Megatron-LM's own training loop (`megatron.training.pretrain()`, shipped
in megatron-core >= 0.19): a ModelConfig / ModelBuilder pair, Griffin's options for Megatron-LM's
parser, the dataset provider and forward step, and the bridges that let the loop run on CPUs.

    python -m griffin_megatron.megatron_training --preset griffin-400m --data-path ... \\
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model DIR --save CKPT ...

(or examples/pretrain_griffin.py, in the shape of Megatron-LM's pretrain_gpt.py). Nothing is
imported or patched here: `pretrain.run` does it when called.
"""
