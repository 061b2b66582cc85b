"""One option table: `train`'s parser, the recipe keys and `plan` read the same rows, defaults and
help, and the same layout rules (the config's own). Each former disagreement between `train` and
`plan` is pinned here: uneven pipeline stages, the global batch default, the bf16 default."""

from __future__ import annotations

import argparse

import pytest

from griffin_megatron import options
from griffin_megatron.cli.main import build_parser, main
from griffin_megatron.config import GriffinConfigError
from griffin_megatron.planning.plan import make_plan
from griffin_megatron.recipes import RECIPE_KEYS
from griffin_megatron.training.arguments import (
    check_arguments,
    finalize_arguments,
    merge_arguments,
    typed_options,
)
from griffin_megatron.training.default_run import SETTINGS


def train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["train"]


def train_args(*argv: str) -> argparse.Namespace:
    """What `train` checks for this command line: parsed, then merged with the table's
    defaults."""
    args = build_parser().parse_args(["train", "--data-path", "corpus", "--train-iters", "2",
                                      *argv])
    merge_arguments(args)
    return args


def write_recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_parser_and_recipe_keys_are_the_table_rows():
    parser = train_parser()
    by_dest = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    assert set(RECIPE_KEYS) == {option.name for option in options.OPTIONS}
    for option in options.OPTIONS:
        action = by_dest[option.dest]
        assert action.option_strings == [option.flag]
        # The parser leaves untyped options out, so a --config file can tell them from typed
        # ones; merge_arguments gives them the row's default.
        assert action.default is argparse.SUPPRESS, option.name
        assert action.help == option.help, option.name
        assert action.choices == option.choices, option.name
    assert len({option.name for option in options.OPTIONS}) == len(options.OPTIONS)
    assert set(by_dest) - {"config"} == {option.dest for option in options.OPTIONS}


def test_help_text_is_each_rows_own():
    text = train_parser().format_help()
    for option in options.OPTIONS:
        assert option.flag in text, option.name


def test_a_row_minimum_is_enforced_on_the_command_line_and_in_recipes(tmp_path):
    with pytest.raises(ValueError, match=r"--micro-batch-size=0 must be a positive integer\."):
        check_arguments(train_args("--micro-batch-size", "0"), world=1)
    recipe = write_recipe(tmp_path, "preset: griffin-tiny\nmicro-batch-size: 0\n")
    with pytest.raises(ValueError, match="'micro-batch-size' must be at least 1"):
        make_plan(recipe, gpus=1, gpu_memory_gb=80)


# Former disagreement 1: `plan` refused uneven pipeline stages that `train` accepted.
UNEVEN = ("pipeline-model-parallel-size", 2), ("decoder-first-pipeline-num-layers", 1)


def test_plan_and_train_accept_the_same_uneven_pipeline_stages(tmp_path):
    recipe = write_recipe(tmp_path, "preset: griffin-tiny\n" + "".join(f"{k}: {v}\n" for k, v in UNEVEN))
    plan = make_plan(recipe, gpus=2, gpu_memory_gb=80)
    assert [stage.layers for stage in plan.stages] == [[0], [1, 2]]  # 3 layers: 1 + 2
    argv = [item for key, value in UNEVEN for item in (f"--{key}", str(value))]
    check_arguments(train_args("--preset", "griffin-tiny", *argv), world=2)


def test_plan_and_train_refuse_stages_that_do_not_add_up_to_the_depth(tmp_path):
    recipe = write_recipe(tmp_path, "preset: griffin-tiny\npipeline-model-parallel-size: 2\n"
                                    "decoder-first-pipeline-num-layers: 5\n")
    with pytest.raises(GriffinConfigError) as planned:
        make_plan(recipe, gpus=2, gpu_memory_gb=80)
    with pytest.raises(GriffinConfigError) as trained:
        check_arguments(train_args("--preset", "griffin-tiny", "--pipeline-model-parallel-size",
                                   "2", "--decoder-first-pipeline-num-layers", "5"), world=2)
    assert str(planned.value) == str(trained.value)
    assert "rule 'layers/pp'" in str(trained.value) and "num_layers=3" in str(trained.value)


# Former disagreement 2: `plan` defaulted the global batch to one micro-batch, `train` to
# micro-batch x data-parallel size.
def test_plan_and_train_default_the_global_batch_alike(tmp_path):
    recipe = write_recipe(tmp_path, "preset: griffin-tiny\nmicro-batch-size: 2\n")
    plan = make_plan(recipe, gpus=4, gpu_memory_gb=80)
    args = train_args("--preset", "griffin-tiny", "--micro-batch-size", "2")
    check_arguments(args, world=4)
    assert plan.layout.global_batch_size == args.global_batch_size == 2 * 4


# Former disagreement 3: `plan` defaulted bf16 to False where its Layout dataclass said True.
def test_plan_and_train_default_the_precision_alike(tmp_path):
    plan = make_plan(write_recipe(tmp_path, "preset: griffin-tiny\n"), gpus=1, gpu_memory_gb=80)
    args = train_args()
    assert plan.layout.bf16 is args.bf16 is options.default("bf16") is False
    assert plan.config.bf16 is False


def test_the_default_run_layout_is_checked_before_anything_starts():
    """No --data-path: the demo run's settings are merged and its layout checked up front."""
    args = build_parser().parse_args(["train", "--pipeline-model-parallel-size", "2"])
    with pytest.raises(GriffinConfigError, match="num_layers=3 is not divisible by "
                                                 "pipeline_model_parallel_size=2"):
        finalize_arguments(args)


def test_plan_refuses_zero_gpus_in_one_sentence(capsys):
    assert main(["plan", "--recipe", "griffin-14b", "--gpus", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("griffin-megatron plan: error: the layout breaks rule 'gpus': the job has 0 "
                     "GPUs; it needs at least one.")


def test_untyped_options_get_the_rows_defaults():
    args = build_parser().parse_args(["train", "--data-path", "corpus", "--lr", "0.5"])
    assert typed_options(args) == {"data_path", "lr"}
    assert merge_arguments(args) is False
    assert args.lr == 0.5
    for option in options.OPTIONS:
        if option.dest not in ("data_path", "lr"):
            assert getattr(args, option.dest) == option.default, option.name


def test_the_default_run_settings_sit_below_the_config_file_and_the_command_line(tmp_path):
    """No --data-path: the default run's settings fill only what neither the command line nor
    the file gave, also where the command line typed the table's default."""
    recipe = write_recipe(tmp_path, "lr: 0.01\nnum-layers: 6\n")
    typed_default = options.default("micro_batch_size")
    assert typed_default != SETTINGS["micro_batch_size"]
    args = build_parser().parse_args(["train", "--config", str(recipe), "--num-layers", "2",
                                      "--micro-batch-size", str(typed_default)])
    assert merge_arguments(args) is True
    assert args.num_layers == 2  # the command line over the file and the settings
    assert args.lr == 0.01  # the file over the settings
    assert args.micro_batch_size == typed_default
    assert args.hidden_size == SETTINGS["hidden_size"]
    assert args.lr_warmup_iters == SETTINGS["train_iters"] // 10
