"""The RG-LRU layer on a CPU: ours (gates + fused PyTorch scan) against HF RecurrentGemma's layer
(the same gates, then a Python loop over time that autograd records step by step).

Both layers hold identical weights and see the same input; rounds alternate between them so both
see the same load on a shared CPU. Forward + backward, float32.

    python benchmarks/rglru_layer_cpu.py [--T 2048 --B 2 --D 1024 --heads 8 --rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=2048)
    parser.add_argument("--B", type=int, default=2)
    parser.add_argument("--D", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from transformers import RecurrentGemmaConfig
    from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaRglru

    from griffin_megatron.config import GriffinConfig
    from griffin_megatron.modules.rglru import RGLRU
    from griffin_megatron.runtime import ensure_initialized

    ensure_initialized()
    T, B, D, H = args.T, args.B, args.D, args.heads
    hf = RecurrentGemmaRglru(
        RecurrentGemmaConfig(hidden_size=D, lru_width=D, num_attention_heads=H)
    )
    config = GriffinConfig(num_layers=1, hidden_size=D, num_attention_heads=H, lru_width=D,
                           block_pattern="R", use_cpu_initialization=True, rglru_backend="torch")
    ours = RGLRU(config, width=D, num_heads=H)
    with torch.no_grad():
        for name, param in ours.named_parameters():
            param.normal_(0, 0.5)
            getattr(hf, name).copy_(param)
    x = torch.randn(T, B, D)
    x_batch_first = x.transpose(0, 1).contiguous()
    position_ids = torch.arange(T).expand(B, T)

    def hf_step():
        hf.recurrent_states = None
        inp = x_batch_first.clone().requires_grad_()
        hf(inp, position_ids).sum().backward()
        return inp.grad

    def ours_step():
        inp = x.clone().requires_grad_()
        reset = (position_ids == 0).t()
        y, _ = ours(inp, reset=reset)
        y.sum().backward()
        return inp.grad

    grad_hf, grad_ours = hf_step(), ours_step()
    error = ((grad_ours - grad_hf.transpose(0, 1)).norm() / grad_hf.norm()).item()
    best = {"hf": float("inf"), "ours": float("inf")}
    for _ in range(args.rounds):
        for name, step in (("hf", hf_step), ("ours", ours_step)):
            start = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"RG-LRU layer forward+backward, T={T} B={B} D={D} heads={H}, float32, "
          f"{torch.get_num_threads()} threads")
    print(f"  HF RecurrentGemmaRglru (Python loop): {best['hf'] * 1e3:9.1f} ms")
    print(f"  griffin-megatron RGLRU (torch scan):  {best['ours'] * 1e3:9.1f} ms")
    print(f"  speed-up: {best['hf'] / best['ours']:.1f}x   input-gradient rel. difference: {error:.1e}")


if __name__ == "__main__":
    main()
