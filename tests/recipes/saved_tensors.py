"""Measure what autograd keeps for backward: the storages behind every saved tensor.

`saved_bytes_by_part` runs one forward pass of a GriffinModel with labels (the loss included)
under `torch.autograd.graph.saved_tensors_hooks` and adds up the bytes of the distinct storages
that saved tensors live in, excluding parameters, split into the part before the first layer,
each layer, and the part after the last layer. A storage is counted in the first part that saves
it (a view saved twice, or a tensor saved by two ops, is one allocation).
"""

from __future__ import annotations

from typing import Dict, List

import torch


def saved_bytes_by_part(model, input_ids, position_ids) -> Dict[str, object]:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    records: List[tuple] = []
    boundaries: List[int] = []

    def pack(tensor):
        storage = tensor.untyped_storage()
        records.append((storage.data_ptr(), storage.nbytes()))
        return tensor

    hooks = []
    for layer in model.decoder.layers:
        hooks.append(layer.register_forward_pre_hook(lambda *_: boundaries.append(len(records))))
    hooks.append(model.decoder.layers[-1].register_forward_hook(
        lambda *_: boundaries.append(len(records))))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = model(input_ids, position_ids, labels=input_ids)
    finally:
        for hook in hooks:
            hook.remove()

    seen = set()

    def part(lo, hi):
        total = 0
        for pointer, nbytes in records[lo:hi]:
            if pointer in params or pointer in seen:
                continue
            seen.add(pointer)
            total += nbytes
        return total

    before = part(0, boundaries[0])
    layers = [part(boundaries[i], boundaries[i + 1]) for i in range(len(boundaries) - 1)]
    after = part(boundaries[-1], len(records))
    return {"before": before, "layers": layers, "after": after, "loss": loss}
