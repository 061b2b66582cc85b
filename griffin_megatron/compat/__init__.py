"""Everything that depends on the Megatron-Core release, or on running it without CUDA.

Nothing here acts on import. The entry points (the command line, `runtime.ensure_initialized`,
the Megatron `pretrain()` script) call `install()` once; it applies exactly the pieces that the
installed release and machine need, each gated on the releases it was measured on or on the
absence of CUDA:

| piece | file | applies to |
|---|---|---|
| distributed-optimizer checkpoint fixes (upstream #5077, `KeyError: 'step'`, shared `step`) | `distributed_optimizer.py` | megatron-core 0.16-0.19 |
| RNG tracker, RNG-state functions, Megatron-scoped torch.cuda stand-ins | `cpu.py` `install` | no CUDA |
| Megatron's literal CUDA requests on the CPU, within a block | `cpu.py` `cuda_requests_on_cpu` | no CUDA |
| the `mlp` slot of layer specs | `specs.py` | form chosen by what the release's MLP offers |
| drop the uninformative "Unknown MLP type: ModuleSpec" warning per layer | `specs.py` | 0.16-0.17 |
| `megatron.training` on a CPU (initialize, groups and RNG seeding without devices, CUDA RNG state, device architecture) | `megatron_training_cpu.py`, entered by the `pretrain()` entry script | no CUDA, 0.18+ |
| `megatron.training` fixes (no `make` for compiled dataset helpers; `no_grad` in the dp-reshardable load) | `megatron_training_fixes.py`, same | 0.18-0.19 |
| Megatron Bridge's `ReplicatedMapping` broadcasting on `torch.cuda.current_device()` | `megatron_bridge.py`, a block (`conversion_on_cpu()`) entered around a Bridge conversion | no CUDA, megatron-bridge 0.6 |

Not installed but called where checkpoints are read: `common_state.py` reads the common state
that 0.19 writes inside the torch_dist files on releases that look only for `common.pt` (0.16),
or refuses the checkpoint in one sentence naming the way across.

The same upstream fixes as source patches (for a Megatron-LM tree, and for upstream): `patches/`.
"""

from __future__ import annotations

import logging
from typing import List

from . import common_state
from .versions import SUPPORTED, has_megatron_training, megatron_core_in, megatron_core_version

logger = logging.getLogger(__name__)

_applied: List[str] = []  # names of the pieces install() applied
_installed = False  # whether install() has run, also when it applied nothing


def install() -> List[str]:
    """Apply, once, every piece that this Megatron-Core release and machine need; returns their
    names. Idempotent."""
    global _installed
    if _installed:
        return applied()
    from . import cpu, distributed_optimizer, specs

    if not megatron_core_in(*SUPPORTED):
        version = ".".join(map(str, megatron_core_version()))
        logger.warning(
            "megatron-core %s is outside the releases griffin-megatron is tested on (0.16 to "
            "0.19); its version-specific fixes are left out.", version
        )
    if distributed_optimizer.install():
        _applied.append("distributed-optimizer checkpoint fixes")
    if cpu.install():
        _applied.append("CPU bridges")
    if specs.quiet_unknown_mlp_warning():
        _applied.append("quiet MLP-type warning")
    _installed = True
    return applied()


def applied() -> List[str]:
    """Names of the pieces `install()` applied in this process."""
    return list(_applied)


def cuda_requests_on_cpu():
    """A block inside which Megatron's literal CUDA requests are answered on the CPU (see
    cpu.cuda_requests_on_cpu); does nothing where CUDA is available."""
    from .cpu import cuda_requests_on_cpu as block

    return block()


__all__ = [
    "SUPPORTED",
    "applied",
    "cuda_requests_on_cpu",
    "has_megatron_training",
    "install",
    "megatron_core_in",
    "megatron_core_version",
]
