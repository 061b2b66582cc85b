"""griffin-megatron: Hawk and Griffin (De et al. 2024) as Megatron-Core models.

The public API is imported lazily, so that `griffin_megatron.ops` (the kernels) can be used
without importing Megatron-Core.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "GriffinConfig": "griffin_megatron.config",
    "GriffinConfigError": "griffin_megatron.config",
    "GriffinModel": "griffin_megatron.model",
    "get_preset": "griffin_megatron.presets",
    "preset_names": "griffin_megatron.presets",
    "count_parameters": "griffin_megatron.presets",
    "from_hf": "griffin_megatron.interop.hf",
    "to_hf": "griffin_megatron.interop.hf",
    "GriffinInferenceCache": "griffin_megatron.inference_cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'griffin_megatron' has no attribute {name!r}")
