"""Which schedule over time the RG-LRU kernels use, sequential or chunked, chosen from occupancy.

Both schedules are memory-bound, and neither has arithmetic to hide a load's latency behind its
own work: a program loads a tile, scans it, stores it, then loads the next. What hides latency
is other programs resident on the same SM, so a kernel streams at

    min(resident programs x bytes one program loads per tile, what saturates HBM)

(Little's law). Resident programs: SMs x blocks per SM (registers per thread and warps per
block decide it, `blocks_per_sm`), or fewer when the grid has fewer programs, averaged over the
waves. A schedule's cost is the sum over its kernels of bytes moved / that streaming rate.

- sequential: P = B * ceil(D / BLOCK_D) programs, each walking T / TILE_T tiles. Bytes per
  element (in input itemsizes): forward 3 reads + 1 write = 4, backward 4 reads + 3 writes = 7.
- chunked: a summary kernel and a tile kernel of P * T / TILE_T one-tile programs each, which
  fill every slot; the price is reading the inputs twice: forward 3 + 4, backward 2 + 7. The
  carry scan between them moves 3 / TILE_T of that in fp32 and is left out.

With the default candidates on 132 SMs (bf16, T = 2048), both passes go chunked for the 400M
(D = 2048) and 14B (D = 8192) micro-batches: the sequential forward fits one 16-warp block per
SM (74 registers), 12 KiB of loads in flight against the ~32 KiB HBM wants, and the sequential
backward three 4-warp blocks of 8 channels (133 registers), 12 KiB. Shared memory (at most
4 KiB per block, read from the compiled kernels) never limits the blocks. A single tile of time
(T <= 64) keeps the forward sequential. Not yet timed on a GPU: `benchmarks/rglru.py
--compare-schedules` measures both schedules.
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
    ("fwd", "sequential"): 74,
    ("fwd", "chunked"): 40,
    ("fwd_summary", "chunked"): 47,
    ("bwd", "sequential"): 133,
    ("bwd", "chunked"): 80,
    ("bwd_summary", "chunked"): 40,
}

# Hopper (sm_90) per-SM limits: 64K 32-bit registers, allocated per warp in units of 256;
# 64 resident warps; 32 resident blocks.
_REGISTERS_PER_SM = 65536
_REGISTER_UNIT_PER_WARP = 256
_MAX_WARPS_PER_SM = 64
_MAX_BLOCKS_PER_SM = 32

# Bytes HBM needs in flight per SM to stream at its peak (Little's law, bandwidth x latency):
# H200 4.8 TB/s x ~0.9 us of loaded DRAM latency / 132 SMs is ~32 KiB. An estimate from public
# figures, not a measurement.
BYTES_IN_FLIGHT_PER_SM = 32 * 1024
# Per kernel of each schedule: (kernel, bytes moved per element in input itemsizes, input
# tensors one program loads per tile), as listed in the module docstring.
_KERNELS = {
    "forward": {"sequential": (("fwd", 4, 3),),
                "chunked": (("fwd_summary", 3, 3), ("fwd", 4, 3))},
    "backward": {"sequential": (("bwd", 7, 4),),
                 "chunked": (("bwd_summary", 2, 2), ("bwd", 7, 4))},
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


def schedule_cost(pass_name: str, schedule: str, T: int, B: int, D: int, itemsize: int,
                  sms: int) -> float:
    """Relative time of a pass: bytes per element / bytes in flight, summed over the kernels."""
    cost = 0.0
    for kernel, bytes_per_element, loads in _KERNELS[pass_name][schedule]:
        candidate = CANDIDATES[_GROUP[kernel]][0]
        kernel_schedule = "chunked" if kernel.endswith("summary") else schedule
        blocks = blocks_per_sm(REGISTERS[(kernel, kernel_schedule)], candidate.num_warps)
        programs = B * math.ceil(D / candidate.block_d)
        if schedule == "chunked":
            programs *= math.ceil(T / TILE_T)
        tile_bytes = TILE_T * candidate.block_d * loads * itemsize
        in_flight = min(_resident(programs, sms * blocks) * tile_bytes,
                        sms * BYTES_IN_FLIGHT_PER_SM)
        cost += bytes_per_element * itemsize / in_flight
    return cost


def choose_schedule(T: int, B: int, D: int, itemsize: int, device: torch.device) -> Schedule:
    """The schedules `rglru_triton(chunked=None)` uses; logged once per choice and shape class."""
    if device.type != "cuda":
        # The interpreter runs programs one at a time: fewer, longer programs are faster there.
        return Schedule(forward_chunked=False, backward_chunked=False)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    chosen = {
        pass_name: schedule_cost(pass_name, "chunked", T, B, D, itemsize, sms)
        < schedule_cost(pass_name, "sequential", T, B, D, itemsize, sms)
        for pass_name in ("forward", "backward")
    }
    schedule = Schedule(forward_chunked=chosen["forward"], backward_chunked=chosen["backward"])
    if schedule not in _logged:
        _logged.add(schedule)
        logger.info("rglru triton: %s (first at T=%d, B=%d, D=%d on %d SMs)",
                    schedule, T, B, D, sms)
    return schedule


_logged: set = set()
