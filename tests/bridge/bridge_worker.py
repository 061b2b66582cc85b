"""What each rank runs in the Bridge tests (launched by tests/parallel/harness.launch)."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from tests.bridge.te_stand_in import import_bridge


def _bridge_model(bridge, tp: int, load_weights: bool = True, **fields):
    """(provider, model chunks) of this rank, built by Bridge's own provider route; `fields`
    set on the provider first."""
    provider = bridge.to_megatron_provider(load_weights=load_weights)
    provider.tensor_model_parallel_size = tp
    for name, value in fields.items():
        setattr(provider, name, value)
    return provider, provider.provide_distributed_model(wrap_with_ddp=False,
                                                        use_cpu_initialization=True)


def _full_logits(model, input_ids, position_ids) -> torch.Tensor:
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    with torch.no_grad():
        logits = model.eval()(input_ids, position_ids)  # [B, T, V / tp]
    return gather_from_tensor_model_parallel_region(logits)


def round_trips(cases: List[Tuple[str, str, str]], tp: int, input_ids, position_ids) -> Dict:
    """For each (name, HF dir, output dir): AutoBridge HF -> Megatron (logits of the given
    tokens, gathered) -> save_hf_pretrained. Also the models Bridge lists."""
    import_bridge()
    from megatron.bridge import AutoBridge

    from griffin_megatron.compat.megatron_bridge import conversion_on_cpu
    from tests.parallel.harness import use_layout

    use_layout({"tp": tp})
    results = {"supported": AutoBridge.list_supported_models()}
    with conversion_on_cpu():
        for name, hf_dir, out_dir in cases:
            bridge = AutoBridge.from_hf_pretrained(hf_dir)
            provider, model = _bridge_model(bridge, tp)
            results[name] = dict(
                logits=_full_logits(model[0], input_ids, position_ids),
                provider=type(provider).__name__,
                model=type(model[0]).__name__,
            )
            bridge.save_hf_pretrained(model, out_dir, show_progress=False)
    return results


def replicated_mapping_broadcasts() -> Dict[str, Optional[str]]:
    """Bridge's ReplicatedMapping.hf_to_megatron of a norm weight over this tensor-parallel
    group, without and with griffin_megatron's fix: for each, the error it raised, or None when
    every rank received rank 0's tensor; and whether the fix was undone after its block."""
    import_bridge()
    from megatron.bridge.models.conversion.param_mapping import ReplicatedMapping

    from griffin_megatron.compat.megatron_bridge import conversion_on_cpu
    from tests.parallel.harness import use_layout

    use_layout({"tp": torch.distributed.get_world_size()})
    rank = torch.distributed.get_rank()
    original = ReplicatedMapping.hf_to_megatron

    def broadcast() -> Optional[str]:
        mapping = ReplicatedMapping("decoder.final_layernorm.weight", "model.final_norm.weight")
        try:
            received = mapping.hf_to_megatron(torch.full((8,), rank + 1.0), torch.nn.LayerNorm(8))
        except Exception as error:  # reported to the test, which expects it without the fix
            return f"{type(error).__name__}: {error}"
        return None if torch.equal(received, torch.ones(8)) else f"rank {rank} got {received}"

    unfixed = broadcast()
    with conversion_on_cpu():
        fixed = broadcast()
    return dict(unfixed=unfixed, fixed=fixed,
                restored=ReplicatedMapping.hf_to_megatron is original)


def export_training_checkpoint(checkpoint: str, out_dir: str) -> List[str]:
    """A `griffin-megatron train` checkpoint opened through Bridge (a provider made from the
    checkpoint's architecture as an HF config, our loader filling its model) and exported with
    Bridge's save_hf_pretrained. Returns the provider's and model's class names."""
    import_bridge()
    from megatron.bridge import AutoBridge

    from griffin_megatron.checkpoint.model import load_model_checkpoint
    from griffin_megatron.checkpoint.record import (
        config_from_record,
        read_model_record,
        resolve_checkpoint_dir,
    )
    from griffin_megatron.interop.hf_config import hf_config_from_architecture
    from tests.parallel.harness import use_layout

    use_layout()
    checkpoint = resolve_checkpoint_dir(checkpoint)
    config = config_from_record(read_model_record(checkpoint))
    # Bridge picks its bridge by the config's `architectures`, which our export writes.
    hf_config = hf_config_from_architecture(config)
    bridge = AutoBridge.from_hf_config(hf_config)
    # The training length is no HF config field; the checkpoint's record has it.
    provider, model = _bridge_model(bridge, tp=1, load_weights=False,
                                    seq_length=config.seq_length)
    load_model_checkpoint(model, checkpoint)
    bridge.save_hf_pretrained(model, out_dir, show_progress=False)
    return [type(provider).__name__, type(model[0]).__name__]
