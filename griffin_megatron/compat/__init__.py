"""Everything that depends on the Megatron-Core release, or on running it without CUDA.

Nothing here acts on import, and library calls (`count_parameters`, `from_hf`,
`build_model_chunks`, checkpoint save and load) leave torch and Megatron as they found them:
each piece a Megatron call needs is a block around that call, restored on exit, as
`megatron_training_cpu.patched()` does. Only two things outlive a call. `install()`, called
once by the entry points (the command line's `main`, Megatron-LM's `pretrain()` entry, the test
workers), sets the process's logging (a version warning, one uninformative Megatron warning
dropped). And without CUDA, Megatron's own RNG tracker, a process global that Megatron creates
when it is seeded and its layers use for as long as the model lives, is created as a CPU one
(`model_parallel_manual_seed`, called where the process groups are seeded).

| piece | file | where | applies to |
|---|---|---|---|
| distributed-optimizer checkpoint fixes (upstream #5077, `KeyError: 'step'`, shared `step`) | `distributed_optimizer.py` `fixed()` | a block around checkpoint save and load, and around Megatron-LM's `pretrain()` | megatron-core 0.16-0.19 |
| torch.cuda stand-ins for Megatron's code, recompute's RNG-state functions on the CPU generator, Megatron's literal CUDA requests on the CPU | `cpu.py` `cuda_requests_on_cpu()` | a block around DDP and optimizer construction, checkpoint save and load; the training loops and test workers around their run | no CUDA |
| the same without the literal requests (no cost per torch call), for Megatron's tensor-parallel forward | `cpu.py` `cuda_stand_ins_on_cpu()` | a block around each command of the command line | no CUDA |
| Megatron's RNG tracker on CPU generator states | `cpu.py` `model_parallel_manual_seed` | process-wide (Megatron's own global), created where the groups are seeded | no CUDA |
| the `mlp` slot of layer specs | `specs.py` | built into each spec | form chosen by what the release's MLP offers |
| drop the uninformative "Unknown MLP type: ModuleSpec" warning per layer | `specs.py` | `install()` (a logging filter) | 0.16-0.17 |
| `megatron.training` on a CPU (initialize, groups and RNG seeding without devices, CUDA RNG state, device architecture) | `megatron_training_cpu.py` | a block entered by the `pretrain()` entry | no CUDA, 0.18+ |
| `megatron.training` fixes (no `make` for compiled dataset helpers; `no_grad` in the dp-reshardable load) | `megatron_training_fixes.py` | same | 0.18-0.19 |
| Megatron Bridge's `ReplicatedMapping` broadcasting on `torch.cuda.current_device()` | `megatron_bridge.py` `conversion_on_cpu()` | a block around a Bridge conversion | no CUDA, megatron-bridge 0.6 |

Not a patch but called where checkpoints are read: `common_state.py` reads the common state
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
    """Set up this process's logging for the installed Megatron-Core, once; returns the names
    of the pieces applied. Called by the entry points only. Idempotent."""
    global _installed
    if _installed:
        return applied()
    from . import specs

    if not megatron_core_in(*SUPPORTED):
        version = ".".join(map(str, megatron_core_version()))
        logger.warning(
            "megatron-core %s is outside the releases griffin-megatron is tested on (0.16 to "
            "0.19); its version-specific fixes are left out.", version
        )
    if specs.quiet_unknown_mlp_warning():
        _applied.append("quiet MLP-type warning")
    _installed = True
    return applied()


def applied() -> List[str]:
    """Names of the pieces `install()` applied in this process."""
    return list(_applied)


def cuda_requests_on_cpu():
    """A block inside which Megatron's CUDA requests are answered on the CPU, restored on exit
    (see cpu.cuda_requests_on_cpu); does nothing where CUDA is available."""
    from .cpu import cuda_requests_on_cpu as block

    return block()


def cuda_stand_ins_on_cpu():
    """The same block without the torch-function mode (see cpu.cuda_stand_ins_on_cpu)."""
    from .cpu import cuda_stand_ins_on_cpu as block

    return block()


def distributed_optimizer_fixes():
    """A block with the distributed-optimizer checkpoint fixes this release needs, restored on
    exit (see distributed_optimizer.fixed)."""
    from .distributed_optimizer import fixed

    return fixed()


def model_parallel_manual_seed(seed: int) -> None:
    """Megatron's model-parallel seeding, with a CPU RNG tracker without CUDA (see
    cpu.model_parallel_manual_seed)."""
    from .cpu import model_parallel_manual_seed as seed_tracker

    seed_tracker(seed)


__all__ = [
    "SUPPORTED",
    "applied",
    "cuda_requests_on_cpu",
    "cuda_stand_ins_on_cpu",
    "distributed_optimizer_fixes",
    "has_megatron_training",
    "install",
    "megatron_core_in",
    "megatron_core_version",
    "model_parallel_manual_seed",
]
