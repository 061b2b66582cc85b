"""The lm-evaluation-harness model type `griffin-megatron`: a checkpoint evaluated as it is.

    import griffin_megatron.evaluation.lm_eval_model  # registers the model type
    lm_eval.simple_evaluate(model="griffin-megatron", model_args="load=CKPT", tasks=[...])

or `griffin-megatron lm-eval --load CKPT --tasks ...`. Tokenization follows lm-eval's own `hf`
model (a transformers tokenizer saved beside the checkpoint, its default special tokens, BOS as
the prefix of an empty context), so the two score the same requests on the same weights:

- loglikelihood: the left-padded batch of context + continuation, prefilled in chunks through
  the cache (no truncation: the recurrence has no context limit);
- loglikelihood_rolling: the whole document in one sequence, through the chunked path (one
  window however long the document is; the `hf` model agrees when its max_length holds it);
- generate_until: batched generation with the fixed-size cache, cut at the stop strings.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from megatron.core import parallel_state
from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

from ..errors import InputFileError
from ..generation.generate import generate, left_pad
from .chunked import chunked_logits, chunked_token_losses
from ..loading import load_model, model_tokenizer_dir

MODEL_NAME = "griffin-megatron"


def _full_vocab(logits: torch.Tensor) -> torch.Tensor:
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        logits = gather_from_tensor_model_parallel_region(logits)
    return logits


@register_model(MODEL_NAME)
class GriffinMegatronLM(TemplateLM):
    """Args (lm-eval `model_args`): load=CKPT or hf_dir=DIR; tokenizer=DIR (default: the one
    saved with the model); batch_size; chunk_tokens (prefill chunk); dtype (fp32 | bf16);
    tensor_parallel_size (default 1; every rank of a torchrun launch runs the same requests);
    local_attention (auto | flex | blocked: the local backend's attention kernel);
    max_length (left-truncate generation prompts to this many tokens; default: no limit)."""

    def __init__(self, load: Optional[str] = None, hf_dir: Optional[str] = None,
                 tokenizer: Optional[str] = None, batch_size=1, chunk_tokens: int = 1024,
                 dtype: str = "fp32", tensor_parallel_size: int = 1,
                 max_length: Optional[int] = None, max_gen_toks: int = 256, model=None,
                 local_attention: str = "auto", **_):
        super().__init__()
        if model is None:
            if (load is None) == (hf_dir is None):
                raise InputFileError("griffin-megatron needs exactly one of load=CKPT or hf_dir=DIR in --model_args.")
            model = load_model(load, hf_dir, dtype, int(tensor_parallel_size),
                               local_attention=local_attention)
        self.model = model.eval()
        self.tokenizer = self._load_tokenizer(model_tokenizer_dir(load, hf_dir, tokenizer))
        self._batch_size = int(batch_size) if str(batch_size).isdigit() else 1
        self.chunk_tokens = int(chunk_tokens)
        self._max_length = None if max_length is None else int(max_length)
        self._max_gen_toks = int(max_gen_toks)

    @staticmethod
    def _load_tokenizer(directory):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    def tok_encode(self, string: str, add_special_tokens: Optional[bool] = None, **kwargs) -> List[int]:
        options = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        bos = self.tokenizer.decode(self.prefix_token_id)
        if add_special_tokens is None and bos and string.startswith(bos):
            options["add_special_tokens"] = False  # the string already holds its BOS
        return self.tokenizer.encode(string, **options)

    def tok_decode(self, tokens: List[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> List[Tuple[float, bool]]:
        results: List[Tuple[float, bool]] = []
        for first in range(0, len(requests), self._batch_size):
            batch = requests[first:first + self._batch_size]
            results.extend(self._score_batch([(ctx, cont) for _, ctx, cont in batch]))
            for (key, _, _), result in zip(batch, results[-len(batch):]):
                self.cache_hook.add_partial("loglikelihood", key, result)
        return results

    def _score_batch(self, pairs) -> List[Tuple[float, bool]]:
        """(log p(continuation | context), continuation is the greedy choice) per pair."""
        inputs = [(ctx + cont)[:-1] for ctx, cont in pairs]
        device = next(self.model.parameters()).device
        ids, positions = left_pad(inputs, device)  # rows end together: continuations at the right
        tail = max(len(cont) for _, cont in pairs)
        length = ids.shape[1]
        pieces = []
        for start, logits in chunked_logits(self.model, ids, positions, self.chunk_tokens):
            keep = max(length - tail - start, 0)
            if keep < logits.shape[1]:
                pieces.append(torch.log_softmax(_full_vocab(logits[:, keep:]).double(), dim=-1))
        log_probs = torch.cat(pieces, dim=1)  # [B, tail, V]
        results = []
        for row, (_, cont) in enumerate(pairs):
            row_log_probs = log_probs[row, tail - len(cont):]
            targets = torch.tensor(cont, device=row_log_probs.device)
            total = float(row_log_probs.gather(-1, targets[:, None]).sum())
            greedy = bool((row_log_probs.argmax(-1) == targets).all())
            results.append((total, greedy))
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> List[float]:
        results = []
        for request in requests:
            (string,) = request.args
            ids = torch.tensor([[self.prefix_token_id] + self.tok_encode(string)])
            positions = torch.arange(ids.shape[1])[None]
            total = -sum(float(losses.double().sum()) for _, losses in
                         chunked_token_losses(self.model, ids, positions, self.chunk_tokens))
            results.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return results

    def generate_until(self, requests, disable_tqdm: bool = False) -> List[str]:
        eos_text = self.tokenizer.decode([self.eot_token_id], skip_special_tokens=False)
        results: List[Optional[str]] = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            context, gen_kwargs = request.args
            groups.setdefault(repr(sorted(gen_kwargs.items())), []).append((index, context, gen_kwargs))
        for members in groups.values():
            gen_kwargs = normalize_gen_kwargs(dict(members[0][2]), self._max_gen_toks)
            until = handle_stop_sequences(gen_kwargs.pop("until", None), eos=eos_text)
            max_new = int(gen_kwargs.pop("max_gen_toks"))
            sampling = dict(temperature=float(gen_kwargs.get("temperature", 0.0) or 0.0),
                            top_k=int(gen_kwargs.get("top_k", 0) or 0),
                            top_p=float(gen_kwargs.get("top_p", 1.0) or 1.0))
            for first in range(0, len(members), self._batch_size):
                batch = members[first:first + self._batch_size]
                prompts = [self._prompt_ids(context, max_new) for _, context, _ in batch]
                outputs = generate(self.model, prompts, max_new_tokens=max_new,
                                   eos=self.eot_token_id, prefill_chunk_size=self.chunk_tokens,
                                   **sampling)
                for (index, context, kwargs), tokens in zip(batch, outputs):
                    text = postprocess_generated_text(self.tok_decode(tokens), until, None)
                    results[index] = text
                    self.cache_hook.add_partial("generate_until", (context, kwargs), text)
        return results

    def _prompt_ids(self, context: str, max_new: int) -> List[int]:
        ids = self.tok_encode(context)
        if self._max_length is not None:
            ids = ids[-(self._max_length - max_new):]
        return ids
