"""`griffin-megatron convert hf-to-mcore | mcore-to-hf`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..dtypes import DTYPES, torch_dtype


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="direction", required=True, metavar="DIRECTION")
    to_mcore = sub.add_parser(
        "hf-to-mcore", help="HF RecurrentGemma directory -> Megatron distributed checkpoint"
    )
    to_mcore.add_argument("--hf-dir", required=True, help="directory written by save_pretrained")
    to_mcore.add_argument("--out", required=True, help="checkpoint directory to create")
    to_mcore.add_argument("--dtype", choices=DTYPES, default="fp32", help="parameter dtype")
    to_mcore.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    to_hf = sub.add_parser("mcore-to-hf", help="Megatron checkpoint -> HF RecurrentGemma directory")
    to_hf.add_argument("--ckpt", required=True, help="checkpoint or training save directory")
    to_hf.add_argument("--out", required=True, help="HF directory to create")
    to_hf.add_argument("--dtype", choices=DTYPES, default=None, help="dtype of the written weights")
    to_hf.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint.model import build_model_from_checkpoint, save_model_checkpoint
    from ..checkpoint.record import open_checkpoint
    from ..checkpoint.tokenizer_files import find_tokenizer_dir
    from ..interop.hf import from_hf, to_hf
    from ..output_paths import CHECKPOINT, HF_EXPORT, check_output_directory

    if args.direction == "hf-to-mcore":
        check_output_directory(args.out, "--out", args.overwrite, replaces=CHECKPOINT,
                               inputs=[("--hf-dir", args.hf_dir)])
        model = from_hf(args.hf_dir, params_dtype=torch_dtype(args.dtype))
        out = save_model_checkpoint(
            model,
            args.out,
            backend="local",
            overwrite=args.overwrite,
            extra_record={"source": f"hf:{Path(args.hf_dir).resolve()}"},
            tokenizer_dir=args.hf_dir,
        )
        print(f"wrote Megatron distributed checkpoint {out}")
    else:
        check_output_directory(args.out, "--out", args.overwrite, replaces=HF_EXPORT,
                               inputs=[("--ckpt", args.ckpt)])
        checkpoint = open_checkpoint(args.ckpt)  # found and its record read once
        model = build_model_from_checkpoint(checkpoint, backend="local")
        out = to_hf(
            model,
            args.out,
            dtype=torch_dtype(args.dtype) if args.dtype else None,
            tokenizer_dir=find_tokenizer_dir(checkpoint.directory),
            overwrite=args.overwrite,
        )
        print(f"wrote HF RecurrentGemma directory {out}")
    return 0
