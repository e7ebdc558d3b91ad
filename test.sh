#!/usr/bin/env bash
# Evaluate SFP on one benchmark (one GPU, or the CPU).
#   bash test.sh BENCHMARK [extra tools/test.py options]
#   BENCHMARK: voc21 voc20 context60 context59 coco_object coco_stuff164k cityscapes ade20k
# Environment: DATA_DIR (default data), CLIP_PATH (default ViT-B/16), WORK_DIR (work_dirs).
set -euo pipefail
cd "$(dirname "$0")"
source tools/dist/benchmarks.sh
[ $# -ge 1 ] || { echo "usage: bash test.sh BENCHMARK [tools/test.py options]" >&2; exit 2; }
bench=$1; shift
args=$(sfp_test_args "$bench")
# shellcheck disable=SC2086
"$PYTHON" tools/test.py $args "$@"
sfp_summary "$bench"
