"""The model that `generate`, `evaluate` and `lm-eval` run: built from a griffin-megatron
checkpoint (--load) or an HF RecurrentGemma directory (--hf-dir), in eval mode; and the
tokenizer directory they read with it.

Load failures the user can fix (a missing directory, an HF directory that is a Megatron
checkpoint) become `CheckpointError` sentences.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from .dtypes import MODEL_DTYPES, torch_dtype
from .errors import CheckpointError, ConfigError, InputFileError


def load_model(load: Optional[str], hf_dir: Optional[str], dtype: str = "fp32",
               tensor_parallel: int = 1, pipeline_parallel: int = 1,
               local_attention: str = "auto"):
    """A GriffinModel in eval mode for the current process group (TP over its ranks), its
    parameters in `dtype` (a name of dtypes.MODEL_DTYPES), its local attention run by
    `local_attention` (auto, flex or blocked: a run setting, not part of the checkpoint)."""
    from .runtime import ensure_initialized

    if pipeline_parallel != 1:
        raise ConfigError(
            f"--pipeline-parallel-size {pipeline_parallel}: evaluation continues every layer's "
            "state chunk by chunk, so it runs with tensor parallelism only; use "
            "--tensor-parallel-size instead."
        )
    if dtype not in MODEL_DTYPES:
        raise ConfigError(
            f"dtype {dtype!r} is not one a model runs in here; use one of "
            f"{', '.join(MODEL_DTYPES)}."
        )
    source = Path(load or hf_dir)
    if not source.exists():
        raise CheckpointError(
            f"checkpoint {source} does not exist; pass the directory that `griffin-megatron "
            "train --save` or `convert` wrote."
        )
    ensure_initialized(tensor_model_parallel_size=tensor_parallel)
    params_dtype = torch_dtype(dtype)
    parallel = dict(tensor_model_parallel_size=tensor_parallel, sequence_parallel=False,
                    local_attention_impl=local_attention)
    if hf_dir:
        from .interop.hf import from_hf

        if not (source / "config.json").is_file():
            if _is_megatron_checkpoint(source):
                raise CheckpointError(
                    f"{source} is a Megatron checkpoint, not an HF directory; pass it as --load "
                    f"{source} (or export it with `griffin-megatron convert mcore-to-hf --ckpt "
                    f"{source} --out DIR` and pass --hf-dir DIR)."
                )
            raise CheckpointError(
                f"{source} has no config.json; --hf-dir takes a directory written by "
                "save_pretrained or by `griffin-megatron convert mcore-to-hf --ckpt CKPT --out "
                "DIR`."
            )
        return from_hf(str(source), params_dtype=params_dtype, **parallel).eval()
    from .checkpoint.model import build_model_from_checkpoint

    model = build_model_from_checkpoint(
        str(source), params_dtype=params_dtype, bf16=dtype == "bf16", **parallel
    )
    return model.eval()


def _is_megatron_checkpoint(directory: Path) -> bool:
    """A griffin-megatron checkpoint, a save directory, or a Megatron distributed checkpoint."""
    from .checkpoint.record import LATEST_FILE, MODEL_RECORD

    markers = (MODEL_RECORD, LATEST_FILE, "metadata.json")
    return any((directory / name).is_file() for name in markers)


def model_tokenizer_dir(load: Optional[str], hf_dir: Optional[str],
                        tokenizer: Optional[str]) -> Path:
    """--tokenizer, or the tokenizer saved beside the model (a checkpoint given as --load, or an
    HF directory given as --hf-dir): what `generate`, `evaluate` and `lm-eval` read. Says on
    stderr which one is used when --tokenizer is not the directory saved with a checkpoint."""
    from .checkpoint.record import resolve_checkpoint_dir
    from .checkpoint.tokenizer_files import find_tokenizer_dir

    model_dir = resolve_checkpoint_dir(load) if load else Path(hf_dir)
    if tokenizer:
        if load and find_tokenizer_dir(model_dir) != Path(tokenizer):
            print(f"tokenizer: {tokenizer} (--tokenizer)", file=sys.stderr)
        return Path(tokenizer)
    found = find_tokenizer_dir(model_dir)
    if found is None:
        raise InputFileError(
            f"no tokenizer found beside {model_dir} (tokenizer.json, tokenizer.model or "
            "tokenizer_config.json); pass --tokenizer DIR."
        )
    if load and found == model_dir:
        _check_recorded_tokenizer(model_dir)
    return found


def _check_recorded_tokenizer(checkpoint_dir: Path) -> None:
    """Every tokenizer file the checkpoint's record lists is there: a tokenizer missing one of
    its files can load as a different tokenizer without a word."""
    from .checkpoint.record import FILES_KEY, read_model_record
    from .checkpoint.tokenizer_files import TOKENIZER_FILES

    recorded = read_model_record(checkpoint_dir).get(FILES_KEY, {})
    missing = [n for n in TOKENIZER_FILES if n in recorded and not (checkpoint_dir / n).is_file()]
    if missing:
        raise InputFileError(
            f"the tokenizer saved with {checkpoint_dir} lacks {missing[0]}, which was saved "
            "with the checkpoint; restore it, or pass --tokenizer DIR with the model's tokenizer."
        )


__all__ = ["load_model", "model_tokenizer_dir"]
