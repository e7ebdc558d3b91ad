#!/usr/bin/env bash
# Evaluate on all eight benchmarks: one run per GPU in parallel when several GPUs are
# visible, one after another otherwise; then print and save the summary table.
#   bash multi_test.sh [extra tools/test.py options]
# Run again after a kill, it finishes only what is missing (--no-resume: everything
# afresh); the table shows a benchmark still unfinished as partial done/total.
# Environment: DATA_DIR, CLIP_PATH, VFM_PATH, SAM_PATH, WORK_DIR, METHODS, PROTOCOL
#              (tools/dist/benchmarks.sh);
#              BENCHMARKS to run a subset, e.g. BENCHMARKS="voc21 ade20k".
# The SFP paper's Table 1, every method under its protocol:
#   PROTOCOL=paper METHODS="clip maskclip cliptrase clearclip sclip naclip proxyclip sfp" bash multi_test.sh
set -uo pipefail
cd "$(dirname "$0")"
source tools/dist/benchmarks.sh
read -r -a benches <<< "${BENCHMARKS:-$("$PYTHON" tools/benchmarks.py list)}"
sfp_plan "${benches[@]}"
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  IFS=',' read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi >/dev/null 2>&1; then
  mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null)
else
  gpus=()
fi
mkdir -p "$WORK_DIR"
EXTRA=("$@")
run_queue() {  # run_queue DEVICE PLAN_LINE... : one device works through its queue
  local device=$1; shift
  local status=0 line method bench config root stem
  for line in "$@"; do
    read -r method bench config root stem <<< "$line"
    echo "[$method $bench] on ${device:-cpu/default device}; log: $WORK_DIR/$stem.out"
    mkdir -p "$(dirname "$WORK_DIR/$stem")"
    mapfile -t args < <(sfp_test_args "$config" "$root" "$stem")
    CUDA_VISIBLE_DEVICES=$device "$PYTHON" tools/test.py "${args[@]}" "${EXTRA[@]}" \
      >"$WORK_DIR/$stem.out" 2>&1 || { echo "[$method $bench] FAILED: $WORK_DIR/$stem.out"; status=1; }
  done
  return $status
}
failed=0
if [ ${#gpus[@]} -ge 2 ]; then
  pids=()
  for i in "${!gpus[@]}"; do
    queue=()
    for j in "${!SFP_PLAN[@]}"; do
      [ $((j % ${#gpus[@]})) -eq "$i" ] && queue+=("${SFP_PLAN[$j]}")
    done
    [ ${#queue[@]} -gt 0 ] && { run_queue "${gpus[$i]}" "${queue[@]}" & pids+=($!); }
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
else
  run_queue "${gpus[0]:-${CUDA_VISIBLE_DEVICES:-}}" "${SFP_PLAN[@]}" || failed=1
fi
sfp_summary "${benches[@]}" || failed=1
exit $failed
