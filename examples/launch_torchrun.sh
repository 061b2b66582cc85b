#!/usr/bin/env bash
# Multi-node training with torchrun: run this same script on every node.
#
#   RECIPE=griffin-14b DATA_PATH=/data/corpus_text_document \
#   NNODES=8 NODE_RANK=<0..7> MASTER_ADDR=<node 0 host> bash examples/launch_torchrun.sh [extra args]
#
# RECIPE       shipped recipe name (griffin_megatron/recipes/<name>.yaml) or a YAML path
# DATA_PATH    Megatron indexed dataset prefix(es) written by `griffin-megatron preprocess`;
#              several weighted prefixes as one string: "0.7 /data/a_text_document 0.3 /data/b_..."
# NNODES, NODE_RANK, MASTER_ADDR   the job's nodes, this node's index, node 0's address
# MASTER_PORT (29500), GPUS_PER_NODE (8), RUN_DIR (runs/<recipe>): checkpoints and TensorBoard
# Extra arguments go to `griffin-megatron train` and override the recipe.
# Check the layout first: griffin-megatron plan --recipe "$RECIPE"
set -euo pipefail

: "${RECIPE:?set RECIPE to a recipe name, e.g. griffin-14b}"
: "${DATA_PATH:?set DATA_PATH to the dataset prefix written by griffin-megatron preprocess}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-localhost}"
MASTER_PORT="${MASTER_PORT:-29500}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A shipped recipe name (installed with the package) or a YAML path: `train --config` takes both.
CONFIG="$RECIPE"
RUN_DIR="${RUN_DIR:-$ROOT/runs/$(basename "$CONFIG" .yaml)}"

# Megatron overlaps tensor-parallel communication with compute only with one hardware queue.
export CUDA_DEVICE_MAX_CONNECTIONS=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"

read -r -a DATA_ARGS <<< "$DATA_PATH"
exec torchrun \
    --nnodes "$NNODES" --node-rank "$NODE_RANK" --nproc-per-node "$GPUS_PER_NODE" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m griffin_megatron train \
    --config "$CONFIG" \
    --data-path "${DATA_ARGS[@]}" \
    --save "$RUN_DIR/checkpoints" --load "$RUN_DIR/checkpoints" \
    --tensorboard-dir "$RUN_DIR/tensorboard" \
    "$@"
