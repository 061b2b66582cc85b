"""Run under torchrun with 2 processes: generate with a TP=2 model, write each rank's tokens.

    torchrun --standalone --nproc-per-node 2 -m tests.generation.tp_generate_worker DIR

(from the repository root, or with it on PYTHONPATH).

DIR holds `hf/` (the model as an HF RecurrentGemma directory), `full_state.pt` (its TP=1 state
dict) and `request.json` (prompts, sampling settings); rank r writes `rank{r}.json`. The TP=2
model is built twice: by `from_hf` (vocab-parallel logits, gathered by generate) and from the
state dict with parallel_output=False (logits gathered by the output layer).
"""

import json
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist


def main(directory: Path) -> None:
    warnings.filterwarnings("ignore")
    from griffin_megatron import compat
    from griffin_megatron.generation import generate
    from griffin_megatron.interop.hf import from_hf
    from griffin_megatron.model import GriffinModel
    from griffin_megatron.runtime import destroy, ensure_initialized
    from griffin_megatron.checkpoint.full_state import load_full_state_dict
    from tests.fixtures.tiny_models import tiny_config

    ensure_initialized(tensor_model_parallel_size=2)
    request = json.loads((directory / "request.json").read_text())
    full_state = torch.load(directory / "full_state.pt", weights_only=True)
    gathered = GriffinModel(tiny_config("RRA", tensor_model_parallel_size=2), parallel_output=False)
    load_full_state_dict(gathered, full_state)
    models = {
        "from_hf": from_hf(directory / "hf", tensor_model_parallel_size=2),
        "parallel_output=False": gathered.eval(),
    }
    results = {}
    # A worker is an entry point: Megatron's tensor-parallel mappings ask torch.cuda for the
    # current device.
    with compat.cuda_stand_ins_on_cpu():
        for model_name, model in models.items():
            for run_name, kwargs in request["runs"].items():
                results[f"{run_name}-{model_name}"] = generate(model, request["prompts"], **kwargs)
    (directory / f"rank{dist.get_rank()}.json").write_text(json.dumps(results))
    destroy()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
