"""Text in, text out: `generate_text` and incremental decoding for streaming to a terminal."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

from ..errors import ConfigError
from .generate import generate
from ..data.tokenizers import GenerationTokenizer

_CONTEXT_TOKENS = 4  # prompt tokens decoded along, so a leading space is not lost
_USE_TOKENIZER_EOS = object()


class TextStream:
    """One row's new tokens -> new text, holding back an incomplete UTF-8 character.

    Decoding a piece alone can drop a leading space (SentencePiece), so the text is decoded
    after a few prompt tokens and the prompt's own text is cut off.
    """

    def __init__(self, tokenizer: GenerationTokenizer, prompt_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.context = list(prompt_ids[-_CONTEXT_TOKENS:])
        self.context_text = tokenizer.decode(self.context)
        self.tokens: List[int] = []
        self.text = ""

    def full_text(self) -> str:
        """The text of all tokens so far."""
        decoded = self.tokenizer.decode(self.context + self.tokens)
        if decoded.startswith(self.context_text):
            return decoded[len(self.context_text):]
        return self.tokenizer.decode(self.tokens)

    def push(self, token: int) -> str:
        """Add a token; returns the text that became printable (may be empty)."""
        self.tokens.append(token)
        text = self.full_text()
        if text.endswith("\ufffd"):
            return ""
        piece = text[len(self.text):] if text.startswith(self.text) else ""
        self.text = text
        return piece


def generate_text(
    model,
    tokenizer: GenerationTokenizer,
    prompts: Union[str, Sequence[str]],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos=_USE_TOKENIZER_EOS,
    *,
    seed: Optional[int] = None,
    stream: Optional[Callable[[int, str], None]] = None,
) -> Union[str, List[str]]:
    """Continue text prompts; returns the generated text (a list when given a list).

    eos defaults to the tokenizer's end-of-sequence token (None: never stop early).
    stream(row, text) is called with every newly printable piece of a row's text.
    """
    single = isinstance(prompts, str)
    texts = [prompts] if single else list(prompts)
    if not texts:
        raise ConfigError("no prompts given; pass a string or a list of strings.")
    prompt_ids = []
    for i, text in enumerate(texts):
        ids = tokenizer.encode(text)
        if not text or not ids:
            raise ConfigError(
                f"prompt {i} is empty; give some text to continue (e.g. --prompt \"Once upon a time\")."
            )
        prompt_ids.append(ids)
    if eos is _USE_TOKENIZER_EOS:
        eos = tokenizer.eos_token_id
    streams = [TextStream(tokenizer, ids) for ids in prompt_ids]

    def on_step(step_tokens):
        for row, token in enumerate(step_tokens):
            if token is None:
                continue
            piece = streams[row].push(token)
            if piece and stream is not None:
                stream(row, piece)

    generate(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, eos, seed=seed,
             stream=on_step)
    results = [s.full_text() for s in streams]
    return results[0] if single else results
