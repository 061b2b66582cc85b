"""The tokenizer saved beside a checkpoint: HF `transformers` tokenizers or a bare tokenizer.json."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

from ..errors import InputFileError

# Names that conventionally end a document, for a bare tokenizer.json that does not say.
_EOS_NAMES = ("<eos>", "</s>", "<|endoftext|>", "<|end_of_text|>")


class Tokenizer:
    """encode(text) -> ids and decode(ids) -> text over either tokenizer library.

    encode adds the special tokens the tokenizer is configured to add (e.g. Gemma's BOS); decode
    drops special tokens.
    """

    def __init__(self, backend, eos_token_id: Optional[int], source: str):
        self.backend = backend
        self.eos_token_id = eos_token_id
        self.source = source

    def encode(self, text: str) -> List[int]:
        encoded = self.backend.encode(text)
        return list(encoded.ids) if hasattr(encoded, "ids") else list(encoded)

    def decode(self, ids: List[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=True)


def _bare_eos(tokenizer) -> Optional[int]:
    for name in _EOS_NAMES:
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return token_id
    return None


def load_tokenizer(directory: Union[str, Path]) -> Tokenizer:
    """Load with `transformers.AutoTokenizer` when the directory has its config (or a
    SentencePiece model), else `tokenizers.Tokenizer.from_file(tokenizer.json)`."""
    directory = Path(directory)
    has = lambda name: (directory / name).is_file()  # noqa: E731
    if has("tokenizer_config.json") or has("tokenizer.model"):
        from transformers import AutoTokenizer

        backend = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        return Tokenizer(backend, backend.eos_token_id, f"transformers:{directory}")
    if has("tokenizer.json"):
        from tokenizers import Tokenizer as BareTokenizer

        backend = BareTokenizer.from_file(str(directory / "tokenizer.json"))
        return Tokenizer(backend, _bare_eos(backend), f"tokenizers:{directory}")
    raise InputFileError(
        f"no tokenizer in {directory} (expected tokenizer.json, tokenizer.model or "
        "tokenizer_config.json); copy the tokenizer files there or pass --tokenizer DIR."
    )
