"""The tokenizer saved beside a model: which files make one, copying them into a checkpoint (or an
HF directory), and finding them again (loading.model_tokenizer_dir picks the one `generate`,
`evaluate` and `lm-eval` read). Nothing here reads a checkpoint's record: record.py imports
this module."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional, Union

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


__all__ = ["TOKENIZER_FILES", "copy_tokenizer_files", "find_tokenizer_dir"]
