"""GriffinModel: Hawk or Griffin as a Megatron-Core GPTModel.

Everything GPTModel does is kept: vocab-parallel embedding and output layer (tied unless
config.share_embeddings_and_output_weights is False), the pipeline-stage split of the decoder,
the loss, sharded state dicts. On top of it:

- the embedding output is multiplied by sqrt(hidden_size) rounded to bfloat16;
- logits are soft-capped, cap * tanh(logits / cap), before the loss (elementwise, so it works
  on vocab-parallel logits);
- document boundaries (position ids restarting at 0, or Megatron packed sequences) become one
  `GriffinSequenceParams` that every layer receives, and rotary frequencies come from
  per-token positions so they restart with each document as HF's do;
- when the local backend's attention runs FlexAttention (`config.local_attention_impl`), that
  `GriffinSequenceParams` carries the forward's one BlockMask (`with_attention_mask`).

Generation (a cache, one token per step) does not go through this forward: see
griffin_megatron/generation/forward.py, which calls the same layers' `prefill` / `step`.

The two output transforms are forward hooks on GPTModel's own `embedding` and `output_layer`
modules: the parameters, their names and their sharding stay exactly GPTModel's.
"""

from __future__ import annotations

from typing import Optional

import torch
from megatron.core import parallel_state
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.packed_seq_params import PackedSeqParams
from torch import Tensor

from .config import GriffinConfig
from .context_parallel.layout import check_context_parallel_layout
from .errors import ConfigError
from .layer_specs import get_griffin_block_spec
from .modules.flex_attention import check_local_attention_choice, choose_local_attention
from .modules.parallel_linear import column_parallel_step
from .sequence import (
    GriffinSequenceParams,
    build_sequence_params,
    rotary_frequencies,
    with_document_streams,
    with_flex_mask,
)


def _scale_embeddings_hook(multiplier: float):
    def hook(module, args, output):
        return output * multiplier

    return hook


def soft_cap_logits(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap), computed in fp32, returned in the logits' dtype."""
    return (cap * torch.tanh(logits.float() / cap)).to(logits.dtype)


def _soft_cap_logits_hook(cap: float):
    def hook(module, args, output):
        logits, bias = output
        return soft_cap_logits(logits, cap), bias

    return hook


class GriffinModel(GPTModel):
    """Hawk / Griffin language model.

    Args:
        config: the GriffinConfig.
        backend: "local" (PyTorch; CPU and GPU) or "te" (Transformer Engine).
        pre_process / post_process: whether this pipeline stage holds the embedding / the output
            layer (default: decided from Megatron's parallel state).
        vp_stage: virtual pipeline stage of this model chunk.
        parallel_output: keep logits split over tensor-parallel ranks (as GPTModel).
    """

    def __init__(
        self,
        config: GriffinConfig,
        backend: str = "local",
        pre_process: Optional[bool] = None,
        post_process: Optional[bool] = None,
        vp_stage: Optional[int] = None,
        parallel_output: bool = True,
        pg_collection=None,
    ):
        check_context_parallel_layout(config, backend)
        check_local_attention_choice(config.local_attention_impl, backend)
        if pre_process is None:
            pre_process = parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage)
        if post_process is None:
            post_process = parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage)
        pp_rank = parallel_state.get_pipeline_model_parallel_rank()
        block_spec = get_griffin_block_spec(config, backend, vp_stage=vp_stage, pp_rank=pp_rank)
        super().__init__(
            config=config,
            transformer_layer_spec=block_spec,
            vocab_size=config.vocab_size,
            max_sequence_length=config.seq_length,
            pre_process=pre_process,
            post_process=post_process,
            parallel_output=parallel_output,
            share_embeddings_and_output_weights=config.share_embeddings_and_output_weights,
            position_embedding_type="none",
            rotary_percent=config.rotary_percent,
            rotary_base=config.rotary_base,
            vp_stage=vp_stage,
            pg_collection=pg_collection,
        )
        self.backend = backend
        self.stage_has_attention = any(
            getattr(layer.self_attention, "core_attention", None) is not None
            for layer in self.decoder.layers
        )
        if self.pre_process and config.scale_embeddings:
            self.embedding.register_forward_hook(_scale_embeddings_hook(config.embedding_multiplier))
        if self.post_process and config.logits_soft_cap is not None:
            self.output_layer.register_forward_hook(_soft_cap_logits_hook(config.logits_soft_cap))

    def output_step(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The output layer for generation, [1, B, D] -> logits [1, B, V(/tp)]: what
        `output_layer` and its soft-cap hook return, through the one-token linear step
        (modules/parallel_linear.py) instead of Megatron's forward."""
        logits, _ = column_parallel_step(
            self.output_layer, hidden_states, self.shared_embedding_or_output_weight()
        )
        if self.config.logits_soft_cap is not None:
            logits = soft_cap_logits(logits, self.config.logits_soft_cap)
        return logits

    def _preprocess(self, input_ids, position_ids, decoder_input=None, inference_context=None,
                    packed_seq_params=None, padding_mask=None):
        outputs = list(
            super()._preprocess(
                input_ids,
                position_ids,
                decoder_input=decoder_input,
                inference_context=inference_context,
                packed_seq_params=packed_seq_params,
                padding_mask=padding_mask,
            )
        )
        if self.stage_has_attention and isinstance(packed_seq_params, GriffinSequenceParams):
            rotary_dim = int(self.config.kv_channels * self.config.rotary_percent)
            outputs[1] = rotary_frequencies(
                packed_seq_params.positions, rotary_dim, self.config.rotary_base
            )
        return tuple(outputs)

    def forward(
        self,
        input_ids: Optional[Tensor],
        position_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        decoder_input: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        inference_context=None,
        packed_seq_params: Optional[PackedSeqParams] = None,
        extra_block_kwargs: Optional[dict] = None,
        runtime_gather_output: Optional[bool] = None,
        *,
        inference_params=None,
        loss_mask: Optional[Tensor] = None,
        padding_mask: Optional[Tensor] = None,
        **gpt_model_kwargs,
    ) -> Tensor:
        """input_ids [B, T], position_ids [B, T] (restarting at 0 per document) -> logits
        [B, T, V(/tp)], or the per-token loss [B, T] when labels are given.

        To continue from a generation cache, use `griffin_megatron.generation.forward_with_cache`.
        gpt_model_kwargs: keywords that only some Megatron-Core releases' GPTModel.forward takes
            (0.19: output_processor, output_processor_context), passed on unchanged.
        """
        if attention_mask is not None:
            raise ConfigError(
                "GriffinModel takes document boundaries from position_ids (restarting at 0) or "
                "packed_seq_params, not from a dense attention mask; pass attention_mask=None "
                "(for Megatron datasets set create_attention_mask=False)."
            )
        if inference_context is not None or inference_params is not None:
            raise ConfigError(
                "GriffinModel does not use Megatron's inference contexts; generate with "
                "griffin_megatron.generation.generate, or run chunks through a "
                "GriffinInferenceCache with griffin_megatron.generation.forward_with_cache."
            )
        if self.config.context_parallel_size > 1 and not getattr(packed_seq_params, "context_parallel", None):
            raise ConfigError(
                "with context parallelism the model takes one shard of each sequence; cut the "
                "batch with griffin_megatron.context_parallel.shard_batch and pass the "
                "sequence params it returns as packed_seq_params."
            )
        batch, seq_len, device = self._batch_shape(input_ids, position_ids, decoder_input)
        seq = build_sequence_params(seq_len, batch, device, position_ids, packed_seq_params)
        if self.backend == "te" and self.stage_has_attention:
            seq = with_document_streams(seq)
        shard = seq.context_parallel
        if shard is not None:
            from .context_parallel.halo import halo_length

            seq = self.with_attention_mask(
                seq, device, halo_length(self.config.attention_window - 1, seq_len, shard))
        else:
            seq = self.with_attention_mask(seq, device)
        output = super().forward(
            input_ids,
            position_ids,
            None,
            decoder_input=decoder_input,
            labels=labels,
            packed_seq_params=seq,
            extra_block_kwargs=extra_block_kwargs,
            runtime_gather_output=runtime_gather_output,
            loss_mask=loss_mask,
            padding_mask=padding_mask,
            **gpt_model_kwargs,
        )
        return output

    def with_attention_mask(self, seq: GriffinSequenceParams, device: torch.device,
                            num_past: int = 0) -> GriffinSequenceParams:
        """seq with the FlexAttention mask of this forward when this stage's local attention
        runs FlexAttention on `device` (config.local_attention_impl; "auto" picks it on CUDA);
        num_past keys precede the queries (a context-parallel halo, a generation cache)."""
        if self.backend != "local" or not self.stage_has_attention:
            return seq
        impl, _ = choose_local_attention(self.config.local_attention_impl, torch.device(device))
        if impl != "flex":
            return seq
        return with_flex_mask(seq, self.config.attention_window, num_past)

    def _batch_shape(self, input_ids, position_ids, decoder_input):
        if input_ids is not None:
            return input_ids.shape[0], input_ids.shape[1], input_ids.device
        if position_ids is not None:
            return position_ids.shape[0], position_ids.shape[1], position_ids.device
        if decoder_input is not None:
            return decoder_input.shape[1], decoder_input.shape[0], decoder_input.device
        raise ConfigError(
            "GriffinModel.forward needs input_ids or position_ids (every pipeline stage uses "
            "them to find document boundaries)."
        )

    @property
    def layer_types(self) -> list:
        """'R' / 'A' of the layers held by this pipeline stage, in order."""
        return [self.config.layer_type(layer.layer_number - 1) for layer in self.decoder.layers]
