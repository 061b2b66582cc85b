#!/usr/bin/env bash
# GPU check of the fused RG-LRU Triton kernels on one NVIDIA GPU, offline, in under 8 minutes:
#   1. tests/ops with compiled kernels: the small oracle tests and the cuda-marked realistic ones;
#   2. benchmarks/rglru.py --compare-schedules, whose table is printed last.
# Needs python with torch (CUDA) and triton; not megatron-core. If pytest is missing, its wheels
# (pytest, pluggy, iniconfig, packaging, pygments) are taken from $WHEELS (default: .whl/ in
# the checkout) and unpacked into a scratch folder.
# Logs: ${OUT:-/tmp/out}/{env.txt,pytest_ops.log,bench_rglru.log}. Exit status: 0 when all passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/out}"
WHEELS="${WHEELS:-$ROOT/.whl}"
mkdir -p "$OUT"
cd "$ROOT"
# Compiled kernels: with TRITON_INTERPRET=1 the tests would run on the CPU instead.
unset TRITON_INTERPRET
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if ! python -c "import pytest" 2>/dev/null; then
    if ! compgen -G "$WHEELS/pytest-*.whl" >/dev/null; then
        echo "pytest is not installed and $WHEELS has no pytest wheel: carry the wheels of" \
             "pytest, pluggy, iniconfig, packaging and pygments there (or set WHEELS)." >&2
        exit 2
    fi
    # Pure-Python wheels install by unpacking (the same as pip --no-deps --target); this needs
    # neither pip nor a network.
    for wheel in "$WHEELS"/*.whl; do
        python -m zipfile -e "$wheel" "$OUT/site-packages"
    done
    export PYTHONPATH="$PYTHONPATH:$OUT/site-packages"
fi

python - <<'PY' 2>&1 | tee "$OUT/env.txt"
import torch, triton
assert torch.cuda.is_available(), "no CUDA device is visible"
print(torch.cuda.get_device_name(), "| torch", torch.__version__, "| triton", triton.__version__)
PY

pytest_status=0
# -m "not slow" overrides the default "not slow and not cuda" of pyproject.toml.
timeout 200 python -m pytest tests/ops -m "not slow" -q -ra -p no:cacheprovider \
    2>&1 | tee "$OUT/pytest_ops.log" || pytest_status=$?
# The table goes row by row into the log, so a timeout still leaves the rows measured so far.
bench_status=0
timeout 250 python benchmarks/rglru.py --compare-schedules \
    2>&1 | tee "$OUT/bench_rglru.log" || bench_status=$?
echo "gpu_check_rglru: pytest exit $pytest_status, benchmark exit $bench_status (124: timed out)"
exit $((pytest_status || bench_status))
