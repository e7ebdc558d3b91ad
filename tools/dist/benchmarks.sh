# Shared by test.sh, multi_test.sh and distribute_test.sh (sourced, not run).
# Environment: DATA_DIR (default data), CLIP_PATH (ViT-B/16), VFM_PATH (each config's own,
#              e.g. dino_vitb8: for methods that read a second vision model), SAM_PATH (each
#              config's own, sam_vit_b: for methods that read SAM), WORK_DIR (work_dirs),
#              METHODS (sfp; e.g. "sfp sclip naclip"), PROTOCOL (none: each method's
#              release setting; "paper" or a protocol file runs every method under it, in
#              WORK_DIR/<protocol>/; see docs/protocols.md), PYTHON (.venv/bin/python when
#              it exists, else python).
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
DATA_DIR=${DATA_DIR:-data}
CLIP_PATH=${CLIP_PATH:-ViT-B/16}
WORK_DIR=${WORK_DIR:-work_dirs}
read -r -a SFP_METHODS <<< "${METHODS:-sfp}"
PROTOCOL_ARGS=()
[ -n "${PROTOCOL:-}" ] && PROTOCOL_ARGS=(--protocol "$PROTOCOL")
VFM_ARGS=()
[ -n "${VFM_PATH:-}" ] && VFM_ARGS=(--vfm-path "$VFM_PATH")
[ -n "${SAM_PATH:-}" ] && VFM_ARGS+=(--sam-path "$SAM_PATH")

# sfp_plan BENCH... : sets SFP_PLAN, one line per run ("method bench config root run"; run:
# the work dir under WORK_DIR); an unknown benchmark, method or protocol stops the script
# with a one-line error.
sfp_plan() {
  local out
  out=$("$PYTHON" tools/benchmarks.py plan --methods "${SFP_METHODS[@]}" \
    "${PROTOCOL_ARGS[@]}" -- "$@") || exit 2
  mapfile -t SFP_PLAN <<< "$out"
}

# sfp_test_args CONFIG ROOT RUN : tools/test.py arguments of one run.
sfp_test_args() {
  printf '%s\n' "$1" --data-root "$DATA_DIR/$2" --clip-path "$CLIP_PATH" \
    --work-dir "$WORK_DIR/$3" "${PROTOCOL_ARGS[@]}" "${VFM_ARGS[@]}"
}

# sfp_summary BENCH... : print and save the table (methods by benchmarks).
sfp_summary() {
  "$PYTHON" tools/summarize.py "$WORK_DIR" --methods "${SFP_METHODS[@]}" \
    "${PROTOCOL_ARGS[@]}" --benchmarks "$@"
}
