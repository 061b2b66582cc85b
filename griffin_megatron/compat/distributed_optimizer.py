"""Three fixes for the distributed optimizer's checkpoints of Megatron-Core 0.16 to 0.19, in-process.

All concern the `fully_reshardable` format, the one that lets optimizer state move between
tensor, pipeline and data-parallel layouts (checkpoint/distributed.py uses it).

1. Saving reads parameters past the first gradient bucket at the wrong offsets (upstream
   NVIDIA/Megatron-LM#5077, merged after 0.16.1). `get_parameter_state_dp_zero` packs the
   gathered state bucket by bucket with each bucket's end padding stripped, while
   `sharded_param_state_fully_reshardable` slices it with buffer offsets that include that
   padding; the overshoot is zero-filled with a warning. A buffer has several buckets as soon as
   the tied embedding sits on a pipeline stage (it gets a bucket of its own) or `bucket_size`
   splits it. The fix lays the packed state back out in buffer coordinates (padding re-inserted)
   while that function slices it.
2. With PyTorch's Adam (no Transformer Engine / Apex), loading fails with `KeyError: 'step'`:
   `load_state_dict` restores the step from the parameter groups, then
   `load_parameter_state_from_fully_reshardable` hands `_set_main_param_and_optimizer_states`
   each parameter's tensors without `step` (on purpose), and that method copies every key of the
   live state, `step` included. The fix leaves `step` out of that copy when it was not given.
3. Also with PyTorch's Adam, `load_state_dict` gives every parameter the same `step` tensor
   object, and Adam increments each parameter's step in place: after resuming, the step grows by
   the number of parameters per iteration and the bias corrections are wrong (a resumed run
   diverges from the uninterrupted one). The fix gives each parameter its own copy.

All three were measured present in 0.16.1, 0.17.1, 0.18.2 and 0.19.2, so `fixed()` applies them
to releases in [0.16, 0.20) only: a later release gets Megatron-Core's own methods. They are
scoped, not installed for the process: `fixed()` is a block, entered around a checkpoint's save
and load (checkpoint/distributed.py) and around Megatron-LM's `pretrain()` run, that puts the
fixed methods on DistributedOptimizer and Megatron-Core's own back on exit.
tests/parallel/test_compat_distributed_optimizer.py shows each unfixed method still failing on
the installed release, so a fix whose test starts failing there can be dropped. The same fixes
as source patches, for a Megatron-LM tree: patches/megatron-core-*-distopt-*.patch.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
from .versions import megatron_core_in

AFFECTED_RELEASES = ((0, 16), (0, 20))  # measured in 0.16.1, 0.17.1, 0.18.2, 0.19.2
STATE_KEYS = ("param", "exp_avg", "exp_avg_sq")

ORIGINAL = {
    "sharded_param_state_fully_reshardable": DistributedOptimizer.sharded_param_state_fully_reshardable,
    "_set_main_param_and_optimizer_states": DistributedOptimizer._set_main_param_and_optimizer_states,
    "load_state_dict": DistributedOptimizer.load_state_dict,
}


def _in_buffer_coordinates(packed: torch.Tensor, buffer) -> torch.Tensor:
    """[numel_unpadded] state packed bucket by bucket -> [numel] laid out like the buffer."""
    out = packed.new_zeros(buffer.numel)
    offset = 0
    for (start, _), bucket in zip(buffer.bucket_indices, buffer.buckets):
        length = bucket.numel_unpadded
        out[start : start + length] = packed[offset : offset + length]
        offset += length
    return out


@functools.wraps(ORIGINAL["sharded_param_state_fully_reshardable"])
def sharded_param_state_fully_reshardable(self, *args, **kwargs):
    gather = self.get_parameter_state_dp_zero

    def gather_in_buffer_coordinates(*gather_args, **gather_kwargs):
        state = gather(*gather_args, **gather_kwargs)
        if state is None:
            return None
        for gbuf_idx, buffer in enumerate(self.buffers):
            for world_tensors in state[gbuf_idx].values():
                for key in STATE_KEYS:
                    # Already in buffer coordinates where the release (or a patched source
                    # tree) lays the state out itself: then the packed size is the buffer's.
                    if key in world_tensors and world_tensors[key].numel() != buffer.numel:
                        world_tensors[key] = _in_buffer_coordinates(world_tensors[key], buffer)
        return state

    self.get_parameter_state_dp_zero = gather_in_buffer_coordinates
    try:
        return ORIGINAL["sharded_param_state_fully_reshardable"](self, *args, **kwargs)
    finally:
        del self.get_parameter_state_dp_zero  # back to the class's method


@functools.wraps(ORIGINAL["_set_main_param_and_optimizer_states"])
def _set_main_param_and_optimizer_states(self, model_param, tensors):
    original = ORIGINAL["_set_main_param_and_optimizer_states"]
    if "step" in tensors or self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
        return original(self, model_param, tensors)
    group_index, group_order = self.model_param_group_index_map[model_param]
    main_param = self.optimizer.param_groups[group_index]["params"][group_order]
    state = self.optimizer.state[main_param]
    step = state.pop("step", None)  # already restored from the parameter groups
    try:
        return original(self, model_param, tensors)
    finally:
        if step is not None:
            state["step"] = step


@functools.wraps(ORIGINAL["load_state_dict"])
def load_state_dict(self, state_dict):
    ORIGINAL["load_state_dict"](self, state_dict)
    for state in self.optimizer.state.values():
        step = state.get("step")
        if isinstance(step, torch.Tensor):
            state["step"] = step.clone()


FIXED = {
    "sharded_param_state_fully_reshardable": sharded_param_state_fully_reshardable,
    "_set_main_param_and_optimizer_states": _set_main_param_and_optimizer_states,
    "load_state_dict": load_state_dict,
}


def needed() -> bool:
    """Whether this megatron-core has the three bugs."""
    return megatron_core_in(*AFFECTED_RELEASES)


@contextlib.contextmanager
def fixed() -> Iterator[bool]:
    """DistributedOptimizer with the fixes for the block, where this megatron-core needs them
    (yields whether they are on); the methods it had before come back on exit. Re-entrant."""
    if not needed():
        yield False
        return
    own = vars(DistributedOptimizer)
    before = {name: own[name] for name in FIXED if name in own}  # not inherited ones
    for name, method in FIXED.items():
        setattr(DistributedOptimizer, name, method)
    try:
        yield True
    finally:
        for name in FIXED:
            if name in before:
                setattr(DistributedOptimizer, name, before[name])
            else:
                delattr(DistributedOptimizer, name)
