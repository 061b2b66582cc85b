"""Megatron Bridge's tensor-parallel HF -> Megatron conversion on a machine without CUDA.

`ReplicatedMapping.hf_to_megatron` (megatron/bridge/models/conversion/param_mapping.py, the
mapping of every norm weight and of any replicated tensor) moves the HF tensor to
`torch.cuda.current_device()` before broadcasting it over the tensor-parallel group whenever the
group has more than one rank. Without CUDA that call raises, so Bridge cannot convert at
tensor-parallel size > 1 on CPUs (gloo), although every other mapping broadcasts and scatters
on the device of the Megatron parameter. The fix broadcasts on that device, as the others do;
with CUDA nothing changes. The same fix as a source diff:
patches/megatron-bridge-0.6.2-replicated-mapping-device.patch; tests/bridge/test_bridge_compat.py
shows the unfixed method failing.

Scoped, not installed on import: `conversion_on_cpu()` is a block that applies the fix while it
runs, only without CUDA and only to the Bridge releases it was measured on.
"""

from __future__ import annotations

import contextlib
import functools
import re
from importlib import metadata
from typing import Iterator, Tuple

import torch

# [low, high) of the megatron-bridge releases whose ReplicatedMapping needs the fix (read:
# 0.6.2).
AFFECTED = ((0, 6), (0, 7))


def megatron_bridge_version() -> Tuple[int, int, int]:
    version = metadata.version("megatron-bridge")
    major, minor, patch = re.match(r"(\d+)\.(\d+)\.?(\d*)", version).groups()
    return int(major), int(minor), int(patch or 0)


def needs_fix() -> bool:
    """Whether this machine and Bridge release need the fix (no CUDA, an affected release)."""
    low, high = AFFECTED
    return not torch.cuda.is_available() and low <= megatron_bridge_version()[:2] < high


def _target_device(megatron_module: torch.nn.Module) -> torch.device:
    weight = getattr(megatron_module, "weight", None)
    if weight is None:  # the parameter may have another name
        weight = next(megatron_module.parameters())
    return weight.device


def _broadcast_on_the_module_device(original):
    @functools.wraps(original)
    def hf_to_megatron(self, hf_weights: torch.Tensor, megatron_module) -> torch.Tensor:
        if self.tp_size == 1:
            return original(self, hf_weights, megatron_module)
        hf_weights = hf_weights.to(device=_target_device(megatron_module))
        if self.tp_rank > 0:
            hf_weights = torch.empty_like(hf_weights)  # receives rank 0's tensor
        return self.broadcast_tensor_to_tp_ranks(hf_weights, src_rank=0)

    return hf_to_megatron


@contextlib.contextmanager
def conversion_on_cpu() -> Iterator[None]:
    """A block in which Bridge converts HF weights at tensor-parallel size > 1 without CUDA;
    does nothing on a CUDA machine or an unaffected Bridge release."""
    if not needs_fix():
        yield
        return
    from megatron.bridge.models.conversion.param_mapping import ReplicatedMapping

    original = ReplicatedMapping.hf_to_megatron
    ReplicatedMapping.hf_to_megatron = _broadcast_on_the_module_device(original)
    try:
        yield
    finally:
        ReplicatedMapping.hf_to_megatron = original
