"""Which schedule over time the RG-LRU kernels use, sequential or chunked, chosen from occupancy.

Both schedules are memory-bound, and neither has enough arithmetic to hide a load's latency
behind its own work: a program loads a tile, scans it, stores it, then loads the next. What
hides latency is other programs resident on the same SM, so throughput grows with the number
of resident programs until HBM saturates. The model here: a kernel's time is its bytes divided
by the programs it keeps resident on average, summed over the kernels of a schedule.

- sequential: P = B * ceil(D / BLOCK_D) programs, each walking T / TILE_T tiles. At most
  SMs * blocks_per_SM run at once (registers and warps decide blocks_per_SM), so it keeps
  P / waves resident, with waves = ceil(P / slots). Bytes per element: forward 3 reads + 1
  write = 4, backward 4 reads + 3 writes = 7 (in units of the input's itemsize).
- chunked: a summary kernel and a tile kernel, each P * T / TILE_T programs of one tile, which
  fill every slot for any training shape; the cost is reading the inputs twice: forward
  3 + 4 = 7, backward 2 + 7 = 9. The carry scan between them moves 3 / TILE_T of that in fp32
  and is left out.

So the sequential schedule is chosen when B * D is large enough that its resident programs,
weighed by its smaller byte count, match the chunked ones: on 132 SMs with two resident
blocks per SM, a 14B micro-batch (D = 8192, B = 2: 512 programs of BLOCK_D 32) is about even,
a 400M one (D = 2048, B = 2: 128 programs, half of the 264 slots) goes chunked. The register
counts come from `REGISTERS`, which benchmarks/rglru_compile_check.py checks against ptxas. Not
yet timed on a GPU: `benchmarks/rglru.py --compare-schedules` measures both schedules.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from .launch import CANDIDATES
from .triton_kernels import TILE_T

logger = logging.getLogger(__name__)

# Registers per thread of each kernel's default candidate on sm_90 as launched (with the
# launcher's divisibility hints), the largest over triton 3.6.0, 3.7.1 and 3.9.0, bf16 and fp32.
# benchmarks/rglru_compile_check.py fails when a default candidate needs more.
REGISTERS = {
    ("fwd", "sequential"): 255,
    ("fwd", "chunked"): 255,
    ("fwd_summary", "chunked"): 255,
    ("bwd", "sequential"): 255,
    ("bwd", "chunked"): 255,
    ("bwd_summary", "chunked"): 255,
}

# Hopper (sm_90) per-SM limits: 64K 32-bit registers, allocated per warp in units of 256;
# 64 resident warps; 32 resident blocks.
_REGISTERS_PER_SM = 65536
_REGISTER_UNIT_PER_WARP = 256
_MAX_WARPS_PER_SM = 64
_MAX_BLOCKS_PER_SM = 32

# Bytes per element (in input itemsizes) of each kernel, as listed in the module docstring.
_BYTES = {
    "forward": {"sequential": (("fwd", 4),), "chunked": (("fwd_summary", 3), ("fwd", 4))},
    "backward": {"sequential": (("bwd", 7),), "chunked": (("bwd_summary", 2), ("bwd", 7))},
}
_GROUP = {"fwd": "fwd", "fwd_summary": "fwd", "bwd_summary": "fwd", "bwd": "bwd"}


@dataclass(frozen=True)
class Schedule:
    """The schedule of each pass; the backward needs only the forward's tile checkpoints, which
    both forward schedules write, so the two are chosen independently."""

    forward_chunked: bool
    backward_chunked: bool


def blocks_per_sm(registers: int, num_warps: int) -> int:
    """Resident blocks per sm_90 SM allowed by registers per thread and warps per block."""
    per_warp = math.ceil(registers * 32 / _REGISTER_UNIT_PER_WARP) * _REGISTER_UNIT_PER_WARP
    by_registers = _REGISTERS_PER_SM // (per_warp * num_warps)
    return min(by_registers, _MAX_WARPS_PER_SM // num_warps, _MAX_BLOCKS_PER_SM)


def _resident(programs: int, slots: int) -> float:
    """Programs resident on average over the waves it takes to run them all."""
    return programs / math.ceil(programs / slots)


def schedule_cost(pass_name: str, schedule: str, T: int, B: int, D: int, sms: int) -> float:
    """Bytes per element divided by average resident programs, summed over the kernels."""
    cost = 0.0
    for kernel, bytes_per_element in _BYTES[pass_name][schedule]:
        candidate = CANDIDATES[_GROUP[kernel]][0]
        kernel_schedule = "chunked" if kernel.endswith("summary") else schedule
        blocks = blocks_per_sm(REGISTERS[(kernel, kernel_schedule)], candidate.num_warps)
        programs = B * math.ceil(D / candidate.block_d)
        if schedule == "chunked":
            programs *= math.ceil(T / TILE_T)
        cost += bytes_per_element / _resident(programs, sms * blocks)
    return cost


def choose_schedule(T: int, B: int, D: int, device: torch.device) -> Schedule:
    """The schedules `rglru_triton(chunked=None)` uses; logged once per choice and shape class."""
    if device.type != "cuda":
        # The interpreter runs programs one at a time: fewer, longer programs are faster there.
        return Schedule(forward_chunked=False, backward_chunked=False)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    chosen = {
        pass_name: schedule_cost(pass_name, "chunked", T, B, D, sms)
        < schedule_cost(pass_name, "sequential", T, B, D, sms)
        for pass_name in ("forward", "backward")
    }
    schedule = Schedule(forward_chunked=chosen["forward"], backward_chunked=chosen["backward"])
    if schedule not in _logged:
        _logged.add(schedule)
        logger.info("rglru triton: %s (first at T=%d, B=%d, D=%d on %d SMs)",
                    schedule, T, B, D, sms)
    return schedule


_logged: set = set()
