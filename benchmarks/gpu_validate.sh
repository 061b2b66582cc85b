#!/usr/bin/env bash
# One-shot validation on one NVIDIA GPU without network access (e.g. the project's H200),
# in under 8 minutes:  bash benchmarks/gpu_validate.sh
#
#   0. environment: GPU, torch, triton; Python packages the machine lacks are installed from
#      wheels carried in $WHEELS (default .whl/ in the checkout, git-ignored), offline.
#   1. the CUDA-marked tests: RG-LRU Triton kernels against the float64 oracle (tests/ops), the
#      activation-memory model of `plan` on the GPU (tests/recipes), and local-vs-TE parity,
#      TE checkpoints and HF export (tests/te; skipped, with the reason, where TE is absent);
#   2. the RG-LRU kernel benchmark on its quick grid (benchmarks/rglru.py --quick; the full
#      kernel check is benchmarks/gpu_check_rglru.sh, about 8 minutes on its own);
#   3. bf16 training throughput, Griffin-400M against a Megatron-Core GPT of ~400M parameters at
#      sequence 2K and 8K (benchmarks/train_throughput.py: tokens/s, TFLOP/s, MFU), appended to
#      benchmarks/RESULTS.md; with Transformer Engine importable, Griffin's te backend too.
# A summary table (step, status, seconds) is printed last. Logs and the updated RESULTS.md go
# to $OUT (default /tmp/out). Exit status 0 only when every step passed.
#
# Carrying the wheels: the machine has torch, triton, transformers, pytest and pyyaml, but not
# megatron-core (pure Python apart from a small dataset helper, so it needs a cp312 wheel).
# On a machine with network access, in the checkout:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux1_x86_64 -d .whl megatron-core==0.16.1
# (megatron-core's own requirements, torch, numpy and packaging, are already there.)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/out}"
WHEELS="${WHEELS:-$ROOT/.whl}"
SITE="${SITE:-/tmp/griffin-site}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
cd "$ROOT" || exit 2
unset TRITON_INTERPRET  # compiled kernels on the GPU
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export CUDA_DEVICE_MAX_CONNECTIONS=1

SUMMARY=()
FAILED=0
step() {  # step NAME TIMEOUT_S LOG COMMAND...: run with a timeout, log to $OUT/LOG, record status
    local name="$1" limit="$2" log="$3"
    shift 3
    echo "=== $name (at most ${limit} s)"
    local start=$SECONDS status
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$log"
    status=${PIPESTATUS[0]}
    local verdict="passed"
    if [ "$status" -eq 124 ]; then verdict="TIMED OUT"; elif [ "$status" -ne 0 ]; then verdict="FAILED ($status)"; fi
    [ "$status" -eq 0 ] || FAILED=1
    SUMMARY+=("$(printf '%-44s %-12s %5d s' "$name" "$verdict" $((SECONDS - start)))")
}

# 0. Environment and carried packages.
if ! "$PYTHON" -c "import megatron.core" 2>/dev/null; then
    if ! compgen -G "$WHEELS/megatron_core-*.whl" >/dev/null; then
        echo "megatron-core is not installed and $WHEELS holds no megatron_core wheel; download" \
             "it as the header of this script shows (or set WHEELS)." >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl || { echo "installing the carried wheels failed" >&2; exit 2; }
    export PYTHONPATH="$PYTHONPATH:$SITE"
fi
"$PYTHON" - <<'PY' 2>&1 | tee "$OUT/env.txt"
import importlib.util, torch, triton
import megatron.core
assert torch.cuda.is_available(), "no CUDA device is visible"
te = importlib.util.find_spec("transformer_engine") is not None
print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} (CUDA {torch.version.cuda}) | "
      f"triton {triton.__version__} | megatron-core {megatron.core.__version__} | "
      f"transformer_engine {'present' if te else 'absent'}")
PY
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "the environment check failed (see above)" >&2; exit 2; }

# 1. CUDA-marked tests (-m cuda overrides pyproject's default "not slow and not cuda").
PER_TEST=()
"$PYTHON" -c "import pytest_timeout" 2>/dev/null && PER_TEST=(--timeout 120)
step "1. CUDA tests (kernels, memory model, TE)" 180 pytest_cuda.log \
    "$PYTHON" -m pytest tests -m cuda -q -rs -p no:cacheprovider ${PER_TEST[@]+"${PER_TEST[@]}"}

# 2. RG-LRU kernels, quick benchmark grid.
step "2. RG-LRU kernel benchmark (quick grid)" 45 bench_rglru.log \
    "$PYTHON" benchmarks/rglru.py --quick

# 3. Training throughput, appended to RESULTS.md.
THROUGHPUT="$OUT/throughput.md"
: > "$THROUGHPUT"
step "3. training throughput, Griffin vs GPT" 160 throughput.log \
    "$PYTHON" benchmarks/train_throughput.py --device cuda --markdown "$THROUGHPUT"
if "$PYTHON" -c "import transformer_engine" 2>/dev/null; then
    step "3b. training throughput, Griffin te backend" 50 throughput_te.log \
        "$PYTHON" benchmarks/train_throughput.py --device cuda --models griffin --backend te \
        --steps 5 --markdown "$THROUGHPUT"
fi
{
    echo
    echo "## GPU validation run, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(head -n 1 "$OUT/env.txt")"
    echo
    echo '```'
    printf '%s\n' "${SUMMARY[@]}"
    echo '```'
    echo
    echo "CUDA tests: $(grep -E '(passed|failed|skipped|error)' "$OUT/pytest_cuda.log" | tail -n 1)"
    grep '^SKIPPED' "$OUT/pytest_cuda.log" | sed 's/^/    /'
    cat "$THROUGHPUT"
} >> benchmarks/RESULTS.md
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"

echo
echo "=== summary (logs and RESULTS.md in $OUT)"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
