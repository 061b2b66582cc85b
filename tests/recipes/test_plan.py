"""`griffin-megatron plan`: the layout rules (one case per rule, message checked), per-rank
parameters against an analytic count, the pipeline schedule replay, and the printed table."""

import pytest
import torch

from griffin_megatron.cli.main import main
from griffin_megatron.config import GriffinConfigError
from griffin_megatron.planning import memory
from griffin_megatron.planning.layout import Layout
from griffin_megatron.planning.params import count_model_parameters
from griffin_megatron.options import options_namespace
from griffin_megatron.planning.plan import make_plan
from griffin_megatron.presets import get_preset

TINY = "preset: griffin-tiny\nbf16: true\n"
SMALL = "preset: griffin-100m\nbf16: true\n"  # 12 layers: room for pipeline stages


def run_plan(tmp_path, capsys, recipe_text, *args):
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe_text)
    if "--gpu-memory-gb" not in args:
        args = (*args, "--gpu-memory-gb", "80")
    status = main(["plan", "--recipe", str(path), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    "recipe, args, rule, detail",
    [
        (TINY + "tensor-model-parallel-size: 4\n", ["--gpus", "6"], "gpus",
         "6 GPUs is not a multiple of tensor x pipeline x context parallel size = 4 x 1 x 1 = 4"),
        (TINY + "tensor-model-parallel-size: 8\n", ["--gpus", "8"], "rglru-heads/tp",
         "rglru_num_heads=4 is not divisible by tensor_model_parallel_size=8"),
        (TINY + "tensor-model-parallel-size: 8\nlru-width: 68\n", ["--gpus", "8"], "rglru-heads/tp",
         "(also broken: 'heads/tp'"),
        (TINY + "tensor-model-parallel-size: 2\n", ["--gpus", "2", "--vocab-size", "511"],
         "vocab/tp", "vocab_size=511 is not divisible by tensor_model_parallel_size=2"),
        (TINY + "sequence-parallel: true\n", ["--gpus", "1"], "sequence-parallel",
         "needs tensor_model_parallel_size > 1"),
        (TINY + "tensor-model-parallel-size: 4\nsequence-parallel: true\nseq-length: 66\n",
         ["--gpus", "4"], "seq/tp", "seq_length=66 is not divisible by tensor_model_parallel_size=4"),
        (TINY + "pipeline-model-parallel-size: 2\n", ["--gpus", "2"], "layers/pp",
         "num_layers=3 is not divisible by pipeline_model_parallel_size=2"),
        (SMALL + "num-layers-per-virtual-pipeline-stage: 2\n", ["--gpus", "1"], "vpp",
         "needs pipeline_model_parallel_size > 1"),
        (SMALL + "pipeline-model-parallel-size: 2\nnum-layers-per-virtual-pipeline-stage: 4\n",
         ["--gpus", "2"], "vpp",
         "layers per pipeline stage=6 is not divisible by num_layers_per_virtual_pipeline_stage=4"),
        (SMALL + "pipeline-model-parallel-size: 2\nnum-layers-per-virtual-pipeline-stage: 3\n"
         "global-batch-size: 3\n", ["--gpus", "2"], "vpp-microbatches",
         "3 micro-batches per step is not a multiple of pipeline_model_parallel_size=2"),
        (TINY + "micro-batch-size: 4\nglobal-batch-size: 10\n", ["--gpus", "2"], "global-batch",
         "global_batch_size=10 is not divisible by micro_batch_size x data-parallel size=8"),
        (TINY + "recompute-granularity: full\n", ["--gpus", "1"], "recompute",
         "needs recompute_method (uniform or block) and recompute_num_layers"),
        (TINY + "recompute-granularity: full\nrecompute-method: block\nrecompute-num-layers: 4\n",
         ["--gpus", "1"], "recompute", "recompute_num_layers=4 must be between 1 and the 3 layers"),
        (SMALL + "micro-batch-size: 64\nglobal-batch-size: 64\n",
         ["--gpus", "1", "--gpu-memory-gb", "16"], "memory", "needs"),
    ],
    ids=lambda value: value if isinstance(value, str) and "/" not in value and len(value) < 20 else None,
)
def test_impossible_layouts_name_the_rule(tmp_path, capsys, recipe, args, rule, detail):
    status, _, err = run_plan(tmp_path, capsys, recipe, *args)
    assert status == 2
    assert f"rule '{rule}'" in err
    assert detail in err


@pytest.mark.parametrize(
    "overrides, tp, rule",
    [
        # Not reachable from recipe keys (the head layout is the preset's): checked directly.
        (dict(num_query_groups=2, num_attention_heads=6, kv_channels=12, lru_width=72,
              rglru_num_heads=6, ffn_hidden_size=198, vocab_size=513), 3, "kv-heads/tp"),
        (dict(kv_channels=5, rotary_percent=0.4), 4, "qkv/tp"),  # (4 + 2) x 5 = 30 columns
        (dict(ffn_hidden_size=198), 4, "ffn/tp"),
    ],
)
def test_head_and_width_rules(overrides, tp, rule):
    with pytest.raises(GriffinConfigError) as refused:
        get_preset("griffin-tiny", tensor_model_parallel_size=tp, **overrides)
    assert [v.rule for v in refused.value.violations] == [rule]
    assert f"rule '{rule}'" in str(refused.value)


def per_rank_analytic(c, tp) -> int:
    """Parameters of one TP rank, all layers: replicated are the norms and the biases of the
    row-parallel linears (linear_out, linear_proj, linear_fc2); everything else is split."""
    D = c.hidden_size
    replicated = 0
    for i in range(c.num_layers):
        replicated += 2 * D + D + D  # two norms, temporal output bias, fc2 bias
    replicated += D  # final norm
    from tests.recipes.test_recipes import analytic_parameters

    total = analytic_parameters(c)
    return replicated + (total - replicated) // tp


@pytest.mark.parametrize("preset, tp", [("griffin-14b", 4), ("hawk-7b", 2), ("recurrentgemma-9b", 8)])
def test_per_rank_parameters_match_analytic_split(preset, tp):
    config = get_preset(preset)
    counts = count_model_parameters(config)
    on_rank = counts.stage_per_rank(range(config.num_layers), tp, True, True, 1)
    assert on_rank == per_rank_analytic(config, tp)


def test_pipeline_stages_hold_all_layers_and_a_copy_of_the_output_weight():
    config = get_preset("griffin-100m", pipeline_model_parallel_size=4,
                        num_layers_per_virtual_pipeline_stage=1, pipeline_dtype=torch.bfloat16,
                        bf16=True)
    counts = count_model_parameters(config)
    layout = Layout.of(config, options_namespace({"global-batch-size": 8}), gpus=4)
    assert layout.virtual_stages == 3
    stages = memory.plan_memory(config, layout, counts)
    assert sorted(i for s in stages for i in s.layers) == list(range(12))
    assert stages[0].layers == [0, 4, 8]  # interleaved: stage 0 holds chunks 0, 4 and 8
    assert sum(s.parameters for s in stages) == counts.total + counts.embedding


@pytest.mark.parametrize("pipeline, microbatches", [(1, 4), (4, 8), (4, 2), (8, 32)])
def test_one_f_one_b_keeps_pp_minus_rank_microbatches(pipeline, microbatches):
    for rank in range(pipeline):
        _, most = memory.peak_in_flight([1.0], pipeline, rank, microbatches)
        assert most == min(pipeline - rank, microbatches)


@pytest.mark.parametrize("pipeline, chunks, microbatches", [(2, 2, 4), (4, 2, 8), (4, 3, 16)])
def test_interleaved_first_stage_matches_megatron_memory_factor(pipeline, chunks, microbatches):
    # Megatron-LM's theoretical memory: the first stage of the interleaved schedule holds
    # L (1 + (p - 1) / (p v)) layers' activations, i.e. p v + p - 1 chunks of L / (p v) layers.
    peak, most = memory.peak_in_flight([1.0] * chunks, pipeline, 0, microbatches)
    assert most == pipeline * chunks + pipeline - 1
    assert peak == pytest.approx(most)


def test_plan_prints_memory_and_flops(capsys):
    assert main(["plan", "--recipe", "recurrentgemma-9b"]) == 0
    out = capsys.readouterr().out
    for text in ("TP 4 x PP 2 x DP 4 = 32 GPUs", "stage 0", "stage 1", "optimizer state (distributed)",
                 "if replicated", "with full recompute", "tokens per step", "FLOPs per step", "fits"):
        assert text in out


def test_recompute_lowers_activation_memory():
    plan = make_plan("griffin-14b", overrides={"recompute-granularity": "full",
                                                "recompute-method": "uniform",
                                                "recompute-num-layers": 1})
    with_recompute = plan.stages[0].activations
    without = plan.alternative_stages[0].activations
    assert plan.alternative == "without recompute"
    assert with_recompute < without / 4
