"""What every field of an HF RecurrentGemma `config.json` means here: honoured (it becomes a
GriffinConfig field and is written back on export), without effect on what the model computes
from its weights, or refused by name with its value. Nothing is dropped without a word.

Honoured: num_hidden_layers, vocab_size, hidden_size, intermediate_size (both MLP branches),
num_attention_heads, num_key_value_heads, lru_width, attention_window_size (alias
sliding_window), conv1d_width, logits_soft_cap (null: no cap), rms_norm_eps, hidden_activation
(those in config.ACTIVATIONS), block_types, tie_word_embeddings, and RoPE's rope_theta and
partial_rotary_factor (in rope_parameters, or at the top level as older releases wrote them).
Refused unless at their default: rope scaling (rope_scaling, a rope_type other than "default",
any other RoPE parameter), attention_bias, attention_dropout, a head_dim other than hidden_size /
num_attention_heads, embeddings_scale_by_sqrt_dim false, and any field transformers' config does
not define. The config is read as JSON, not through transformers' strict validation (which
refuses `logits_soft_cap: null` and an integer cap).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any, Dict

from ..config import ACTIVATIONS, ATTENTION, RECURRENT, GriffinConfig, GriffinConfigError
from ..errors import CheckpointError, InputFileError

HF_BLOCK_TYPES = {"recurrent": RECURRENT, "attention": ATTENTION}

# Fields that do not change what the model computes from its weights, and why.
NO_EFFECT = {
    "w_init_variance_scale": "initialisation only",
    "final_w_init_variance_scale": "initialisation only",
    "use_cache": "a generation setting",
    "pad_token_id": "a tokenizer setting",
    "bos_token_id": "a tokenizer setting",
    "eos_token_id": "a tokenizer setting",
    "dtype": "the stored weights' dtype; `convert --dtype` chooses ours",
    "torch_dtype": "the stored weights' dtype; `convert --dtype` chooses ours",
    "transformers_version": "bookkeeping",
    "architectures": "bookkeeping",
    "model_type": "checked to be recurrent_gemma",
    "_name_or_path": "bookkeeping",
}
# Fields whose only value the model computes is this one.
FIXED = {
    "attention_bias": False,  # q/k/v projections without bias
    "attention_dropout": 0.0,  # our local attention has no dropout
    "embeddings_scale_by_sqrt_dim": True,  # written by early releases; always true in the model
}
ROPE_KEYS = ("rope_type", "type", "rope_theta", "partial_rotary_factor")


def _refuse(field: str, value: Any, why: str) -> None:
    raise CheckpointError(f"config.json sets {field}={value!r}, {why}.")


def _class_defaults() -> Dict[str, Any]:
    """RecurrentGemmaConfig's own defaults (a dataclass from transformers 5, keyword defaults of
    __init__ before)."""
    from transformers import RecurrentGemmaConfig

    if dataclasses.is_dataclass(RecurrentGemmaConfig):
        return {f.name: f.default for f in dataclasses.fields(RecurrentGemmaConfig)
                if f.default is not dataclasses.MISSING}
    signature = inspect.signature(RecurrentGemmaConfig.__init__)
    return {name: p.default for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty}


def _generic_defaults() -> Dict[str, Any]:
    """Every transformers config's generic fields (labels, output switches, ...) at default."""
    from transformers import PretrainedConfig

    return PretrainedConfig().to_dict()


def read_hf_config(directory: Path) -> Dict[str, Any]:
    """The fields of `directory/config.json`, as written."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise InputFileError(
            f"{directory} is not an HF model directory (no config.json); pass the folder that "
            "`save_pretrained` wrote."
        )
    try:
        fields = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise InputFileError(
            f"{path} cannot be read as an HF config ({error}); restore the file that "
            "`save_pretrained` wrote."
        ) from None
    if not isinstance(fields, dict):
        raise InputFileError(
            f"{path} cannot be read as an HF config (it holds a {type(fields).__name__}, not "
            "an object); restore the file that `save_pretrained` wrote."
        )
    if fields.get("model_type") != "recurrent_gemma":
        raise CheckpointError(
            f"{directory} holds a {fields.get('model_type')!r} model; only RecurrentGemma "
            "(model_type 'recurrent_gemma') converts to Hawk/Griffin."
        )
    return fields


def _check_every_field(fields: Dict[str, Any], read) -> None:
    defaults, generic = _class_defaults(), _generic_defaults()
    for name, value in fields.items():
        if name in read or name in NO_EFFECT:
            continue
        if name in FIXED:
            if value != FIXED[name]:
                _refuse(name, value, f"but the model computes only {name}={FIXED[name]!r}; "
                        "this checkpoint cannot be converted exactly")
        elif name in generic:
            if value != generic[name]:
                _refuse(name, value, "a generic transformers setting that RecurrentGemma does "
                        f"not use at any value but its default {generic[name]!r}; remove it")
        elif name in defaults:
            _refuse(name, value, "a RecurrentGemma setting this converter does not know; "
                    "convert with the griffin-megatron release that supports it")
        else:
            _refuse(name, value, "which transformers' RecurrentGemmaConfig does not define, so "
                    "its meaning is unknown; remove it if it is stale")


def _rope(fields: Dict[str, Any]) -> tuple:
    if fields.get("rope_scaling") is not None:
        _refuse("rope_scaling", fields["rope_scaling"], "scaled RoPE, which RecurrentGemma's "
                "attention does not compute; remove it")
    rope = dict(fields.get("rope_parameters") or {})
    for legacy in ("rope_theta", "partial_rotary_factor"):
        if legacy in fields:
            rope.setdefault(legacy, fields[legacy])
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        _refuse("rope_parameters.rope_type", rope_type, "scaled RoPE, which RecurrentGemma's "
                "attention does not compute (transformers refuses it too); use 'default'")
    for name, value in rope.items():
        if name not in ROPE_KEYS:
            _refuse(f"rope_parameters.{name}", value, "which default RoPE does not use; remove it")
    return float(rope.get("rope_theta", 10000.0)), float(rope.get("partial_rotary_factor", 0.5))


# Fields architecture_from_hf_config reads, honouring their value or refusing it by name.
READ = (
    "num_hidden_layers", "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
    "num_key_value_heads", "lru_width", "attention_window_size", "sliding_window",
    "conv1d_width", "logits_soft_cap", "rms_norm_eps", "hidden_activation", "block_types",
    "tie_word_embeddings", "rope_parameters", "rope_theta", "partial_rotary_factor", "head_dim",
    "rope_scaling",
)
WHOLE_NUMBERS = ("num_hidden_layers", "vocab_size", "hidden_size", "intermediate_size",
                 "num_attention_heads", "attention_window_size", "conv1d_width")


def architecture_from_hf_config(hf_config) -> dict:
    """GriffinConfig architecture fields of an HF RecurrentGemma config: a RecurrentGemmaConfig
    or the fields of a config.json. Refuses (CheckpointError) any field it cannot honour."""
    fields = dict(hf_config if isinstance(hf_config, dict) else hf_config.to_dict())
    _check_every_field(fields, READ)
    value = {**_class_defaults(), **fields}.get
    for name in WHOLE_NUMBERS:
        if not isinstance(value(name), int) or isinstance(value(name), bool) or value(name) < 1:
            _refuse(name, value(name), "but it must be a positive whole number")
    if not isinstance(value("tie_word_embeddings"), bool):
        _refuse("tie_word_embeddings", value("tie_word_embeddings"), "but it must be true or "
                "false")
    if "sliding_window" in fields:
        if "attention_window_size" in fields and fields["sliding_window"] != value(
                "attention_window_size"):
            _refuse("sliding_window", fields["sliding_window"], "which disagrees with "
                    f"attention_window_size={value('attention_window_size')!r}; keep one of them")
        fields["attention_window_size"] = fields["sliding_window"]
    hidden, heads = value("hidden_size"), value("num_attention_heads")
    head_dim = hidden // heads
    if fields.get("head_dim") not in (None, head_dim):
        _refuse("head_dim", fields["head_dim"], f"but RecurrentGemma's heads are hidden_size / "
                f"num_attention_heads = {head_dim} wide whatever head_dim says; remove it")
    activation = value("hidden_activation")
    if activation not in ACTIVATIONS:
        _refuse("hidden_activation", activation, "which the model does not compute; it "
                f"computes {', '.join(sorted(ACTIVATIONS))}")
    block_types = list(value("block_types") or ())
    unknown = [t for t in block_types if t not in HF_BLOCK_TYPES]
    if unknown or not block_types:
        _refuse("block_types", value("block_types"), "but RecurrentGemma's blocks are "
                "'recurrent' and 'attention'; list those")
    theta, partial = _rope(fields)
    cap = value("logits_soft_cap")
    layers = value("num_hidden_layers")
    pattern = "".join(HF_BLOCK_TYPES[t] for t in block_types)
    return dict(
        # transformers repeats block_types over the depth and cuts it at num_hidden_layers.
        block_pattern=pattern[:layers],
        num_layers=layers,
        hidden_size=hidden,
        ffn_hidden_size=value("intermediate_size") // 2,
        num_attention_heads=heads,
        num_query_groups=value("num_key_value_heads") or heads,
        kv_channels=head_dim,
        lru_width=value("lru_width") or hidden,
        rglru_num_heads=heads,
        conv_width=value("conv1d_width"),
        attention_window=value("attention_window_size"),
        logits_soft_cap=None if cap is None else float(cap),
        layernorm_epsilon=float(value("rms_norm_eps")),
        vocab_size=value("vocab_size"),
        rotary_percent=partial,
        rotary_base=theta,
        hidden_activation=activation,
        share_embeddings_and_output_weights=value("tie_word_embeddings"),
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
        problems.append("logits_soft_cap=None (HF always soft-caps, and its config refuses null)")
    if problems:
        raise GriffinConfigError(
            "This model cannot be written as an HF RecurrentGemma checkpoint: "
            + "; ".join(problems)
            + "."
        )


def hf_config_from_architecture(config: GriffinConfig, **extra):
    """The RecurrentGemmaConfig of a model, every honoured field written back."""
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
        hidden_activation=config.hidden_activation,
        tie_word_embeddings=config.share_embeddings_and_output_weights,
        **extra,
    )
    if "rope_parameters" in _class_defaults():
        kwargs["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": float(config.rotary_base),
            "partial_rotary_factor": float(config.rotary_percent),
        }
    else:
        kwargs["rope_theta"] = float(config.rotary_base)
        kwargs["partial_rotary_factor"] = float(config.rotary_percent)
    # What transformers' Auto classes and Megatron Bridge's AutoBridge pick the model class by.
    kwargs.setdefault("architectures", ["RecurrentGemmaForCausalLM"])
    return RecurrentGemmaConfig(**kwargs)
