"""Context parallelism on CPUs (gloo): memory per rank, step time and bytes exchanged per layer.

For a Griffin of tiny width (griffin-tiny: width 64, RG-LRU 64, 4 query heads of 16, one KV head,
window 16; 3 layers R R A, fp32, batch 1) at sequence lengths T and CP sizes 1, 2, 4, each
configuration runs in fresh processes (one per CP rank, gloo) and measures, for one forward +
backward pass of one sequence (no optimizer step, no DDP, so that the only communication is the
context-parallel exchange):

- peak resident memory per rank during the pass, above the resident memory before it
  (VmHWM after resetting it through /proc/self/clear_refs; the largest over ranks);
- the pass's wall time (after one warm-up pass on a short sequence);
- bytes each rank receives per layer and pass, counted on the tensors our exchanges receive:
  point-to-point halos exactly, collectives as the per-rank receive volume of a ring algorithm
  (all-gather: (CP - 1) inputs; all-reduce: 2 (CP - 1) / CP of the tensor).

The longest trainable T at each CP is the longest measured T whose peak stays within a per-rank
activation budget (--budget-mib), standing in for one device's memory. Megatron's ring-attention
traffic for a global-causal MQA Transformer of the same width (one KV head of 16) at the same T
is computed from its scheme (planning.context_parallel.ring_attention_bytes).

    python benchmarks/context_parallel.py --seq-lengths 8192 16384 32768 65536 --budget-mib 512
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VOCAB = 512


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class TrafficCounter:
    """Counts the bytes this rank receives in the context-parallel exchanges, by layer type."""

    def __init__(self, cp: int, group):
        self.cp, self.group = cp, group
        self.bytes = defaultdict(float)

    def install(self):
        from griffin_megatron.context_parallel import halo

        exchange = halo._exchange
        all_gather, all_reduce = dist.all_gather, dist.all_reduce

        def counted_exchange(shard, outgoing, incoming):
            for _, tensor in incoming:
                kind = "attention" if tensor.dim() == 4 else "recurrent"
                self.bytes[kind] += tensor.numel() * tensor.element_size()
            return exchange(shard, outgoing, incoming)

        # Only the collectives on the context-parallel group are ours (the loss's tensor-parallel
        # all-reduces run on a group of one).
        def counted_all_gather(outputs, tensor, group=None, **kwargs):
            if group is self.group:
                self.bytes["recurrent"] += (self.cp - 1) * tensor.numel() * tensor.element_size()
            return all_gather(outputs, tensor, group=group, **kwargs)

        def counted_all_reduce(tensor, *args, group=None, **kwargs):
            if group is self.group:
                size = tensor.numel() * tensor.element_size()
                self.bytes["recurrent"] += 2 * (self.cp - 1) / self.cp * size
            return all_reduce(tensor, *args, group=group, **kwargs)

        halo._exchange = counted_exchange
        dist.all_gather, dist.all_reduce = counted_all_gather, counted_all_reduce


def _worker(rank, cp, seq_length, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(cp), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=3600))
    from griffin_megatron import context_parallel
    from griffin_megatron.model import GriffinModel
    from griffin_megatron.presets import get_preset

    context_parallel.ensure_initialized(context_parallel_size=cp)
    config = get_preset("griffin-tiny", num_layers=3, seq_length=seq_length, vocab_size=VOCAB,
                        context_parallel_size=cp, use_cpu_initialization=True,
                        rglru_backend="torch")
    torch.manual_seed(0)
    model = GriffinModel(config, pre_process=True, post_process=True)
    generator = torch.Generator().manual_seed(1)
    batch = dict(tokens=torch.randint(0, VOCAB, (1, seq_length), generator=generator),
                 labels=torch.randint(0, VOCAB, (1, seq_length), generator=generator),
                 position_ids=torch.arange(seq_length).unsqueeze(0))
    shard = context_parallel.current_shard()

    def step(length):
        whole = {key: value[:, :length] for key, value in batch.items()}
        if shard is None:
            local, seq = whole, None
        else:
            local, seq = context_parallel.shard_batch(whole, shard)
        loss = model(local["tokens"], local["position_ids"], labels=local["labels"],
                     packed_seq_params=seq).float().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    counter = TrafficCounter(cp, shard.group if shard is not None else None)
    if cp > 1:
        counter.install()
    step(256 * cp)  # warm-up on a short sequence (first-call costs out of the timing)
    counter.bytes.clear()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    before = _status_kib("VmRSS")
    dist.barrier()
    start = time.perf_counter()
    step(seq_length)
    dist.barrier()
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    layers = {"recurrent": config.layer_types.count("R"), "attention": config.layer_types.count("A")}
    result = dict(rank=rank, seconds=seconds, peak_mib=(peak - before) / 1024,
                  traffic={k: counter.bytes[k] / layers[k] for k in layers if layers[k]})
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def measure(cp: int, seq_length: int) -> dict:
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_worker, args=(cp, seq_length, _free_port(), out_dir), nprocs=cp,
                           start_method="spawn", join=True)
        ranks = [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(cp)]
    return dict(
        cp=cp, seq_length=seq_length,
        seconds=max(r["seconds"] for r in ranks),
        peak_mib=max(r["peak_mib"] for r in ranks),
        traffic_kib={k: max(r["traffic"].get(k, 0) for r in ranks) / 1024 for k in ranks[0]["traffic"]},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lengths", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    parser.add_argument("--cp-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--budget-mib", type=float, default=512.0,
                        help="per-rank activation budget that defines 'trainable'")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    from griffin_megatron.planning.context_parallel import ring_attention_bytes

    rows = []
    for cp in args.cp_sizes:
        for seq_length in args.seq_lengths:
            row = measure(cp, seq_length)
            row["ring_attention_kib"] = ring_attention_bytes(seq_length, 1, 1, 16, cp, 4) / 1024
            row["fits"] = row["peak_mib"] <= args.budget_mib
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not row["fits"]:
                break  # longer sequences need even more memory per rank
    print()
    print("| CP | T | peak MiB / rank | fwd+bwd s | recurrent KiB / layer | attention KiB / layer "
          "| ring attention KiB / layer |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["traffic_kib"]
        print(f"| {r['cp']} | {r['seq_length']:,} | {r['peak_mib']:.0f}{'' if r['fits'] else ' (over)'} "
              f"| {r['seconds']:.2f} | {t.get('recurrent', 0):.1f} | {t.get('attention', 0):.1f} "
              f"| {r['ring_attention_kib'] if r['cp'] > 1 else 0:,.0f} |")
    print()
    for cp in args.cp_sizes:
        fitting = [r["seq_length"] for r in rows if r["cp"] == cp and r["fits"]]
        print(f"CP {cp}: longest measured T within {args.budget_mib:g} MiB per rank: "
              f"{max(fitting) if fitting else 'none'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
