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
"""

from __future__ import annotations

from typing import Dict

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


def _interleave_qkv(q: Tensor, k: Tensor, v: Tensor, groups: int) -> Tensor:
    width = q.shape[1]
    return torch.cat(
        [q.reshape(groups, -1, width), k.reshape(groups, -1, width), v.reshape(groups, -1, width)],
        dim=1,
    ).reshape(-1, width)


def _split_qkv(qkv: Tensor, config: GriffinConfig) -> tuple:
    groups, head_dim = config.num_query_groups, config.kv_channels
    q_per_group = config.num_attention_heads // groups * head_dim
    per_group = qkv.reshape(groups, q_per_group + 2 * head_dim, -1)
    q, k, v = per_group.split([q_per_group, head_dim, head_dim], dim=1)
    width = qkv.shape[1]
    return q.reshape(-1, width), k.reshape(-1, width), v.reshape(-1, width)


# Same names and layouts on both sides (under `temporal_block.rg_lru.` / `self_attention.rg_lru.`).
RGLRU_PARAMETERS = (
    "recurrent_param",
    "input_gate_weight",
    "input_gate_bias",
    "recurrent_gate_weight",
    "recurrent_gate_bias",
)


def hf_to_megatron(hf_state: Dict[str, Tensor], config: GriffinConfig) -> Dict[str, Tensor]:
    """HF state dict -> GriffinModel (local backend, TP=1, PP=1) state dict."""
    out = {"embedding.word_embeddings.weight": hf_state["model.embed_tokens.weight"]}
    for L in range(config.num_layers):
        hf, mc = f"model.layers.{L}.", f"decoder.layers.{L}."
        tb, sa = hf + "temporal_block.", mc + "self_attention."
        out[mc + "input_layernorm.weight"] = hf_state[hf + "temporal_pre_norm.weight"]
        out[mc + "pre_mlp_layernorm.weight"] = hf_state[hf + "channel_pre_norm.weight"]
        if config.layer_type(L) == RECURRENT:
            for p in ("weight", "bias"):
                out[sa + f"linear_in.{p}"] = torch.cat(
                    [hf_state[tb + f"linear_x.{p}"], hf_state[tb + f"linear_y.{p}"]]
                )
                out[sa + f"linear_out.{p}"] = hf_state[tb + f"linear_out.{p}"]
            out[sa + "conv.weight"] = hf_state[tb + "conv_1d.weight"][:, 0, :]
            out[sa + "conv.bias"] = hf_state[tb + "conv_1d.bias"]
            for name in RGLRU_PARAMETERS:
                out[sa + f"rg_lru.{name}"] = hf_state[tb + f"rg_lru.{name}"]
        else:
            out[sa + "linear_qkv.weight"] = _interleave_qkv(
                hf_state[tb + "q_proj.weight"],
                hf_state[tb + "k_proj.weight"],
                hf_state[tb + "v_proj.weight"],
                config.num_query_groups,
            )
            out[sa + "linear_proj.weight"] = hf_state[tb + "o_proj.weight"]
            out[sa + "linear_proj.bias"] = hf_state[tb + "o_proj.bias"]
        mlp = hf + "mlp_block."
        for p in ("weight", "bias"):
            out[mc + f"mlp.linear_fc1.{p}"] = torch.cat(
                [hf_state[mlp + f"gate_proj.{p}"], hf_state[mlp + f"up_proj.{p}"]]
            )
            out[mc + f"mlp.linear_fc2.{p}"] = hf_state[mlp + f"down_proj.{p}"]
    out["decoder.final_layernorm.weight"] = hf_state["model.final_norm.weight"]
    return out


def megatron_to_hf(state: Dict[str, Tensor], config: GriffinConfig) -> Dict[str, Tensor]:
    """GriffinModel (local backend, TP=1, PP=1) state dict -> HF state dict (lm_head tied)."""
    out = {"model.embed_tokens.weight": state["embedding.word_embeddings.weight"]}
    for L in range(config.num_layers):
        hf, mc = f"model.layers.{L}.", f"decoder.layers.{L}."
        tb, sa = hf + "temporal_block.", mc + "self_attention."
        out[hf + "temporal_pre_norm.weight"] = state[mc + "input_layernorm.weight"]
        out[hf + "channel_pre_norm.weight"] = state[mc + "pre_mlp_layernorm.weight"]
        if config.layer_type(L) == RECURRENT:
            for p in ("weight", "bias"):
                x, y = state[sa + f"linear_in.{p}"].chunk(2)
                out[tb + f"linear_x.{p}"], out[tb + f"linear_y.{p}"] = x, y
                out[tb + f"linear_out.{p}"] = state[sa + f"linear_out.{p}"]
            out[tb + "conv_1d.weight"] = state[sa + "conv.weight"].unsqueeze(1)
            out[tb + "conv_1d.bias"] = state[sa + "conv.bias"]
            for name in RGLRU_PARAMETERS:
                out[tb + f"rg_lru.{name}"] = state[sa + f"rg_lru.{name}"]
        else:
            q, k, v = _split_qkv(state[sa + "linear_qkv.weight"], config)
            out[tb + "q_proj.weight"], out[tb + "k_proj.weight"], out[tb + "v_proj.weight"] = q, k, v
            out[tb + "o_proj.weight"] = state[sa + "linear_proj.weight"]
            out[tb + "o_proj.bias"] = state[sa + "linear_proj.bias"]
        mlp = hf + "mlp_block."
        for p in ("weight", "bias"):
            gate, up = state[mc + f"mlp.linear_fc1.{p}"].chunk(2)
            out[mlp + f"gate_proj.{p}"], out[mlp + f"up_proj.{p}"] = gate, up
            out[mlp + f"down_proj.{p}"] = state[mc + f"mlp.linear_fc2.{p}"]
    out["model.final_norm.weight"] = state["decoder.final_layernorm.weight"]
    return {k: v.contiguous() for k, v in out.items()}
