#!/usr/bin/env bash
# Evaluate each benchmark on N GPUs with torchrun (data-parallel over images), one
# benchmark after another; then print and save the summary table. Without CUDA the
# processes run on the CPU and talk over gloo.
#   bash distribute_test.sh [extra tools/test.py options]
# Run again after a kill (on any number of GPUs), it finishes only what is missing
# (--no-resume: everything afresh).
# Environment: GPUS (processes per node; default: all visible GPUs, at least 1), NNODES (1),
#              NODE_RANK (0), MASTER_ADDR (127.0.0.1), MASTER_PORT (29500), BENCHMARKS
#              (subset), DATA_DIR, CLIP_PATH, VFM_PATH, SAM_PATH, WORK_DIR, METHODS, PROTOCOL
#              (tools/dist/benchmarks.sh).
# Multi-node: run the same command on every node with its NODE_RANK and the rank-0
# node's MASTER_ADDR.
set -uo pipefail
cd "$(dirname "$0")"
source tools/dist/benchmarks.sh
read -r -a benches <<< "${BENCHMARKS:-$("$PYTHON" tools/benchmarks.py list)}"
sfp_plan "${benches[@]}"
if [ -z "${GPUS:-}" ]; then
  GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l)
  [ "$GPUS" -ge 1 ] || GPUS=1
fi
NNODES=${NNODES:-1}; NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}; MASTER_PORT=${MASTER_PORT:-29500}
failed=0
for line in "${SFP_PLAN[@]}"; do
  read -r method bench config root stem <<< "$line"
  echo "[$method $bench] on $NNODES node(s) x $GPUS process(es)"
  mapfile -t args < <(sfp_test_args "$config" "$root" "$stem")
  "$PYTHON" -m torch.distributed.run --nnodes "$NNODES" --node_rank "$NODE_RANK" \
    --nproc_per_node "$GPUS" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    tools/test.py "${args[@]}" --launcher pytorch "$@" || { echo "[$method $bench] FAILED"; failed=1; }
done
if [ "$NODE_RANK" -eq 0 ]; then sfp_summary "${benches[@]}" || failed=1; fi
exit $failed
