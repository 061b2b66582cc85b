"""`MegatronTokenizerAdapter`: a TextTokenizer behind the interface Megatron-Core's datasets read
(`vocab_size`, `eod`, `pad`, `unique_identifiers`)."""

from __future__ import annotations

from collections import OrderedDict
from typing import List

import numpy
from megatron.core.tokenizers import MegatronTokenizerBase

from .tokenizers import TextTokenizer


class MegatronTokenizerAdapter(MegatronTokenizerBase):
    """The slice of Megatron's tokenizer interface that GPTDataset and its builder use."""

    def __init__(self, tokenizer: TextTokenizer):
        self.text_tokenizer = tokenizer
        # Part of the dataset cache key: index files built for another tokenizer are not reused.
        self.unique_identifiers = OrderedDict(
            [("class", type(self).__name__), *tokenizer.fingerprint().items()]
        )

    def tokenize(self, text: str) -> List[int]:
        return self.text_tokenizer.encode(text)

    def detokenize(self, ids) -> str:
        return self.text_tokenizer.decode(numpy.asarray(ids).tolist())

    @property
    def vocab(self) -> dict:
        return self.text_tokenizer.vocab()

    @property
    def vocab_size(self) -> int:
        return self.text_tokenizer.vocab_size

    def apply_chat_template(self, *args, **kwargs):
        raise NotImplementedError("pretraining does not use chat templates")

    @property
    def eod(self) -> int:
        return self.text_tokenizer.eod

    @property
    def eos(self) -> int:
        return self.text_tokenizer.eod

    @property
    def pad(self) -> int:
        # Without a pad token Megatron's datasets fall back to an id that never occurs.
        if self.text_tokenizer.pad is None:
            raise AttributeError("no pad token")
        return self.text_tokenizer.pad
