"""The PyTorch RG-LRU path (`rglru_torch`) against the step-by-step oracle, and the oracle
itself against finite differences."""

import pytest
import torch

from griffin_megatron.ops.rglru import RGLRU_C, rglru_reference, rglru_torch

from tests.ops.rglru_cases import Case, assert_close_to, forward_backward, make_inputs, oracle

CASES = [
    Case(1, 2, 5, torch.float64, reset=True, h0=True),
    Case(17, 3, 11, torch.float64, reset=True, h0=False),
    Case(64, 2, 9, torch.float64, reset=False, h0=True),
    Case(300, 2, 16, torch.float64, reset=True, h0=True),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
@pytest.mark.parametrize("use", [pytest.param({}, id="loss-on-both"),
                                 pytest.param({"use_final": False}, id="loss-on-y"),
                                 pytest.param({"use_y": False}, id="loss-on-final-state")])
def test_float64_matches_reference(case, use):
    inputs = make_inputs(case, "cpu")
    y, final, grads = forward_backward(rglru_torch, inputs, c=RGLRU_C, **use)
    y_ref, final_ref, grads_ref = oracle(inputs, **use)
    assert_close_to("y", y, y_ref, 1e-10, 1e-12)
    assert_close_to("final_state", final, final_ref, 1e-10, 1e-12)
    assert grads.keys() == grads_ref.keys()
    for name, grad in grads.items():
        if grads_ref[name] is None:
            assert grad is None or not grad.any(), name
        else:
            assert_close_to(f"d{name}", grad, grads_ref[name], 1e-10, 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_low_precision_inputs_compute_in_float32(dtype):
    case = Case(200, 2, 24, dtype, reset=True, h0=True)
    inputs = make_inputs(case, "cpu", seed=3)
    y, final, grads = forward_backward(rglru_torch, inputs, c=RGLRU_C)
    y_ref, final_ref, grads_ref = oracle(inputs)
    rtol, atol = (1e-4, 1e-5) if dtype == torch.float32 else (2e-2, 1e-2)
    assert y.dtype == dtype and final.dtype == torch.float32
    assert_close_to("y", y, y_ref, rtol, atol)
    assert_close_to("final_state", final, final_ref, 1e-4, 1e-5)
    for name, grad in grads.items():
        assert grad.dtype == inputs[name].dtype, name
        assert_close_to(f"d{name}", grad, grads_ref[name], rtol, atol)


@pytest.mark.parametrize("fn", [rglru_reference, rglru_torch], ids=["reference", "torch"])
def test_gradients_match_finite_differences(fn):
    """Away from a = 1, where the clipped sqrt gradient is the true one."""
    g = torch.Generator().manual_seed(4)
    T, B, D = 6, 2, 3
    args = [torch.randn(T, B, D, generator=g, dtype=torch.float64) for _ in range(3)]
    args.append(torch.rand(D, generator=g, dtype=torch.float64) - 0.5)  # a in ~[0.01, 0.2]
    h0 = torch.randn(B, D, generator=g, dtype=torch.float64)
    reset = torch.zeros(T, B, dtype=torch.bool)
    reset[0, 0] = reset[3, 1] = True
    for t in (*args, h0):
        t.requires_grad_()

    def f(x, gate_x, gate_a, a_param, initial_state):
        return fn(x, gate_x, gate_a, a_param, reset=reset, initial_state=initial_state, c=RGLRU_C)

    assert torch.autograd.gradcheck(f, (*args, h0))
