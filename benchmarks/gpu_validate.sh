#!/usr/bin/env bash
# One prepared run on one NVIDIA GPU (H100 or H200), offline, in at most 8 minutes:
#
#   bash benchmarks/gpu_validate.sh             # on the GPU: appends its table to RESULTS.md
#   bash benchmarks/gpu_validate.sh --dry-run   # the same steps at tiny sizes on a CPU (CI runs
#                                               # it); the table goes to $OUT only
#
#   0. environment: GPU, torch, triton; Python packages the machine lacks are installed from
#      wheels carried in $WHEELS (default .whl/ in the checkout, git-ignored), offline.
#   1. kernel correctness: the CUDA-marked tests of tests/ops (every RG-LRU kernel candidate
#      against the torch path); 1b. the other CUDA-marked tests (flex attention's gradients, the
#      activation-memory model, the TE tests, which skip where TE is absent), with their own
#      limit;
#   2. RG-LRU forward/backward throughput, GB/s and fraction of the HBM floor, at a 400M and a
#      14B shape (benchmarks/rglru.py);
#   3. local attention, flex vs blocked vs the TE-less math kernel: time and peak memory at
#      T=8K, W=1024 (benchmarks/local_attention.py);
#   4. a bf16 training step, Griffin-400M against a Megatron GPTModel MQA Transformer of the same
#      parameter count at 2K and 8K: tokens/s, peak memory, ratio (benchmarks/train_throughput.py);
#   5. decode tokens/s, Griffin-400M against that Transformer's shape at 8K context, batch 16,
#      both through griffin_megatron.generation (benchmarks/decode.py).
# Every step has its own time limit, so a slow or missing step loses only its own row. Each
# python step warms up (kernel compilation, autotuning) before it times. One table (step,
# status, seconds, headline) is printed last and written with the steps' own tables to
# benchmarks/RESULTS.md (a dry run writes $OUT/gpu_validate_dry_run.md and leaves RESULTS.md
# alone). Logs go to $OUT (default /tmp/out). Exit status 0 only when every step passed.
#
# Carrying the wheels: the lent machine has torch, triton, transformers, pytest and pyyaml, but
# not megatron-core (pure Python apart from a small dataset helper, so a cp312 wheel does).
# On a machine with network access, in the checkout:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux1_x86_64 -d .whl megatron-core==0.19.2
# (megatron-core's own requirements, torch, numpy and packaging, are already there), and name
# .whl in the device call's carry.
set -uo pipefail

DRY_RUN=0
case "${1:-}" in
    --dry-run) DRY_RUN=1 ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_validate.sh [--dry-run]" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/out}"
WHEELS="${WHEELS:-$ROOT/.whl}"
SITE="${SITE:-/tmp/griffin-site}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
DETAILS="$OUT/step_tables.md"  # the steps' own Markdown tables
: > "$DETAILS"

if [ "$DRY_RUN" -eq 1 ]; then
    DEVICE=cpu
    TABLE="$OUT/gpu_validate_dry_run.md"
    TITLE="gpu_validate.sh --dry-run (tiny sizes on a CPU; not a measurement)"
    DRY=1
else
    DEVICE=cuda
    TABLE=benchmarks/RESULTS.md
    TITLE="GPU validation run (benchmarks/gpu_validate.sh)"
    DRY=0
    unset TRITON_INTERPRET  # compiled kernels on the GPU
    export CUDA_DEVICE_MAX_CONNECTIONS=1
fi

ROWS=()
FAILED=0
headline() {  # the last "RESULT: ..." line of a log, else pytest's summary line, else "-"
    local line
    line="$(grep -E '^RESULT: ' "$1" | tail -n 1 | sed 's/^RESULT: //')"
    [ -n "$line" ] || line="$(grep -E '[0-9]+ (passed|failed|skipped|error)' "$1" | tail -n 1 \
        | tr -d '=' | sed 's/^ *//; s/ *$//')"
    echo "${line:--}"
}
step() {  # step NUMBER NAME GPU_LIMIT_S SCRIPT COMMAND...: run under its limit, log, add a row
    # The GPU limits add up to 440 s, inside 8 minutes with the set-up; a dry run's limit is a
    # ceiling of 240 s per step on a shared 2-core CPU.
    local number="$1" name="$2" limit="$3" script="$4" log="$OUT/step$1.log"
    shift 4
    [ "$DRY" -eq 0 ] || limit=240
    echo "=== $number. $name (at most ${limit} s)"
    local start=$SECONDS status verdict
    if [ ! -e "$script" ]; then
        echo "$script is missing from this checkout" | tee "$log"
        ROWS+=("| $number | $name | FAILED ($script missing) | 0 | - |")
        FAILED=1
        return
    fi
    timeout "$limit" "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    if [ "$status" -eq 0 ]; then verdict="passed"
    elif [ "$status" -eq 124 ]; then verdict="TIMED OUT"
    else verdict="FAILED (exit $status)"; fi
    [ "$status" -eq 0 ] || FAILED=1
    ROWS+=("| $number | $name | $verdict | $((SECONDS - start)) | $(headline "$log") |")
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
DEVICE="$DEVICE" "$PYTHON" - <<'PY' 2>"$OUT/env_stderr.txt" | tee "$OUT/env.txt"
import importlib.util, os, platform, torch, triton
import megatron.core
if os.environ["DEVICE"] == "cuda":
    assert torch.cuda.is_available(), "no usable CUDA device (torch.cuda.is_available() is False)"
    where = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
else:
    where = f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"
te = importlib.util.find_spec("transformer_engine") is not None
print(f"{where} | Python {platform.python_version()} | torch {torch.__version__} | "
      f"triton {triton.__version__} | megatron-core {megatron.core.__version__} | "
      f"transformer_engine {'present' if te else 'absent'}")
PY
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    cat "$OUT/env_stderr.txt" >&2
    echo "the environment check failed (see above)" >&2
    exit 2
fi

# 1. Kernel correctness: -m cuda overrides pyproject's default "not slow and not cuda".
PER_TEST=()
"$PYTHON" -c "import pytest_timeout" 2>/dev/null && PER_TEST=(--timeout 100)
# The kernels' tests first, with their own limit, so that slow other tests cannot hide them.
PYTEST=("$PYTHON" -m pytest -m cuda -q -rs -p no:cacheprovider ${PER_TEST[@]+"${PER_TEST[@]}"})
step 1 "RG-LRU kernel candidates (pytest -m cuda tests/ops)" 80 tests/ops "${PYTEST[@]}" tests/ops
step 1b "other CUDA tests (flex gradients, memory model, TE)" 50 tests/conftest.py \
    "${PYTEST[@]}" tests --ignore=tests/ops

if [ "$DRY_RUN" -eq 1 ]; then SIZES=(--device cpu --tiny); else SIZES=(--device cuda); fi

# 2. RG-LRU forward/backward throughput (the kernel's own benchmark and grid).
step 2 "RG-LRU fwd/bwd GB/s, 400M and 14B shapes" 60 benchmarks/rglru.py \
    "$PYTHON" benchmarks/rglru.py "${SIZES[@]}" --markdown "$DETAILS"

# 3. Local attention: flex vs blocked vs math.
step 3 "local attention flex/blocked/math, T=8K W=1024" 60 benchmarks/local_attention.py \
    "$PYTHON" benchmarks/local_attention.py "${SIZES[@]}" --markdown "$DETAILS"

# 4. bf16 training step against the MQA Transformer of the same parameter count.
if [ "$DRY_RUN" -eq 1 ]; then
    TRAIN=(--device cpu --tiny --seq-lengths 64 --steps 1 --warmup 1)
else
    TRAIN=(--device cuda --seq-lengths 2048 8192 --steps 5 --warmup 2)
fi
step 4 "training step vs MQA GPT, 2K and 8K" 100 benchmarks/train_throughput.py \
    "$PYTHON" benchmarks/train_throughput.py "${TRAIN[@]}" --markdown "$DETAILS"

# 5. Decode at 8K context, batch 16, against the same Transformer shape.
MATCHED=(--models griffin mqa-transformer --match-parameters --contexts --hf-contexts --warmup)
if [ "$DRY_RUN" -eq 1 ]; then
    DECODE=(--quick --batch16-contexts 256 --new-tokens 4)
else
    DECODE=(--device cuda --bf16 --preset griffin-400m --batch16-contexts 8192 --new-tokens 32)
fi
step 5 "decode vs MQA transformer, 8K x batch 16" 90 benchmarks/decode.py \
    "$PYTHON" benchmarks/decode.py "${DECODE[@]}" "${MATCHED[@]}" --markdown "$DETAILS"

SUMMARY="$OUT/summary.md"
{
    echo "| step | what | status | s | result |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} > "$SUMMARY"
{
    echo
    echo "## $TITLE, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(head -n 1 "$OUT/env.txt")"
    echo
    cat "$SUMMARY"
    cat "$OUT/step1.log" "$OUT/step1b.log" 2>/dev/null | grep '^SKIPPED' | sed 's/^/    /'
    cat "$DETAILS"
} >> "$TABLE"
[ "$DRY_RUN" -eq 1 ] || cp benchmarks/RESULTS.md "$OUT/RESULTS.md"

echo
echo "=== $TITLE (logs in $OUT; written to $TABLE)"
cat "$SUMMARY"
exit "$FAILED"
