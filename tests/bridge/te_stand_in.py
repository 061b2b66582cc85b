"""Importing Megatron Bridge on a machine without Transformer Engine (tests only).

`import megatron.bridge` imports every bridge and PEFT module, and
megatron/bridge/peft/lora_layers.py (megatron-bridge 0.6.2, line 20) does
`import transformer_engine.pytorch as te` at module level and evaluates `te.ops.Sequential` in
annotations of its methods. Transformer Engine needs CUDA to install, so on the CPU test machines
Bridge cannot be imported at all, although HF <-> Megatron conversion never touches TE.

`import_bridge()` imports Bridge (and our bridge module) with a minimal stand-in for
`transformer_engine` in sys.modules, and removes it again right after:
- the stand-in offers `transformer_engine.pytorch.ops.Sequential` (the one name lora_layers needs)
  and raises ImportError for anything else, so every `try: import transformer_engine ...
  except ImportError` guard that reads an attribute still concludes "TE absent";
- Megatron-Core and megatron.training are imported (and TE's version probed) before the
  stand-in goes in, so their TE checks see the real absence;
- after the import, `import transformer_engine` fails again, as it should for the rest of the
  session (tests/te skip on that).
Nothing shipped does this: griffin_megatron.interop.megatron_bridge refuses to import without TE
with a sentence saying why.
"""

from __future__ import annotations

import importlib.util
import sys
import types

STAND_IN_MODULES = (
    "transformer_engine",
    "transformer_engine.pytorch",
    "transformer_engine.pytorch.ops",
)


def bridge_installed() -> bool:
    return importlib.util.find_spec("megatron.bridge") is not None


def _te_installed() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


class _Absent(types.ModuleType):
    """A module whose every missing attribute is an ImportError (what a guard expects)."""

    def __getattr__(self, name):
        if name in ("__path__", "__file__", "__all__", "__wrapped__"):
            raise AttributeError(name)
        raise ImportError(f"{self.__name__}.{name} is a test stand-in for Transformer Engine")


def _stand_in() -> dict:
    modules = {name: _Absent(name) for name in STAND_IN_MODULES}
    modules["transformer_engine.pytorch.ops"].Sequential = type("Sequential", (), {})
    modules["transformer_engine"].pytorch = modules["transformer_engine.pytorch"]
    modules["transformer_engine.pytorch"].ops = modules["transformer_engine.pytorch.ops"]
    return modules


def import_bridge():
    """griffin_megatron.interop.megatron_bridge, with Bridge imported as described above."""
    if "megatron.bridge" in sys.modules or _te_installed():
        import griffin_megatron.interop.megatron_bridge as module

        return module
    import megatron.core  # noqa: F401
    from megatron.core.utils import get_te_version

    import griffin_megatron.model  # noqa: F401

    if importlib.util.find_spec("megatron.training") is not None:
        import megatron.training  # noqa: F401
    get_te_version()  # cached as "not installed" before the stand-in exists
    sys.modules.update(_stand_in())
    try:
        import megatron.bridge  # noqa: F401
    finally:
        for name in STAND_IN_MODULES:
            sys.modules.pop(name, None)
    import griffin_megatron.interop.megatron_bridge as module

    return module
