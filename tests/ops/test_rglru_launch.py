"""How the RG-LRU kernels are launched: every candidate against the float64 oracle, no timing
inside a step, the schedule rule, warm-up, capture refusal and the tensors' device.

Small shapes send every call to the first candidate, so the candidate tests force each one
(`launch.forcing`). Without a GPU they run in the Triton interpreter (tests/ops/conftest.py);
the cuda-marked twins run the compiled kernels at a size where tiles are full and partial.
"""

import pytest
import torch

from griffin_megatron.ops.rglru import launch, schedule, triton_op, warm_up

from tests.ops.rglru_cases import Case
from tests.ops.test_rglru_triton import DEVICE, check_against_oracle

FWD, BWD = launch.CANDIDATES["fwd"], launch.CANDIDATES["bwd"]
PAIRS = [  # the i-th candidate of each group (the last where a group has fewer): all run
    pytest.param(fwd, bwd, id=f"fwd{fwd.block_d}x{fwd.num_warps}-bwd{bwd.block_d}x{bwd.num_warps}")
    for fwd, bwd in ((FWD[min(i, len(FWD) - 1)], BWD[min(i, len(BWD) - 1)])
                     for i in range(max(len(FWD), len(BWD))))
]
SCHEDULES = [pytest.param(False, id="sequential"), pytest.param(True, id="chunked")]


@pytest.fixture(autouse=True)
def nan_filled_outputs(monkeypatch):
    monkeypatch.setattr(triton_op, "DEBUG_FILL_NAN", True)


def test_pairs_cover_every_candidate():
    assert {p.values[0] for p in PAIRS} == set(FWD) and {p.values[1] for p in PAIRS} == set(BWD)


@pytest.mark.parametrize("chunked", SCHEDULES)
@pytest.mark.parametrize("fwd, bwd", PAIRS)
def test_every_candidate_matches_the_oracle(fwd, bwd, chunked):
    # D = 37 leaves a partial channel block for every BLOCK_D; T = 70 a partial second tile.
    with launch.forcing(fwd=fwd, bwd=bwd):
        check_against_oracle(Case(70, 1, 37, torch.float32, reset=True, h0=True), chunked)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("chunked", SCHEDULES)
@pytest.mark.parametrize("fwd, bwd", PAIRS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_cuda_every_candidate_matches_the_oracle(fwd, bwd, chunked, dtype):
    """Compiled kernels, full and partial tiles and channel blocks, every candidate."""
    with launch.forcing(fwd=fwd, bwd=bwd):
        check_against_oracle(Case(1000, 3, 300, dtype, reset=True, h0=True), chunked)


class FakeKernel:
    """Stands in for a @triton.jit kernel: records each launch's grid and BLOCK_D."""

    def __init__(self):
        self.launches = []

    def __getitem__(self, grid):
        return lambda **kw: self.launches.append((grid, kw["BLOCK_D"], kw["num_warps"]))


LARGE = dict(T=4096, B=2, D=2048, T_BUCKET=4096)  # above AUTOTUNE_MIN_ELEMENTS


def test_large_untuned_call_launches_the_first_candidate_once(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # compiled mode's eligibility, nothing compiled
    kernel = FakeKernel()
    launcher = launch.KernelLauncher("fake", kernel, "bwd", ("D", "B", "T_BUCKET"))
    x = torch.empty(1)
    assert len(launcher.eligible(LARGE)) == len(BWD) > 1
    launcher(lambda block_d: (2048 // block_d, 1, 2), x_ptr=x, **LARGE)
    first = BWD[0]
    assert kernel.launches == [((2048 // first.block_d, 1, 2), first.block_d, first.num_warps)]


def test_small_calls_and_the_interpreter_have_one_candidate(monkeypatch):
    launcher = launch.KernelLauncher("fake", FakeKernel(), "bwd", ())
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert launcher.eligible(dict(T=100, B=2, D=64)) == launch.CANDIDATES["bwd"][:1]
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert launcher.eligible(LARGE) == launch.CANDIDATES["bwd"][:1]


def test_forcing_refuses_a_candidate_that_is_not_in_the_group():
    with pytest.raises(ValueError, match="is not a 'bwd' candidate"):
        with launch.forcing(bwd=launch.Candidate(128, 1)):
            pass


def test_recording_runs_nothing_and_sees_every_kernel_of_both_schedules():
    case = torch.zeros(300, 2, 64)
    w = torch.zeros(64)
    with launch.recording() as launches:
        for chunked in (False, True):
            y, _, states = triton_op.rglru_fwd(case, case, case, w, None, None, chunked)
            triton_op.rglru_bwd(case, case, case, w, None, states, case, None, chunked)
    names = [(rec.name, rec.args.get("SEQUENTIAL")) for rec in launches]
    assert names == [("fwd", True), ("bwd", True),
                     ("fwd_summary", None), ("carry_scan", None), ("fwd", False),
                     ("bwd_summary", None), ("carry_scan", None), ("bwd", False)]


@pytest.mark.parametrize("registers, warps, blocks", [
    (80, 8, 3),    # 80 * 32 = 2560 per warp -> 20480 per block: 3 in 65536
    (128, 8, 2),
    (255, 8, 1),   # 255 rounds up to 256 per thread per 256-register unit: 65536 per block
    (32, 4, 16),   # warps allow 16, registers 16
    (16, 1, 32),   # the 32-block limit
])
def test_blocks_per_sm_from_registers_and_warps(registers, warps, blocks):
    assert schedule.blocks_per_sm(registers, warps) == blocks


def chunked(pass_name, T, B, D, itemsize=2, sms=132):
    cost = schedule.schedule_cost
    return cost(pass_name, "chunked", T, B, D, itemsize, sms) < \
        cost(pass_name, "sequential", T, B, D, itemsize, sms)


def test_schedule_rule_follows_occupancy():
    # The sequential forward fits one 16-warp block per SM (12 KiB of loads in flight), the
    # chunked tile kernel three: chunked wins for the 400M and the 14B micro-batch.
    assert chunked("forward", 2048, 2, 2048) and chunked("forward", 2048, 2, 8192)
    # The sequential backward fits 3 blocks per SM, the chunked one 6: chunked at both sizes.
    assert chunked("backward", 2048, 2, 2048) and chunked("backward", 2048, 2, 8192)
    # One tile of time: chunking the forward adds reads and no parallelism.
    assert not chunked("forward", 64, 2, 2048)


def test_cpu_schedule_and_warm_up_are_cheap_no_ops():
    cpu = torch.device("cpu")
    assert schedule.choose_schedule(2048, 2, 2048, 2, cpu) == schedule.Schedule(False, False)
    warm_up([(2048, 2, 2048)], torch.bfloat16, cpu)  # returns without allocating or compiling


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_warm_up_tunes_and_steps_then_time_nothing(monkeypatch, caplog):
    T, B, D = 2048, 2, 1024  # 4M elements: every candidate is eligible
    warm_up([(T, B, D)], torch.bfloat16, DEVICE)
    # Groups with several candidates were timed for this key: today the backward's.
    for launcher in (triton_op._fwd, triton_op._fwd_summary, triton_op._bwd):
        if len(launch.CANDIDATES[launcher.group]) > 1:
            assert launcher.chosen, launcher.name

    def no_timing(*args, **kwargs):
        raise AssertionError("a step timed a kernel")

    monkeypatch.setattr(launch, "_time_ms", no_timing)
    # The call training makes (reset flags given): every kernel finds its warmed-up choice.
    x = torch.randn(T, B, D, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    reset = torch.zeros(T, B, dtype=torch.bool, device=DEVICE)
    with caplog.at_level("INFO", logger=launch.__name__):
        y, _ = triton_op.rglru_triton(x, x.detach(), x.detach(), torch.zeros(D, device=DEVICE),
                                      reset=reset)
        y.float().sum().backward()
    assert "no warm-up measured" not in caplog.text


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_tuning_during_graph_capture_is_refused():
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        with pytest.raises(RuntimeError, match="before capturing"):
            with torch.cuda.graph(graph, stream=stream):
                warm_up([(2048, 2, 1024)], torch.bfloat16, DEVICE)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two NVIDIA GPUs")
def test_cuda_tensors_on_another_device_launch_there():
    """A model on cuda:1 without torch.cuda.set_device: the launch follows the tensors."""
    assert torch.cuda.current_device() == 0
    for chunked in (False, True):
        check_against_oracle(Case(300, 2, 100, torch.float32, reset=True, h0=True), chunked,
                             device=torch.device("cuda", 1))
