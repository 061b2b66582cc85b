"""Hawk and Griffin in NVIDIA Megatron Bridge (`megatron-bridge`, tested with 0.6.2).

Importing this package registers the bridge for HF `RecurrentGemmaForCausalLM` with Bridge.
Bridge has no plugin discovery (it knows the bridges its own modules register on import), so
this import is required before Bridge's API can see RecurrentGemma; it is the one place where
importing a griffin_megatron module changes another package's state, because Bridge offers no
other way. Then Bridge's own API works as for its built-in models:

    import griffin_megatron.interop.megatron_bridge  # registers the bridge
    from megatron.bridge import AutoBridge

    bridge = AutoBridge.from_hf_pretrained("path/to/recurrentgemma")
    provider = bridge.to_megatron_provider()          # a GriffinModelProvider
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    bridge.save_hf_pretrained(model, "out/hf")

`recipes` has Bridge pretraining recipes (functions returning a ConfigContainer) for the paper's
Hawk and Griffin sizes and RecurrentGemma, made from the YAML recipes of griffin_megatron.recipes.
Without a GPU, converting at tensor-parallel size > 1 needs
`griffin_megatron.compat.megatron_bridge.conversion_on_cpu()` around it (see there).
"""

from __future__ import annotations

from ...errors import MissingDependencyError

try:
    import megatron.bridge  # noqa: F401
except ModuleNotFoundError as error:
    missing = error.name or ""
    if missing.startswith("transformer_engine"):
        raise MissingDependencyError(
            "Megatron Bridge imports NVIDIA Transformer Engine when it is imported "
            "(megatron/bridge/peft/lora_layers.py), and Transformer Engine is not installed; "
            "use Bridge on a CUDA machine with Transformer Engine (a NeMo or Megatron Bridge "
            "container has both)."
        ) from error
    raise MissingDependencyError(
        f"griffin_megatron.interop.megatron_bridge needs Megatron Bridge and its dependencies, "
        f"but {missing!r} is not installed; install them with `pip install --no-deps "
        "megatron-bridge==0.6.2` and `pip install 'griffin-megatron[bridge]'` (Python >= "
        "3.12), or work in a NeMo / Megatron Bridge container."
    ) from error

from .bridge import HF_ARCHITECTURE, RecurrentGemmaBridge  # noqa: E402  (registers the bridge)
from .provider import GriffinModelProvider  # noqa: E402

__all__ = ["HF_ARCHITECTURE", "GriffinModelProvider", "RecurrentGemmaBridge"]
