#!/usr/bin/env bash
# Evaluate on one benchmark (one GPU, or the CPU), then print the summary table.
#   bash test.sh BENCHMARK [extra tools/test.py options]
#   BENCHMARK: voc21 voc20 context60 context59 coco_object coco_stuff164k cityscapes ade20k
# Run again after a kill, it goes on from the per-image record (--no-resume: afresh).
# Environment: DATA_DIR (default data), CLIP_PATH (ViT-B/16), VFM_PATH, SAM_PATH,
#              WORK_DIR (work_dirs),
#              METHODS (sfp; several run one after another, e.g. "sfp sclip"),
#              PROTOCOL (e.g. paper: every method under the SFP paper's protocol).
set -euo pipefail
cd "$(dirname "$0")"
source tools/dist/benchmarks.sh
[ $# -ge 1 ] || { echo "usage: bash test.sh BENCHMARK [tools/test.py options]" >&2; exit 2; }
bench=$1; shift
sfp_plan "$bench"
for line in "${SFP_PLAN[@]}"; do
  read -r method _ config root stem <<< "$line"
  echo "[$method $bench]"
  mapfile -t args < <(sfp_test_args "$config" "$root" "$stem")
  "$PYTHON" tools/test.py "${args[@]}" "$@"
done
sfp_summary "$bench"
