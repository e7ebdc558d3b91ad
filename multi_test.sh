#!/usr/bin/env bash
# Evaluate SFP on all eight benchmarks: one per GPU in parallel when several GPUs are
# visible, one after another otherwise; then print and save the summary table.
#   bash multi_test.sh [extra tools/test.py options]
# Environment: DATA_DIR, CLIP_PATH, WORK_DIR (see tools/dist/benchmarks.sh);
#              BENCHMARKS to run a subset, e.g. BENCHMARKS="voc21 ade20k".
set -uo pipefail
cd "$(dirname "$0")"
source tools/dist/benchmarks.sh
read -r -a benches <<< "${BENCHMARKS:-${SFP_BENCHMARKS[*]}}"
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  IFS=',' read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi >/dev/null 2>&1; then
  mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null)
else
  gpus=()
fi
mkdir -p "$WORK_DIR"
run_queue() {  # run_queue DEVICE BENCH... : one device works through its queue
  local device=$1; shift
  local status=0
  for bench in "$@"; do
    echo "[$bench] on ${device:-cpu/default device}; log: $WORK_DIR/$bench.out"
    # shellcheck disable=SC2046
    CUDA_VISIBLE_DEVICES=$device "$PYTHON" tools/test.py $(sfp_test_args "$bench") \
      "${EXTRA[@]}" >"$WORK_DIR/$bench.out" 2>&1 || { echo "[$bench] FAILED"; status=1; }
  done
  return $status
}
EXTRA=("$@")
failed=0
if [ ${#gpus[@]} -ge 2 ]; then
  pids=()
  for i in "${!gpus[@]}"; do
    queue=()
    for j in "${!benches[@]}"; do
      [ $((j % ${#gpus[@]})) -eq "$i" ] && queue+=("${benches[$j]}")
    done
    [ ${#queue[@]} -gt 0 ] && { run_queue "${gpus[$i]}" "${queue[@]}" & pids+=($!); }
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
else
  run_queue "${gpus[0]:-${CUDA_VISIBLE_DEVICES:-}}" "${benches[@]}" || failed=1
fi
sfp_summary "${benches[@]}"
exit $failed
