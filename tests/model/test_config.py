"""Every invalid GriffinConfig fails at construction with one sentence: what, why, how to fix."""

from __future__ import annotations

import pytest

from griffin_megatron.config import GriffinConfig, GriffinConfigError

VALID = dict(num_layers=3, hidden_size=64, num_attention_heads=4, vocab_size=512, lru_width=64)


def make(**changes) -> GriffinConfig:
    return GriffinConfig(**{**VALID, **changes})


def test_valid_defaults_are_recurrentgemma_choices():
    config = make()
    assert config.layer_types == ["R", "R", "A"]
    assert config.num_query_groups == 1 and config.ffn_hidden_size == 192
    assert config.window_size == (config.attention_window - 1, 0)
    assert make(block_pattern="R").is_hawk and not config.is_hawk


@pytest.mark.parametrize(
    "changes, fragment",
    [
        pytest.param(dict(block_pattern=""), "is empty", id="empty-pattern"),
        pytest.param(dict(block_pattern="RRX"), "only 'R' (recurrent) and 'A'", id="bad-symbol"),
        pytest.param(dict(block_pattern="RRAR"), "only num_layers=3", id="pattern-too-long"),
        pytest.param(dict(lru_width=66), "not divisible by rglru_num_heads=4", id="lru-heads"),
        pytest.param(dict(num_query_groups=3), "not divisible by num_query_groups=3", id="gqa"),
        pytest.param(dict(hidden_size=66), "set kv_channels", id="head-dim"),
        pytest.param(dict(kv_channels=18, rotary_percent=0.5), "must be an even integer", id="rope"),
        pytest.param(dict(conv_width=0), "conv_width=0 must be a positive integer", id="conv"),
        pytest.param(dict(attention_window=0), "attention_window=0", id="window"),
        pytest.param(dict(rglru_c=0.0), "rglru_c=0.0 must be positive", id="rglru-c"),
        pytest.param(dict(logits_soft_cap=-1.0), "logits_soft_cap=-1.0", id="soft-cap"),
        pytest.param(dict(rotary_percent=1.5), "rotary_percent=1.5", id="rotary-percent"),
        pytest.param(dict(rglru_backend="cuda"), "rglru_backend='cuda'", id="rglru-backend"),
        pytest.param(dict(normalization="LayerNorm"), "Griffin uses RMSNorm", id="layernorm"),
        pytest.param(dict(context_parallel_size=3), "not divisible by context_parallel_size=3", id="cp"),
        pytest.param(
            dict(tensor_model_parallel_size=8, num_attention_heads=8, rglru_num_heads=4),
            "rglru_num_heads=4 is not divisible by tensor_model_parallel_size=8",
            id="tp-rglru-heads",
        ),
        pytest.param(
            dict(tensor_model_parallel_size=2, vocab_size=511),
            "vocab_size=511 is not divisible by tensor_model_parallel_size=2",
            id="tp-vocab",
        ),
        pytest.param(
            dict(tensor_model_parallel_size=2, ffn_hidden_size=191, rglru_num_heads=2),
            "ffn_hidden_size=191 is not divisible",
            id="tp-ffn",
        ),
        pytest.param(
            dict(tensor_model_parallel_size=4, num_query_groups=2, num_attention_heads=8,
                 rglru_num_heads=4),
            None,
            id="tp-4-groups-2-is-valid",
        ),
    ],
)
def test_invalid_combinations_fail_with_one_sentence(changes, fragment):
    if fragment is None:
        make(**changes)
        return
    with pytest.raises(GriffinConfigError) as raised:
        make(**changes)
    message = str(raised.value)
    assert fragment in message
    assert message.endswith("."), message
    assert "\n" not in message
