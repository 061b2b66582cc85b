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
    lm_head.weight                               -> output_layer.weight (only when untied:
                                                    tie_word_embeddings false)

That list is one table in code (`EMBEDDING_ROW`, `NORM_ROWS`, `TEMPORAL_ROWS`, `MLP_ROWS`,
`FINAL_NORM_ROW`, `OUTPUT_ROW`): each row names our tensor, the HF tensors it is made of, and a
named `Transform` for the fused ones (`STACKED_HALVES`, `QKV_GROUPS`, `CONV_WEIGHT`).
`hf_to_megatron` and `megatron_to_hf` are both derived from `mapping_rows`. What each config.json
field means is interop/hf_config.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Sequence, Tuple

import torch
from torch import Tensor

from ..config import ATTENTION, RECURRENT, GriffinConfig
from ..errors import CheckpointError

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
OUTPUT_ROW: Row = ("output_layer.weight", ("lm_head.weight",), SAME)  # untied models only
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
    if not config.share_embeddings_and_output_weights:
        yield OUTPUT_ROW


_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
# The tensor that tells an HF layer's block type.
_BLOCK_MARKERS = {RECURRENT: "temporal_block.rg_lru.recurrent_param",
                  ATTENTION: "temporal_block.q_proj.weight"}
_BLOCK_NAMES = {RECURRENT: "recurrent", ATTENTION: "attention"}


def check_hf_state(hf_state: Dict[str, Tensor], config: GriffinConfig) -> None:
    """Refuse HF weights that do not hold the model the config describes (CheckpointError):
    another layer count or block type, a missing tensor, or a tensor the model has no place
    for (transformers would drop it with a warning)."""
    layers = sorted({int(m.group(1)) for m in map(_HF_LAYER.match, hf_state) if m})
    if layers != list(range(config.num_layers)):
        raise CheckpointError(
            f"config.json sets num_hidden_layers={config.num_layers} but the weights hold "
            f"{len(layers)} layers (model.layers.{layers[0] if layers else '-'} to "
            f"model.layers.{layers[-1] if layers else '-'}); set num_hidden_layers to the "
            "weights' layer count."
        )
    for layer in range(config.num_layers):
        expected = config.layer_type(layer)
        for kind, marker in _BLOCK_MARKERS.items():
            if kind != expected and f"model.layers.{layer}.{marker}" in hf_state:
                raise CheckpointError(
                    f"config.json's block_types make layer {layer} a {_BLOCK_NAMES[expected]} "
                    f"block but the weights hold a {_BLOCK_NAMES[kind]} block there; set "
                    "block_types to the weights' pattern."
                )
    wanted = {name for _, names, _ in mapping_rows(config) for name in names}
    missing = [name for name in sorted(wanted) if name not in hf_state]
    if "lm_head.weight" in missing:
        raise CheckpointError(
            "config.json sets tie_word_embeddings=false but the weights hold no lm_head.weight; "
            "set tie_word_embeddings to true, or add the output layer's weight."
        )
    if missing:
        raise CheckpointError(
            f"the weights lack {len(missing)} tensors of the model config.json describes "
            f"(first: {missing[0]}); the weights and config.json are of different models."
        )
    # A tied lm_head is the embedding: transformers ties it whatever the file holds.
    extra = [n for n in sorted(hf_state) if n not in wanted and n != "lm_head.weight"]
    if extra:
        raise CheckpointError(
            f"the weights hold {len(extra)} tensors that the model config.json describes has "
            f"no place for (first: {extra[0]}); the weights and config.json are of different "
            "models."
        )


def hf_to_megatron(hf_state: Dict[str, Tensor], config: GriffinConfig) -> Dict[str, Tensor]:
    """HF state dict -> GriffinModel (local backend, TP=1, PP=1) state dict (check_hf_state
    first for a sentence instead of a KeyError)."""
    return {
        ours: transform.to_ours([hf_state[n] for n in hf_names], config)
        for ours, hf_names, transform in mapping_rows(config)
    }


def megatron_to_hf(state: Dict[str, Tensor], config: GriffinConfig) -> Dict[str, Tensor]:
    """GriffinModel (local backend, TP=1, PP=1) state dict -> HF state dict (lm_head only when
    untied)."""
    out = {}
    for ours, hf_names, transform in mapping_rows(config):
        parts = transform.to_hf(state[ours], config)
        out.update({n: t.contiguous() for n, t in zip(hf_names, parts)})
    return out
