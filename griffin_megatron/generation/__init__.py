"""Generation with the fixed-size recurrent / sliding-window cache.

- `GriffinInferenceCache` (cache.py): the per-layer states, each made by its layer.
- `forward_with_cache`: run a chunk of tokens through the model with a cache, get logits
  (prefill, continuation, scoring); `decode_step`: one token per row (forward.py).
- `generate` / `stream_generate`: token ids in, token ids out (batched, left-padded prompts).
- `generate_text`: strings in and out through a tokenizer (`load_generation_tokenizer`, from
  data/tokenizers.py, the one tokenizer module).
- `SamplingParams`, `sample_next_token`: greedy, temperature, top-k, top-p.
"""

from .cache import GriffinInferenceCache
from .forward import decode_step, forward_with_cache
from .generate import generate, stream_generate
from .sampling import SamplingParams, sample_next_token
from .text import TextStream, generate_text
from ..data.tokenizers import GenerationTokenizer, load_generation_tokenizer

__all__ = [
    "GriffinInferenceCache",
    "decode_step",
    "forward_with_cache",
    "SamplingParams",
    "TextStream",
    "GenerationTokenizer",
    "generate",
    "generate_text",
    "load_generation_tokenizer",
    "sample_next_token",
    "stream_generate",
]
