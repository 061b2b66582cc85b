"""griffin-megatron: Hawk and Griffin (De et al. 2024) as Megatron-Core models.

The public API is imported on first use, so `import griffin_megatron.ops.rglru` (a pure PyTorch
op) does not pull in Megatron-Core or transformers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it
_EXPORTS = {
    "GriffinConfig": "config",
    "GriffinConfigError": "config",
    "GriffinModel": "model",
    "GriffinInferenceCache": "generation.cache",
    "forward_with_cache": "generation",
    "get_preset": "presets",
    "preset_names": "presets",
    "count_parameters": "presets",
    "from_hf": "interop.hf",
    "to_hf": "interop.hf",
    "generate": "generation",
    "generate_text": "generation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'griffin_megatron' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
