"""The tokenizer saved beside a model: which files make one, copying them into a checkpoint (or an
HF directory), and finding them again for `generate`, `evaluate` and `lm-eval`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional, Union

from ..errors import InputFileError

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
)


def copy_tokenizer_files(source: Union[str, Path], destination: Union[str, Path]) -> int:
    """Copy the tokenizer files found in `source`; returns how many were copied."""
    copied = 0
    for name in TOKENIZER_FILES:
        path = Path(source) / name
        if path.is_file():
            shutil.copy2(path, Path(destination) / name)
            copied += 1
    return copied


def find_tokenizer_dir(checkpoint_dir: Union[str, Path]) -> Optional[Path]:
    """The checkpoint directory itself, or the save directory above an iter_* folder."""
    for candidate in (Path(checkpoint_dir), Path(checkpoint_dir).parent):
        if any((candidate / name).is_file() for name in TOKENIZER_FILES):
            return candidate
    return None


def model_tokenizer_dir(load: Optional[str], hf_dir: Optional[str],
                        tokenizer: Optional[str]) -> Path:
    """--tokenizer, or the tokenizer saved beside the model (a checkpoint given as --load, or an
    HF directory given as --hf-dir): what `generate`, `evaluate` and `lm-eval` read. Says on
    stderr which one is used when --tokenizer is not the directory saved with a checkpoint."""
    from .record import resolve_checkpoint_dir  # Megatron-Core; the rest of this file needs none

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
    from .record import FILES_KEY, read_model_record

    recorded = read_model_record(checkpoint_dir).get(FILES_KEY, {})
    missing = [n for n in TOKENIZER_FILES if n in recorded and not (checkpoint_dir / n).is_file()]
    if missing:
        raise InputFileError(
            f"the tokenizer saved with {checkpoint_dir} lacks {missing[0]}, which was saved "
            "with the checkpoint; restore it, or pass --tokenizer DIR with the model's tokenizer."
        )


__all__ = ["TOKENIZER_FILES", "copy_tokenizer_files", "find_tokenizer_dir", "model_tokenizer_dir"]
