"""`griffin-megatron info`: architecture and parameter counts of a preset or checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a preset name (see --list)")
    source.add_argument("--ckpt", help="a griffin-megatron checkpoint directory")
    source.add_argument("--hf-dir", help="an HF RecurrentGemma directory")
    source.add_argument("--list", action="store_true", help="list the preset names")


def _count_by_kind(config) -> dict:
    """Parameters per part, from the meta-device model's own parameter names."""
    from ..presets import meta_model

    model = meta_model(config)
    counts = {"embedding (tied output)": 0, "recurrent blocks": 0, "attention blocks": 0,
              "MLPs": 0, "norms": 0}
    for name, param in model.named_parameters():
        if name.startswith("embedding."):
            key = "embedding (tied output)"
        elif ".mlp." in name:
            key = "MLPs"
        elif "layernorm" in name:
            key = "norms"
        elif ".self_attention.linear_qkv" in name or ".self_attention.linear_proj" in name:
            key = "attention blocks"
        else:
            key = "recurrent blocks"
        counts[key] += param.numel()
    return counts


def run(args: argparse.Namespace) -> int:
    from ..presets import NOMINAL_PARAMETERS, get_preset, preset_names

    if args.list:
        print("\n".join(preset_names()))
        return 0
    if args.preset:
        config, title = get_preset(args.preset), f"preset {args.preset}"
    elif args.ckpt:
        from ..checkpoint.record import config_from_record, open_checkpoint

        checkpoint = open_checkpoint(args.ckpt)
        config = config_from_record(checkpoint.record)
        title = f"checkpoint {checkpoint.directory}"
    else:
        from ..config import GriffinConfig
        from ..interop.hf_config import architecture_from_hf_config, read_hf_config

        hf_config = read_hf_config(Path(args.hf_dir))
        config = GriffinConfig(**architecture_from_hf_config(hf_config))
        title = f"HF model {args.hf_dir}"

    counts = _count_by_kind(config)
    total = sum(counts.values())
    pattern = "".join(config.layer_types)
    rows = [
        ("family", "Hawk" if config.is_hawk else "Griffin"),
        ("layers", f"{config.num_layers} ({pattern})"),
        ("width", config.hidden_size),
        ("MLP width (per GeGLU branch)", config.ffn_hidden_size),
        ("RG-LRU width / gate blocks", f"{config.lru_width} / {config.rglru_num_heads}"),
        ("Conv1D width", config.conv_width),
        ("attention heads / kv heads / head dim",
         f"{config.num_attention_heads} / {config.num_query_groups} / {config.kv_channels}"),
        ("local attention window", config.attention_window),
        ("vocabulary", config.vocab_size),
        ("training sequence length", config.seq_length),
    ]
    print(title)
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        print(f"  {key:<{width}}{value}")
    print("  parameters")
    for key, value in counts.items():
        print(f"    {key:<{width - 2}}{value:>16,}")
    print(f"    {'total':<{width - 2}}{total:>16,}")
    nominal = NOMINAL_PARAMETERS.get(args.preset or "")
    if nominal:
        print(f"    {'vs. name':<{width - 2}}{total / nominal - 1:>+16.1%}")
    return 0
