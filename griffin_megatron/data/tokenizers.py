"""Tokenizers for preprocessing and training: HF `tokenizers` files, SentencePiece models, and a
byte-level BPE trained on the input when the user has none.

`load_tokenizer(path)` accepts a `tokenizer.json`, a SentencePiece `.model`, or a directory holding
either (HF layout). Every tokenizer has an end-of-document token: Megatron's GPTDataset resets
position ids after it, and the model resets its recurrence and attention there.

This module imports neither torch nor Megatron, so preprocessing workers start quickly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from ..errors import DataError, InputFileError


HF_FILE = "tokenizer.json"
HF_CONFIG_FILE = "tokenizer_config.json"
SENTENCEPIECE_FILE = "tokenizer.model"
# End-of-document tokens of common tokenizers, tried in order when no tokenizer_config.json names one.
EOD_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<eod>", "[SEP]")
TRAINED_EOD = "<|endoftext|>"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _token_content(value) -> Optional[str]:
    """tokenizer_config.json writes special tokens as strings or {"content": ...} dicts."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class TextTokenizer:
    """Encode and decode text; knows its vocabulary size and end-of-document id.

    kind: "hf" (a `tokenizers` tokenizer.json) or "sentencepiece".
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if self.path.suffix == ".json":
            self._init_hf()
        else:
            self._init_sentencepiece()

    def _init_hf(self) -> None:
        from tokenizers import Tokenizer

        self.kind = "hf"
        try:
            self._tok = Tokenizer.from_file(str(self.path))
        except Exception as error:
            raise DataError(
                f"{self.path} is not a HuggingFace tokenizers file ({error}); pass a tokenizer.json "
                "written by `tokenizers`/`transformers`, or a SentencePiece .model."
            ) from None
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        config_path = self.path.parent / HF_CONFIG_FILE
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        self.eod = self._special_id(
            _token_content(config.get("eos_token")), EOD_CANDIDATES, "end-of-document"
        )
        pad_name = _token_content(config.get("pad_token"))
        pad = self._tok.token_to_id(pad_name) if pad_name else None
        self.pad = pad if pad is not None and pad != self.eod else None

    def _special_id(self, named: Optional[str], candidates: Sequence[str], what: str) -> int:
        for token in ([named] if named else []) + list(candidates):
            token_id = self._tok.token_to_id(token)
            if token_id is not None:
                return token_id
        raise DataError(
            f"tokenizer {self.path} has no {what} token (looked for "
            f"{', '.join(([named] if named else []) + list(candidates))}); add one or name it as "
            f"eos_token in {HF_CONFIG_FILE} beside the tokenizer."
        )

    def _init_sentencepiece(self) -> None:
        import sentencepiece

        self.kind = "sentencepiece"
        try:
            self._tok = sentencepiece.SentencePieceProcessor(model_file=str(self.path))
        except Exception as error:
            raise DataError(
                f"{self.path} is not a SentencePiece model ({error}); pass a tokenizer.model, a "
                "tokenizer.json, or a directory holding one."
            ) from None
        self.vocab_size = self._tok.get_piece_size()
        self.eod = self._tok.eos_id()
        if self.eod < 0:
            raise DataError(
                f"SentencePiece model {self.path} has no end-of-sentence token; train it with "
                "eos_id >= 0 so documents can be separated."
            )
        pad = self._tok.pad_id()
        self.pad = pad if pad >= 0 and pad != self.eod else None

    # Encoding -----------------------------------------------------------------------------------

    def encode(self, text: str) -> List[int]:
        """Token ids of `text`, without special tokens (documents get EOD appended separately)."""
        if self.kind == "hf":
            return self._tok.encode(text, add_special_tokens=False).ids
        return self._tok.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]:
        if self.kind == "hf":
            return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]
        return self._tok.encode(list(texts))

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if self.kind == "hf":
            return self._tok.decode(ids, skip_special_tokens=False)
        return self._tok.decode(ids)

    def vocab(self) -> dict:
        """Token string -> id for the whole vocabulary (special and added tokens included)."""
        if self.kind == "hf":
            return self._tok.get_vocab(with_added_tokens=True)
        return {self._tok.id_to_piece(i): i for i in range(self.vocab_size)}

    # Identity -----------------------------------------------------------------------------------

    def files(self) -> List[Path]:
        """The files that make up this tokenizer (copied beside data and checkpoints)."""
        files = [self.path]
        config = self.path.parent / HF_CONFIG_FILE
        if self.kind == "hf" and config.is_file():
            files.append(config)
        return files

    def fingerprint(self) -> dict:
        """What a dataset records about the tokenizer that wrote it."""
        return {
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "eod": self.eod,
            "sha256": _sha256(self.path),
        }

    def save(self, directory: Union[str, Path]) -> Path:
        """Copy the tokenizer's files into `directory` under their standard names."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / (HF_FILE if self.kind == "hf" else SENTENCEPIECE_FILE)
        if target.resolve() != self.path.resolve():
            shutil.copy2(self.path, target)
        for extra in self.files()[1:]:
            if (directory / extra.name).resolve() != extra.resolve():
                shutil.copy2(extra, directory / extra.name)
        return target


def tokenizer_file(path: Union[str, Path]) -> Path:
    """The tokenizer file a user's --tokenizer names (a file, or a directory holding one)."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in (HF_FILE, SENTENCEPIECE_FILE):
            if (path / name).is_file():
                return path / name
        raise InputFileError(
            f"tokenizer directory {path} holds neither {HF_FILE} nor {SENTENCEPIECE_FILE}; pass "
            "the tokenizer file itself or a directory saved by HF/SentencePiece."
        )
    if not path.is_file():
        raise InputFileError(
            f"tokenizer {path} does not exist; pass a tokenizer.json, a SentencePiece .model or a "
            "directory holding one (or omit --tokenizer in preprocess to train a byte-level BPE)."
        )
    return path


def load_tokenizer(path: Union[str, Path]) -> TextTokenizer:
    return TextTokenizer(tokenizer_file(path))


def train_byte_level_bpe(
    texts: Iterable[str], directory: Union[str, Path], vocab_size: int = 8192, length: int = None
) -> TextTokenizer:
    """Train a byte-level BPE (GPT-2 style, lossless on any UTF-8 text) and save it as
    `directory/tokenizer.json` with a `tokenizer_config.json` naming its EOD token, so that
    `transformers.AutoTokenizer` also loads it after export."""
    from tokenizers import ByteLevelBPETokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[TRAINED_EOD],
        show_progress=False, length=length,
    )
    bpe.save(str(directory / HF_FILE))
    (directory / HF_CONFIG_FILE).write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": TRAINED_EOD,
                "bos_token": TRAINED_EOD,
                "unk_token": TRAINED_EOD,
                "clean_up_tokenization_spaces": False,
            },
            indent=2,
        )
        + "\n"
    )
    return TextTokenizer(directory / HF_FILE)
