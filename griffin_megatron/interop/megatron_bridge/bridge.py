"""The Megatron Bridge bridge for HF `RecurrentGemmaForCausalLM` <-> `GriffinModel`.

Registered with Bridge when this module is imported (the decorator below): Bridge finds bridges
only in its own registry and has no plugin discovery, so `import
griffin_megatron.interop.megatron_bridge` is what makes `AutoBridge` know RecurrentGemma.
"""

from __future__ import annotations

import torch
from megatron.bridge.models.conversion.mapping_registry import MegatronMappingRegistry
from megatron.bridge.models.conversion.model_bridge import MegatronModelBridge

from ...model import GriffinModel
from ..hf_config import architecture_from_hf_config, hf_config_from_architecture
from .mappings import griffin_mapping_registry, register_module_types
from .provider import GriffinModelProvider

HF_ARCHITECTURE = "RecurrentGemmaForCausalLM"
HF_MODEL_TYPE = "recurrent_gemma"

register_module_types()


@MegatronModelBridge.register_bridge(
    source=HF_ARCHITECTURE,
    target=GriffinModel,
    provider=GriffinModelProvider,
    model_type=HF_MODEL_TYPE,
)
class RecurrentGemmaBridge(MegatronModelBridge):
    """HF RecurrentGemma <-> Hawk / Griffin, through the same config reader and tensor table as
    `from_hf` / `to_hf` (interop/hf_mapping.py)."""

    def provider_bridge(self, hf_pretrained) -> GriffinModelProvider:
        hf_config = hf_pretrained.config
        dtype = self.dtype_from_hf(hf_config, default=torch.float32)
        return GriffinModelProvider(
            **architecture_from_hf_config(hf_config),
            params_dtype=dtype,
            bf16=dtype == torch.bfloat16,
            fp16=dtype == torch.float16,
        )

    @classmethod
    def megatron_to_hf_config(cls, provider) -> dict:
        provider.finalize()  # derived fields (lru_width, rglru_num_heads) filled in
        return hf_config_from_architecture(provider).to_dict()

    def mapping_registry(self) -> MegatronMappingRegistry:
        return griffin_mapping_registry()

    def _get_tied_output_hf_name(self, task, mapping_registry):
        # HF RecurrentGemma never stores a tied lm_head (transformers drops tied weights when
        # saving and ties them when loading), while Bridge (model_bridge.py, 0.6) writes the
        # embedding a second time as lm_head.weight when it exports a tied model from a bare
        # config. An untied model's lm_head is its own tensor (OUTPUT_ROW) and is exported.
        return None
