"""griffin_megatron.run_config: the one vocabulary padding rule, the config derived for the
tokenizer's vocabulary against one built afresh, and RunConfig holding every option once."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from griffin_megatron import options
from griffin_megatron.cli.main import build_parser
from griffin_megatron.presets import preset_architecture
from griffin_megatron.run_config import (
    SECTIONS,
    build_model_config,
    padded_vocab_size,
    with_vocab_size,
)
from griffin_megatron.training.arguments import finalize_arguments


def _smallest_common_multiple_at_least(vocab: int, divisible_by: int, tp: int) -> int:
    """The rule stated plainly: the first size from `vocab` up that both numbers divide."""
    size = vocab
    while size % divisible_by or size % tp:
        size += 1
    return size


@pytest.mark.parametrize("vocab", [1, 255, 256, 257, 320, 50257, 256000])
@pytest.mark.parametrize("divisible_by, tp", [(128, 1), (128, 2), (128, 8), (64, 3), (1, 6)])
def test_padded_vocab_size_is_the_least_common_multiple_rule(vocab, divisible_by, tp):
    assert padded_vocab_size(vocab, divisible_by, tp) == _smallest_common_multiple_at_least(
        vocab, divisible_by, tp)


def test_padding_does_not_depend_on_a_tp_size_that_divides_divisible_by():
    """So a checkpoint saved at one TP size resumes at another (Megatron-LM's divisible_by x TP
    would give 50304, 50432, 50688 here)."""
    assert {padded_vocab_size(50257, 128, tp) for tp in (1, 2, 4, 8)} == {50304}


def test_the_check_time_vocabulary_is_the_presets_padded_to_the_tp_size():
    """Before the tokenizer is read, `train` checks the layout with the preset's vocabulary
    padded to the TP size only (what `plan` sizes without --vocab-size)."""
    preset = preset_architecture("griffin-tiny")["vocab_size"]
    assert preset == 512
    sizes = {}
    for tp in (1, 2, 3):
        # Six heads and gate blocks of 16 channels, which three TP ranks can share.
        values = options.options_namespace({
            "preset": "griffin-tiny", "tensor-model-parallel-size": tp, "hidden-size": 96,
            "lru-width": 96, "num-attention-heads": 6, "rglru-num-heads": 6, "kv-channels": 24,
            "ffn-hidden-size": 192})
        sizes[tp] = build_model_config(values).vocab_size
    assert sizes == {1: 512, 2: 512, 3: 513}


LAYOUTS = [
    pytest.param({}, id="one-process"),
    pytest.param({"tensor-model-parallel-size": 2, "sequence-parallel": True, "bf16": True},
                 id="tp2-sp-bf16"),
    pytest.param({"pipeline-model-parallel-size": 2, "num-layers": 6,
                  "num-layers-per-virtual-pipeline-stage": 1}, id="pp2-vpp"),
    pytest.param({"context-parallel-size": 2, "recompute-granularity": "full",
                  "recompute-method": "uniform", "recompute-num-layers": 1}, id="cp2-recompute"),
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_tokenizers_config_is_the_checked_one_with_its_vocabulary(layout):
    """The loop derives its config from the checked one (with_vocab_size) instead of building
    a second from the options: every field equals the fresh build's."""
    values = options.options_namespace({"preset": "griffin-tiny", **layout})
    derived = with_vocab_size(build_model_config(values), 1024)
    fresh = build_model_config(values, 1024)
    for field in dataclasses.fields(fresh):
        mine, theirs = getattr(derived, field.name), getattr(fresh, field.name)
        if field.name.endswith("init_method") and mine is not None:
            draws = []
            for init in (mine, theirs):
                torch.manual_seed(0)
                draws.append(init(torch.empty(4, 4)))
            assert torch.equal(*draws), field.name
        else:
            assert mine == theirs, field.name
    assert derived.vocab_size == 1024


def test_every_option_has_one_field_in_one_section():
    fields = [f.name for section in SECTIONS.values() for f in dataclasses.fields(section)]
    assert sorted(fields) == sorted(option.dest for option in options.OPTIONS)


def test_the_run_config_holds_the_merged_options(tmp_path):
    recipe = tmp_path / "run.yaml"
    recipe.write_text("lr: 1.0e-3\nnum-layers: 4\nsave-interval: 5\n")
    args = build_parser().parse_args(
        ["train", "--config", str(recipe), "--data-path", "corpus", "--train-iters", "3",
         "--micro-batch-size", "2", "--tensorboard-dir", str(tmp_path / "tb")])
    run, config = finalize_arguments(args)
    assert run.as_options() == {option.dest: getattr(args, option.dest)
                                for option in options.OPTIONS if option.dest != "seq_length"} | {
        "seq_length": config.seq_length}
    assert run.model.seq_length == preset_architecture("griffin-tiny")["seq_length"]
    assert run.batch.global_batch_size == 2  # micro-batch x one data-parallel rank
    assert (run.batch.lr, run.model.num_layers, run.checkpoint.save_interval) == (1e-3, 4, 5)
    assert run.default_run is False and run.data_parallel_size(4) == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.batch.lr = 1.0
    moved = run.replace("checkpoint", save="elsewhere")
    assert moved.checkpoint.save == "elsewhere" and run.checkpoint.save is None
    assert moved.batch is run.batch


def test_train_builds_the_griffin_config_once_and_hands_it_on(monkeypatch, capsys):
    """`train` builds one GriffinConfig from its options (the check's), reads the local-attention
    line from it and hands that one to the loop, which only swaps in the tokenizer's
    vocabulary (setup.model_config, with_vocab_size)."""
    import types

    from griffin_megatron import run_config
    from griffin_megatron.cli.main import main
    from griffin_megatron.training import loop

    built, handed = [], []
    real = run_config.griffin_config

    def counting(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    def fake_pretrain(run, config):
        handed.append((run, config))
        return types.SimpleNamespace(is_reporter=False)

    monkeypatch.setattr(run_config, "griffin_config", counting)
    monkeypatch.setattr(loop, "pretrain", fake_pretrain)
    assert main(["train", "--data-path", "corpus", "--train-iters", "2", "--no-save"]) == 0
    assert len(built) == 1
    (run, config), = handed
    assert config is built[0] and run.checkpoint.no_save is True
    # griffin-tiny has attention layers: the line read the pattern from that config.
    kernel = "flex" if torch.cuda.is_available() else "blocked"
    assert f"local attention: {kernel}" in capsys.readouterr().out
