#!/usr/bin/env bash
# Evaluate each benchmark on N GPUs with torchrun (data-parallel over images), one
# benchmark after another; then print and save the summary table.
#   bash distribute_test.sh [extra tools/test.py options]
# Environment: GPUS (per node; default: all visible), NNODES (1), NODE_RANK (0),
#              MASTER_ADDR (127.0.0.1), MASTER_PORT (29500), BENCHMARKS (subset),
#              DATA_DIR, CLIP_PATH, WORK_DIR (see tools/dist/benchmarks.sh).
# Multi-node: run the same command on every node with its NODE_RANK and the rank-0
# node's MASTER_ADDR.
set -uo pipefail
cd "$(dirname "$0")"
source tools/dist/benchmarks.sh
read -r -a benches <<< "${BENCHMARKS:-${SFP_BENCHMARKS[*]}}"
if [ -z "${GPUS:-}" ]; then
  GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l)
  [ "$GPUS" -ge 1 ] || GPUS=1
fi
NNODES=${NNODES:-1}; NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}; MASTER_PORT=${MASTER_PORT:-29500}
failed=0
for bench in "${benches[@]}"; do
  echo "[$bench] on $NNODES node(s) x $GPUS process(es)"
  # shellcheck disable=SC2046
  "$PYTHON" -m torch.distributed.run --nnodes "$NNODES" --node_rank "$NODE_RANK" \
    --nproc_per_node "$GPUS" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    tools/test.py $(sfp_test_args "$bench") --launcher pytorch "$@" || { echo "[$bench] FAILED"; failed=1; }
done
[ "$NODE_RANK" -eq 0 ] && sfp_summary "${benches[@]}"
exit $failed
