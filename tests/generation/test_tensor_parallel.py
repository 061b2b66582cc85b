"""Generation with tensor parallelism (2 processes, gloo) equals generation at TP=1.

Both ranks must also agree token for token, sampled runs included (the token is chosen on the
first rank of the group and broadcast).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from griffin_megatron.generation import generate
from griffin_megatron.interop.hf import to_hf
from griffin_megatron.checkpoint.full_state import gather_full_state_dict

REPO = Path(__file__).resolve().parents[2]

PROMPTS = [[5, 17, 300, 42, 9, 88, 120, 7, 7, 64, 3, 250, 31, 8], [400, 2, 77]]
RUNS = {
    "greedy": dict(max_new_tokens=24),
    "sampled": dict(max_new_tokens=24, temperature=0.9, top_k=50, top_p=0.95, seed=7),
}


def test_tp2_generation_equals_tp1(griffin, tmp_path):
    torch.save(gather_full_state_dict(griffin), tmp_path / "full_state.pt")
    to_hf(griffin, tmp_path / "hf")
    (tmp_path / "request.json").write_text(json.dumps({"prompts": PROMPTS, "runs": RUNS}))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", "-m", "tests.generation.tp_generate_worker", str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    for name, kwargs in RUNS.items():
        expected = generate(griffin, PROMPTS, **kwargs)
        for model_name in ("from_hf", "parallel_output=False"):
            assert ranks[0][f"{name}-{model_name}"] == expected, (name, model_name)
