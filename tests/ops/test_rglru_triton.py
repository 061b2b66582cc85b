"""The fused Triton RG-LRU against the float64 step-by-step oracle, forward and every gradient.

Without a GPU the kernels run in the Triton interpreter (tests/ops/conftest.py sets
TRITON_INTERPRET=1), so the sizes are small; with CUDA the same tests run compiled, and the
`cuda`-marked ones add realistic sizes (pytest -m cuda). Every buffer the kernels write starts
as NaN (triton_op.DEBUG_FILL_NAN), so an element a kernel skips fails the comparison.
"""

import pytest
import torch

from griffin_megatron.ops.rglru import rglru, rglru_torch
from griffin_megatron.ops.rglru import triton_op
from griffin_megatron.ops.rglru.triton_op import rglru_triton

from tests.ops.rglru_cases import Case, assert_close_to, forward_backward, make_inputs, oracle

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# (rtol, atol as a fraction of the tensor's largest entry). fp32 errors measure ~1e-6 of the
# largest entry; half-precision outputs carry their own rounding (2^-8 for bf16).
TOLERANCE = {torch.float32: (1e-4, 1e-5), torch.bfloat16: (2e-2, 1e-2),
             torch.float16: (4e-3, 2e-3)}
SCHEDULES = [pytest.param(False, id="sequential"), pytest.param(True, id="chunked")]

CASES = [
    Case(1, 2, 37, torch.float32, reset=False, h0=True),
    Case(1, 2, 37, torch.float32, reset=True, h0=False),
    Case(7, 2, 37, torch.float32, reset=True, h0=True),
    Case(7, 1, 100, torch.bfloat16, reset=False, h0=False),
    Case(129, 2, 37, torch.float32, reset=True, h0=False),
    Case(129, 2, 100, torch.bfloat16, reset=True, h0=True),
    Case(129, 1, 37, torch.float16, reset=True, h0=True),
    Case(1000, 1, 37, torch.float32, reset=True, h0=True),
    Case(1000, 1, 100, torch.bfloat16, reset=True, h0=False),
]


@pytest.fixture(autouse=True)
def nan_filled_outputs(monkeypatch):
    monkeypatch.setattr(triton_op, "DEBUG_FILL_NAN", True)


def check_against_oracle(case: Case, chunked, seed: int = 0, device=DEVICE, **use) -> None:
    inputs = make_inputs(case, device, seed=seed)
    y, final, grads = forward_backward(rglru_triton, inputs, chunked=chunked, **use)
    y_ref, final_ref, grads_ref = oracle(inputs, **use)
    rtol, atol = TOLERANCE[case.dtype]
    assert y.dtype == case.dtype and final.dtype == torch.float32
    assert_close_to("y", y, y_ref, rtol, atol)
    # The final state is fp32, computed from the same rounded inputs: fp32 accuracy.
    assert_close_to("final_state", final, final_ref, *TOLERANCE[torch.float32])
    assert grads.keys() == grads_ref.keys()
    for name, grad in grads.items():
        assert grad.dtype == inputs[name].dtype, name
        assert_close_to(f"d{name}", grad, grads_ref[name], rtol, atol)


@pytest.mark.parametrize("chunked", SCHEDULES)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_matches_float64_oracle(case, chunked):
    check_against_oracle(case, chunked)


@pytest.mark.parametrize("chunked", SCHEDULES)
@pytest.mark.parametrize("use", [pytest.param({"use_final": False}, id="loss-on-y"),
                                 pytest.param({"use_y": False}, id="loss-on-final-state")])
def test_loss_through_one_output_only(use, chunked):
    check_against_oracle(Case(129, 2, 37, torch.float32, reset=True, h0=True), chunked, **use)


def test_strided_views_need_no_copy():
    """Sequence-first views of batch-first x and of one fused gate projection."""
    case = Case(70, 2, 37, torch.float32, reset=True, h0=True)
    inputs = make_inputs(case, DEVICE, seed=1)
    fused_gates = torch.cat([inputs["gate_x"], inputs["gate_a"]], dim=-1)  # [T, B, 2D]
    strided = dict(inputs)
    strided["x"] = inputs["x"].transpose(0, 1).contiguous().transpose(0, 1)
    strided["gate_x"], strided["gate_a"] = fused_gates.split(case.D, dim=-1)
    assert not strided["x"].is_contiguous() and not strided["gate_a"].is_contiguous()
    y, final, grads = forward_backward(rglru_triton, strided)
    y_ref, final_ref, grads_ref = oracle(inputs)
    assert_close_to("y", y, y_ref, *TOLERANCE[torch.float32])
    for name, grad in grads.items():
        assert_close_to(f"d{name}", grad, grads_ref[name], *TOLERANCE[torch.float32])


def test_public_op_dispatches_to_triton():
    case = Case(20, 2, 37, torch.float32, reset=True, h0=True)
    inputs = make_inputs(case, DEVICE)
    args = (inputs["x"], inputs["gate_x"], inputs["gate_a"], inputs["a_param"])
    y, final = rglru(*args, reset=inputs["reset"], backend="triton")
    assert final is None
    y_ref, _ = rglru(*args, reset=inputs["reset"], backend="reference")
    assert_close_to("y", y, y_ref, *TOLERANCE[torch.float32])


def test_empty_sequence_passes_the_state_through():
    case = Case(0, 2, 37, torch.float32, reset=False, h0=True)
    inputs = make_inputs(case, DEVICE)
    y, final, grads = forward_backward(rglru_triton, inputs)
    assert y.shape == (0, 2, 37)
    assert torch.equal(final, inputs["initial_state"])
    assert torch.equal(grads["initial_state"], inputs["dfinal"])
    assert torch.equal(grads["a_param"], torch.zeros_like(inputs["a_param"]))


def test_rejects_layouts_and_dtypes_the_kernels_do_not_take():
    x = torch.randn(4, 2, 6, device=DEVICE)
    a_param = torch.randn(6, device=DEVICE)
    channel_strided = torch.randn(4, 2, 12, device=DEVICE)[..., ::2]
    with pytest.raises(ValueError, match="unit stride"):
        rglru_triton(x, channel_strided, x, a_param)
    with pytest.raises(ValueError, match="float64"):
        rglru_triton(x.double(), x, x, a_param)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU tensors only")
def test_cpu_tensors_without_the_interpreter_get_one_sentence(monkeypatch):
    case = Case(4, 1, 8, torch.float32, reset=False, h0=False)
    inputs = make_inputs(case, DEVICE)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        rglru(inputs["x"], inputs["gate_x"], inputs["gate_a"], inputs["a_param"],
              backend="triton")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("chunked", [None, False, True], ids=["auto", "sequential", "chunked"])
@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id) for c in (
        Case(2048, 2, 2560, torch.bfloat16, reset=True, h0=False),
        Case(8192, 1, 704, torch.bfloat16, reset=True, h0=True),
        Case(4096, 4, 704, torch.float32, reset=True, h0=True),
    )],
)
def test_cuda_matches_torch_path(case, chunked):
    """Realistic sizes, compiled kernels, against the fp32 PyTorch path on the same GPU.

    8192 steps make the chunked schedule chain 128 tile maps, more than one carry-scan block.
    """
    inputs = make_inputs(case, DEVICE, seed=2)
    y, final, grads = forward_backward(rglru_triton, inputs, chunked=chunked)
    as32 = {k: (v.float() if v is not None and v.is_floating_point() else v)
            for k, v in inputs.items()}
    y_ref, final_ref, grads_ref = forward_backward(rglru_torch, as32, c=8.0)
    rtol, atol = TOLERANCE[case.dtype]
    assert_close_to("y", y, y_ref, rtol, atol)
    assert_close_to("final_state", final, final_ref, 1e-3, 1e-4)
    for name, grad in grads.items():
        assert_close_to(f"d{name}", grad, grads_ref[name], rtol, atol)
