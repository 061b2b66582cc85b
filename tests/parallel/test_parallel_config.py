"""Parallel sizes that cannot shard the model are refused up front, in one sentence that names
the numbers; the sizes the parallel tests use are accepted."""

from __future__ import annotations

import pytest
import torch

from griffin_megatron.config import GriffinConfigError
from griffin_megatron.presets import get_preset


def tiny(**overrides):
    return get_preset("griffin-tiny", use_cpu_initialization=True, **overrides)


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        pytest.param(
            dict(tensor_model_parallel_size=3, num_attention_heads=6, kv_channels=16,
                 rglru_num_heads=4, vocab_size=513, ffn_hidden_size=192),
            ["rglru_num_heads=4", "tensor_model_parallel_size=3", "whole RG-LRU gate blocks"],
            id="rglru-heads",
        ),
        pytest.param(
            # lru_width=66 is not a multiple of 2; 66 = 3 heads x 22 channels, so the head
            # count is what cannot be split.
            dict(tensor_model_parallel_size=2, lru_width=66, rglru_num_heads=3),
            ["rglru_num_heads=3", "tensor_model_parallel_size=2"],
            id="lru-width",
        ),
        pytest.param(
            dict(tensor_model_parallel_size=2, num_attention_heads=3, kv_channels=16),
            ["num_attention_heads=3", "tensor_model_parallel_size=2", "query heads"],
            id="attention-heads",
        ),
        pytest.param(
            dict(tensor_model_parallel_size=4, ffn_hidden_size=190),
            ["ffn_hidden_size=190", "tensor_model_parallel_size=4", "MLP"],
            id="ffn",
        ),
        pytest.param(
            dict(tensor_model_parallel_size=2, vocab_size=511),
            ["vocab_size=511", "tensor_model_parallel_size=2", "pad the vocabulary"],
            id="vocab",
        ),
        pytest.param(
            dict(tensor_model_parallel_size=2, num_query_groups=3, num_attention_heads=12,
                 kv_channels=16),
            ["num_query_groups=3", "tensor_model_parallel_size=2"],
            id="kv-heads",
        ),
        pytest.param(
            dict(tensor_model_parallel_size=2, sequence_parallel=True, seq_length=63),
            ["seq_length=63", "tensor_model_parallel_size=2", "sequence parallelism"],
            id="sequence-parallel-length",
        ),
        pytest.param(
            dict(num_layers=4, pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2,
                 pipeline_dtype=torch.float32),
            ["virtual_pipeline_model_parallel_size=2", "pipeline_model_parallel_size=2",
             "batch_p2p_comm=False"],
            id="interleaved-two-stages",
        ),
    ],
)
def test_unshardable_sizes_are_refused_with_the_numbers(overrides, fragments):
    with pytest.raises(GriffinConfigError) as error:
        tiny(**overrides)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message
    assert message.endswith(".") and "\n" not in message


def test_query_groups_that_divide_ranks_are_replicated_not_refused():
    """One KV head with TP=4 (the head is replicated on every rank; Megatron all-gathers the
    fused QKV projection for it) and four KV heads with TP=2 are both valid."""
    assert tiny(tensor_model_parallel_size=4, num_query_groups=1).num_query_groups == 1
    assert tiny(tensor_model_parallel_size=2, num_query_groups=4).num_query_groups == 4


def test_layouts_of_the_parallel_suite_are_valid():
    tiny(tensor_model_parallel_size=2, sequence_parallel=True, seq_length=32)
    tiny(num_layers=8, pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2,
         pipeline_dtype=torch.float32, overlap_p2p_comm=True, batch_p2p_comm=False)
    tiny(num_layers=8, pipeline_model_parallel_size=2, num_layers_in_first_pipeline_stage=3,
         num_layers_in_last_pipeline_stage=5, pipeline_dtype=torch.float32)
