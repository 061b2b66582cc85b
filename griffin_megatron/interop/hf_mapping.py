"""Pure mappings between HF `RecurrentGemmaForCausalLM` and GriffinModel (full, unsharded tensors).

State-dict names (layer L), HF -> ours (local backend):
    model.embed_tokens.weight                    -> embedding.word_embeddings.weight
    model.layers.L.temporal_pre_norm.weight      -> decoder.layers.L.input_layernorm.weight
    model.layers.L.channel_pre_norm.weight       -> decoder.layers.L.pre_mlp_layernorm.weight
    temporal_block.linear_x / linear_y           -> self_attention.linear_in = [x; y]
    temporal_block.conv_1d.weight [C, 1, K]      -> self_attention.conv.weight [C, K]
    temporal_block.rg_lru.*                      -> self_attention.rg_lru.* (same names)
    temporal_block.linear_out                    -> self_attention.linear_out
    temporal_block.{q,k,v}_proj.weight           -> self_attention.linear_qkv.weight (Megatron's
                                                    per-group [q heads; k; v] interleave)
    temporal_block.o_proj                        -> self_attention.linear_proj
    mlp_block.gate_proj / up_proj                -> mlp.linear_fc1 = [gate; up]
    mlp_block.down_proj                          -> mlp.linear_fc2
    model.final_norm.weight                      -> decoder.final_layernorm.weight
HF's lm_head is tied to the embedding and is not stored.

That list is one table in code (`EMBEDDING_ROW`, `NORM_ROWS`, `TEMPORAL_ROWS`, `MLP_ROWS`,
`FINAL_NORM_ROW`): each row names our tensor, the HF tensors it is made of, and a named
`Transform` for the fused ones (`STACKED_HALVES`, `QKV_GROUPS`, `CONV_WEIGHT`). `hf_to_megatron`
and `megatron_to_hf` are both derived from `mapping_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Sequence, Tuple

import torch
from torch import Tensor

from ..config import ATTENTION, RECURRENT, GriffinConfig, GriffinConfigError

HF_BLOCK_TYPES = {"recurrent": RECURRENT, "attention": ATTENTION}


def _rope_settings(hf_config) -> tuple:
    params = getattr(hf_config, "rope_parameters", None) or {}
    theta = params.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    partial = params.get("partial_rotary_factor", getattr(hf_config, "partial_rotary_factor", 0.5))
    return float(theta), float(partial)


def architecture_from_hf_config(hf_config) -> dict:
    """GriffinConfig architecture fields of an HF RecurrentGemmaConfig."""
    pattern = "".join(HF_BLOCK_TYPES[t] for t in hf_config.block_types)
    theta, partial = _rope_settings(hf_config)
    heads = hf_config.num_attention_heads
    return dict(
        block_pattern=pattern,
        num_layers=hf_config.num_hidden_layers,
        hidden_size=hf_config.hidden_size,
        ffn_hidden_size=hf_config.intermediate_size // 2,
        num_attention_heads=heads,
        num_query_groups=hf_config.num_key_value_heads,
        kv_channels=hf_config.hidden_size // heads,
        lru_width=hf_config.lru_width,
        rglru_num_heads=heads,
        conv_width=hf_config.conv1d_width,
        attention_window=hf_config.attention_window_size,
        logits_soft_cap=hf_config.logits_soft_cap,
        layernorm_epsilon=hf_config.rms_norm_eps,
        vocab_size=hf_config.vocab_size,
        rotary_percent=partial,
        rotary_base=theta,
    )


def check_exportable(config: GriffinConfig) -> None:
    """HF's RecurrentGemma hard-codes some choices that GriffinConfig leaves free."""
    problems = []
    if config.rglru_num_heads != config.num_attention_heads:
        problems.append(
            f"rglru_num_heads={config.rglru_num_heads} differs from num_attention_heads="
            f"{config.num_attention_heads} (HF uses the attention head count for the RG-LRU blocks)"
        )
    if config.kv_channels * config.num_attention_heads != config.hidden_size:
        problems.append(
            f"head dimension {config.kv_channels} x {config.num_attention_heads} heads is not "
            f"hidden_size={config.hidden_size} (HF derives the head dimension from the width)"
        )
    if config.rglru_c != 8.0:
        problems.append(f"rglru_c={config.rglru_c} (HF hard-codes 8)")
    if not config.scale_embeddings:
        problems.append("scale_embeddings=False (HF always scales by sqrt(hidden_size))")
    if config.logits_soft_cap is None:
        problems.append("logits_soft_cap=None (HF always soft-caps)")
    if problems:
        raise GriffinConfigError(
            "This model cannot be written as an HF RecurrentGemma checkpoint: "
            + "; ".join(problems)
            + "."
        )


def hf_config_from_architecture(config: GriffinConfig, **extra):
    from transformers import RecurrentGemmaConfig

    check_exportable(config)
    block_types = ["recurrent" if t == RECURRENT else "attention" for t in config.block_pattern]
    kwargs = dict(
        num_hidden_layers=config.num_layers,
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=2 * config.ffn_hidden_size,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_query_groups,
        lru_width=config.lru_width,
        attention_window_size=config.attention_window,
        conv1d_width=config.conv_width,
        logits_soft_cap=float(config.logits_soft_cap),
        rms_norm_eps=config.layernorm_epsilon,
        block_types=block_types,
        tie_word_embeddings=True,
        **extra,
    )
    probe = RecurrentGemmaConfig()
    if hasattr(probe, "rope_parameters"):
        kwargs["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": float(config.rotary_base),
            "partial_rotary_factor": float(config.rotary_percent),
        }
    else:
        kwargs["rope_theta"] = float(config.rotary_base)
        kwargs["partial_rotary_factor"] = float(config.rotary_percent)
    return RecurrentGemmaConfig(**kwargs)


# One table maps every tensor; both directions are derived from it. A row is
# (our name, HF names, transform) under a per-layer prefix; the transform says how the HF tensors
# fuse into ours and split back. Layer rows use the prefixes "decoder.layers.{L}." (ours) and
# "model.layers.{L}." (HF); the per-layer-type rows add "self_attention." / "temporal_block.".


@dataclass(frozen=True)
class Transform:
    """How one of our tensors is made of HF tensors (full, unsharded) and split back."""

    name: str
    to_ours: Callable[[Sequence[Tensor], GriffinConfig], Tensor]
    to_hf: Callable[[Tensor, GriffinConfig], Tuple[Tensor, ...]]


def _qkv_per_group(config: GriffinConfig) -> Tuple[int, int]:
    groups = config.num_query_groups
    return groups, config.num_attention_heads // groups * config.kv_channels


def _fuse_qkv(parts: Sequence[Tensor], config: GriffinConfig) -> Tensor:
    """[q; k; v] -> Megatron's per-group layout: for each key/value group, its query heads,
    then its key head, then its value head."""
    groups, _ = _qkv_per_group(config)
    width = parts[0].shape[1]
    return torch.cat([t.reshape(groups, -1, width) for t in parts], dim=1).reshape(-1, width)


def _split_qkv(qkv: Tensor, config: GriffinConfig) -> Tuple[Tensor, ...]:
    groups, q_per_group = _qkv_per_group(config)
    head_dim, width = config.kv_channels, qkv.shape[1]
    per_group = qkv.reshape(groups, q_per_group + 2 * head_dim, -1)
    return tuple(t.reshape(-1, width) for t in per_group.split([q_per_group, head_dim, head_dim], dim=1))


SAME = Transform("same", lambda parts, config: parts[0], lambda t, config: (t,))
# linear_in = [linear_x; linear_y] and linear_fc1 = [gate; up]: halves stacked on the output axis.
STACKED_HALVES = Transform(
    "stacked_halves", lambda parts, config: torch.cat(list(parts)), lambda t, config: tuple(t.chunk(2))
)
QKV_GROUPS = Transform("qkv_groups", _fuse_qkv, _split_qkv)
# HF keeps nn.Conv1d's [C, 1, K] depthwise weight; ours is [C, K].
CONV_WEIGHT = Transform(
    "conv_weight", lambda parts, config: parts[0][:, 0, :], lambda t, config: (t.unsqueeze(1),)
)

# Same names and layouts on both sides (under `temporal_block.rg_lru.` / `self_attention.rg_lru.`).
RGLRU_PARAMETERS = (
    "recurrent_param",
    "input_gate_weight",
    "input_gate_bias",
    "recurrent_gate_weight",
    "recurrent_gate_bias",
)

Row = Tuple[str, Tuple[str, ...], Transform]

EMBEDDING_ROW: Row = ("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), SAME)
FINAL_NORM_ROW: Row = ("decoder.final_layernorm.weight", ("model.final_norm.weight",), SAME)
NORM_ROWS: Tuple[Row, ...] = (
    ("input_layernorm.weight", ("temporal_pre_norm.weight",), SAME),
    ("pre_mlp_layernorm.weight", ("channel_pre_norm.weight",), SAME),
)
MLP_ROWS: Tuple[Row, ...] = (
    *(
        (f"mlp.linear_fc1.{p}", (f"mlp_block.gate_proj.{p}", f"mlp_block.up_proj.{p}"), STACKED_HALVES)
        for p in ("weight", "bias")
    ),
    *((f"mlp.linear_fc2.{p}", (f"mlp_block.down_proj.{p}",), SAME) for p in ("weight", "bias")),
)
TEMPORAL_ROWS: Dict[str, Tuple[Row, ...]] = {
    RECURRENT: (
        *((f"linear_in.{p}", (f"linear_x.{p}", f"linear_y.{p}"), STACKED_HALVES) for p in ("weight", "bias")),
        *((f"linear_out.{p}", (f"linear_out.{p}",), SAME) for p in ("weight", "bias")),
        ("conv.weight", ("conv_1d.weight",), CONV_WEIGHT),
        ("conv.bias", ("conv_1d.bias",), SAME),
        *((f"rg_lru.{name}", (f"rg_lru.{name}",), SAME) for name in RGLRU_PARAMETERS),
    ),
    ATTENTION: (
        ("linear_qkv.weight", ("q_proj.weight", "k_proj.weight", "v_proj.weight"), QKV_GROUPS),
        ("linear_proj.weight", ("o_proj.weight",), SAME),
        ("linear_proj.bias", ("o_proj.bias",), SAME),
    ),
}


def mapping_rows(config: GriffinConfig) -> Iterator[Row]:
    """Every tensor of the model as (our full name, HF full names, transform), in HF's order."""
    yield EMBEDDING_ROW
    for L in range(config.num_layers):
        ours, hf = f"decoder.layers.{L}.", f"model.layers.{L}."
        temporal = [
            (f"self_attention.{name}", tuple(f"temporal_block.{n}" for n in hf_names), transform)
            for name, hf_names, transform in TEMPORAL_ROWS[config.layer_type(L)]
        ]
        for name, hf_names, transform in (*NORM_ROWS, *temporal, *MLP_ROWS):
            yield ours + name, tuple(hf + n for n in hf_names), transform
    yield FINAL_NORM_ROW


def hf_to_megatron(hf_state: Dict[str, Tensor], config: GriffinConfig) -> Dict[str, Tensor]:
    """HF state dict -> GriffinModel (local backend, TP=1, PP=1) state dict."""
    return {
        ours: transform.to_ours([hf_state[n] for n in hf_names], config)
        for ours, hf_names, transform in mapping_rows(config)
    }


def megatron_to_hf(state: Dict[str, Tensor], config: GriffinConfig) -> Dict[str, Tensor]:
    """GriffinModel (local backend, TP=1, PP=1) state dict -> HF state dict (lm_head tied)."""
    out = {}
    for ours, hf_names, transform in mapping_rows(config):
        parts = transform.to_hf(state[ours], config)
        out.update({n: t.contiguous() for n, t in zip(hf_names, parts)})
    return out
