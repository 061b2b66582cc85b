"""Both training loops get the same GriffinConfig from the same options: `griffin-megatron train`
(its parser, merged and checked as `train` does, then the tokenizer's vocabulary swapped in as
its loop does) and Megatron-LM's `pretrain()` entry (Megatron-LM's parser with Griffin's rows,
checked and validated as the entry does) both build it through griffin_megatron.run_config."""

from __future__ import annotations

import dataclasses
import sys

import torch

from .harness import requires_megatron_training

# The same run in both loops' option names. Megatron-LM's loss is a per-sequence mean unless
# --calculate-per-token-loss; `train` always weighs tokens (it has no such option).
SHARED = ["--preset", "griffin-tiny", "--num-layers", "6", "--hidden-size", "96",
          "--ffn-hidden-size", "192", "--num-attention-heads", "4", "--kv-channels", "24",
          "--lru-width", "96", "--rglru-num-heads", "4", "--attention-window", "16",
          "--block-pattern", "RRA", "--seq-length", "64", "--tensor-model-parallel-size", "2",
          "--pipeline-model-parallel-size", "2", "--sequence-parallel",
          "--make-vocab-size-divisible-by", "64", "--local-attention", "blocked",
          "--micro-batch-size", "1"]
MEGATRON_ONLY = ["--calculate-per-token-loss", "--mock-data", "--lr", "1e-3",
                 "--train-iters", "2", "--distributed-backend", "gloo"]
TOKENIZER_VOCABULARY = 1000
WORLD = 4
# Megatron-LM's validate_args writes the TP size into these generalized-TP fields, which
# GriffinConfig leaves at None; both mean one weight shard per TP rank (the derived
# gtp_weight_remat_size, compared below, is 1 either way).
SAME_MEANING = {"tensor_parallel_num_weight_shards", "expert_tensor_parallel_num_weight_shards"}


def _train_config():
    from griffin_megatron.cli.main import build_parser
    from griffin_megatron.run_config import padded_vocab_size, with_vocab_size
    from griffin_megatron.training.arguments import check_arguments, merge_arguments

    args = build_parser().parse_args(["train", *SHARED, "--data-path", "corpus",
                                      "--train-iters", "2"])
    merge_arguments(args)
    checked = check_arguments(args, world=WORLD)
    return with_vocab_size(checked, padded_vocab_size(TOKENIZER_VOCABULARY, 64, 2))


def _pretrain_config(monkeypatch):
    from megatron.training.arguments import parse_args, validate_args

    from griffin_megatron.compat import megatron_training_cpu as cpu_bridges
    from griffin_megatron.megatron_training.arguments import (
        add_griffin_arguments,
        apply_preset,
        check_griffin_arguments,
        model_config_from_args,
    )
    from griffin_megatron.megatron_training.settle import settle_arguments

    monkeypatch.setenv("WORLD_SIZE", str(WORLD))
    monkeypatch.setattr(sys, "argv", ["pretrain", *SHARED, *MEGATRON_ONLY])
    with cpu_bridges.installed():
        args = parse_args(extra_args_provider=add_griffin_arguments)
        apply_preset(args)
        check_griffin_arguments(args)
        settle_arguments(args, sys.argv[1:])
        validate_args(args, {})
        return model_config_from_args(args, TOKENIZER_VOCABULARY).transformer


@requires_megatron_training
def test_both_loops_build_the_same_griffin_config(monkeypatch):
    ours, theirs = _train_config(), _pretrain_config(monkeypatch)
    assert ours.vocab_size == theirs.vocab_size == 1024
    assert (ours.block_pattern, ours.num_layers, ours.hidden_size) == ("RRA", 6, 96)
    differences = []
    for field in dataclasses.fields(ours):
        mine, megatron = getattr(ours, field.name), getattr(theirs, field.name)
        if field.name in SAME_MEANING:
            continue
        same = mine == megatron
        if not same and callable(mine) and callable(megatron):
            # Initialisers are fresh partials in each config: compare what they draw.
            drawn = []
            for init in (mine, megatron):
                torch.manual_seed(0)
                drawn.append(init(torch.empty(8, 8)))
            same = torch.equal(*drawn)
        if not same:
            differences.append(f"{field.name}: train {mine!r}, pretrain() {megatron!r}")
    assert not differences, differences
