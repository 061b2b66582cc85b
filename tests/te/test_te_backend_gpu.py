"""The Transformer Engine backend on a GPU (skipped where TE does not import or CUDA is absent).

- Equal to the local backend within bf16 tolerance: logits, loss and every gradient, with one
  document per row (TE's sbhd path) and with documents starting inside rows (TE's THD path),
  the window shorter than the sequence.
- FP8-ready: with TE's FP8 recipe on a GPU that has FP8, training steps stay finite and close.
- Checkpoints: a TE checkpoint loads into a local-backend model and back with identical weights,
  and `convert mcore-to-hf` of a TE checkpoint writes what `to_hf` writes for the TE model.
"""

import pytest
import torch

pytestmark = [pytest.mark.cuda, pytest.mark.te]
pytest.importorskip(
    "transformer_engine",
    reason="Transformer Engine is not installed (pip install 'griffin-megatron[te]' on a GPU machine)",
)
if not torch.cuda.is_available():
    pytest.skip("the te backend needs a CUDA GPU", allow_module_level=True)
import transformer_engine.pytorch as te_pytorch  # noqa: E402

from griffin_megatron.checkpoint.model import load_model_checkpoint, save_model_checkpoint  # noqa: E402
from griffin_megatron.cli.main import main  # noqa: E402
from griffin_megatron.model import GriffinModel  # noqa: E402
from griffin_megatron.presets import get_preset  # noqa: E402
from griffin_megatron.runtime import ensure_initialized  # noqa: E402
from griffin_megatron.checkpoint.full_state import (  # noqa: E402
    gather_full_state_dict,
    load_full_state_dict,
    local_parameter_name,
)

SEQ, BATCH = 128, 2


def build(backend, seed=0, **overrides):
    ensure_initialized()
    config = get_preset("griffin-tiny", params_dtype=torch.bfloat16, bf16=True,
                        seq_length=SEQ, **overrides)
    torch.manual_seed(seed)
    return GriffinModel(config, backend=backend).cuda()


def batch(documents: bool):
    torch.manual_seed(7)
    ids = torch.randint(0, 512, (BATCH, SEQ), device="cuda")
    if documents:  # documents of 50, 40 and 38 tokens in every row
        positions = torch.cat([torch.arange(50), torch.arange(40), torch.arange(38)])
    else:
        positions = torch.arange(SEQ)
    return ids, positions.cuda().expand(BATCH, -1)


def relative_error(actual, expected) -> float:
    return float((actual.float() - expected.float()).norm() / expected.float().norm().clamp_min(1e-12))


def loss_and_grads(model, ids, positions):
    model.zero_grad(set_to_none=True)
    loss = model(ids, positions, labels=ids).float().mean()
    loss.backward()
    grads = {local_parameter_name(n): p.grad for n, p in model.named_parameters()}
    return loss.detach(), grads


@pytest.mark.parametrize("documents", [False, True], ids=["one-document", "packed-documents"])
def test_te_backend_equals_local_backend(documents):
    local = build("local")
    te_model = build("te", seed=1)
    load_full_state_dict(te_model, gather_full_state_dict(local))
    ids, positions = batch(documents)
    with torch.no_grad():
        assert relative_error(te_model(ids, positions), local(ids, positions)) < 2e-2
    loss_te, grads_te = loss_and_grads(te_model, ids, positions)
    loss_local, grads_local = loss_and_grads(local, ids, positions)
    assert abs(float(loss_te - loss_local)) < 1e-2 * abs(float(loss_local))
    assert grads_te.keys() == grads_local.keys()
    for name, grad in grads_local.items():
        assert relative_error(grads_te[name], grad) < 5e-2, name


def fp8_support():
    """(available, reason) across TE versions: `is_fp8_available` (2.9+) or fp8.check_fp8_support."""
    if hasattr(te_pytorch, "is_fp8_available"):
        return te_pytorch.is_fp8_available(return_reason=True)
    from transformer_engine.pytorch.fp8 import check_fp8_support

    return check_fp8_support()


def test_te_backend_is_fp8_ready():
    supported, reason = fp8_support()
    if not supported:
        pytest.skip(f"no FP8 on this GPU: {reason}")
    bf16 = build("te")
    fp8 = build("te", seed=1, fp8="hybrid")
    load_full_state_dict(fp8, gather_full_state_dict(bf16))
    ids, positions = batch(documents=False)
    for _ in range(3):  # delayed scaling settles after a few steps
        loss_fp8, grads = loss_and_grads(fp8, ids, positions)
    loss_bf16, _ = loss_and_grads(bf16, ids, positions)
    assert torch.isfinite(loss_fp8)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert abs(float(loss_fp8 - loss_bf16)) < 5e-2 * abs(float(loss_bf16))


def assert_same_weights(a, b):
    full_a, full_b = gather_full_state_dict(a), gather_full_state_dict(b)
    assert full_a.keys() == full_b.keys()
    for name in full_a:
        assert torch.equal(full_a[name], full_b[name]), name


@pytest.mark.parametrize("saved_by, loaded_by", [("te", "local"), ("local", "te")])
def test_checkpoints_load_across_backends(tmp_path, saved_by, loaded_by):
    source, target = build(saved_by, seed=1), build(loaded_by, seed=2)
    save_model_checkpoint(source, tmp_path / "ckpt", backend=saved_by)
    load_model_checkpoint(target, tmp_path / "ckpt")
    assert_same_weights(target, source)


def test_hf_export_of_a_te_checkpoint(tmp_path):
    from safetensors.torch import load_file

    from griffin_megatron.interop.hf import to_hf

    te_model = build("te", seed=1)
    save_model_checkpoint(te_model, tmp_path / "ckpt", backend="te")
    assert main(["convert", "mcore-to-hf", "--ckpt", str(tmp_path / "ckpt"),
                 "--out", str(tmp_path / "hf")]) == 0
    to_hf(te_model, tmp_path / "hf_direct")
    exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
    direct = load_file(str(tmp_path / "hf_direct" / "model.safetensors"))
    assert exported.keys() == direct.keys()
    for name in direct:
        assert torch.equal(exported[name], direct[name]), name
