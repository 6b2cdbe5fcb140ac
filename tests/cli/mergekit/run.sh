#!/usr/bin/env bash
# End-to-end check of `wproj merge` as a drop-in for mergekit's `mergekit-yaml CONFIG OUT`:
#   run.sh WPROJ_BINARY WORKDIR [CONFIG_NAME...]
# Generates a small LLaMA-shaped model family (gen_family.py: base + 4 fine-tunes, float32 and
# bfloat16, one sharded), runs `wproj merge` on every config in configs/ (model folders
# substituted for @F@; a few also on the bfloat16 family), and compares every output tensor
# and the output folder's structure with reference.py, an independent float64 NumPy
# implementation of mergekit's methods and config evaluation. One line per run with the
# achieved error; the failures are listed at the end. Exit 0 = all pass, 1 = a mismatch or a
# config wproj refuses, 77 = python3 with NumPy and PyYAML is not available (skip).
# CONFIG_NAMEs (e.g. ties slerp) restrict the run to those configs.
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: run.sh WPROJ_BINARY WORKDIR [CONFIG_NAME...]" >&2
  exit 2
fi
WPROJ="$1"
WORK="$2"
shift 2
ONLY=" $* "
PY=/usr/bin/python3
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$PY" ] || ! "$PY" -c "import numpy, yaml" 2>/dev/null; then
  echo "skipped: $PY with NumPy and PyYAML is required"
  exit 77
fi
[ -x "$WPROJ" ] || { echo "not an executable: $WPROJ" >&2; exit 2; }
rm -rf "$WORK"
mkdir -p "$WORK/cfg" "$WORK/out" "$WORK/log"
"$PY" "$HERE/gen_family.py" "$WORK/family" || { echo "gen_family.py failed" >&2; exit 1; }

# configs also run on the bfloat16 family (methods without sorting or random draws: bfloat16
# inputs have many equal magnitudes, and mergekit's order among equal ones is unspecified)
BF16_TOO=" linear task_arithmetic slerp gradient_slerp model_stock nuslerp "

passed=()
failed=()
run_one() {
  local cfg="$1" fam="$2" name label
  name="$(basename "$cfg" .yml)"
  label="$name"
  [ "$fam" = bf16 ] && label="$name[bf16 in]"
  local tag="${name}_${fam}"
  sed "s#@F@#$WORK/family/$fam#g" "$cfg" > "$WORK/cfg/$tag.yml"
  "$WPROJ" merge "$WORK/cfg/$tag.yml" -o "$WORK/out/$tag" > "$WORK/log/$tag.out" 2> "$WORK/log/$tag.err"
  local rc=$?
  if [ $rc -ne 0 ]; then
    printf 'FAIL %-28s wproj merge exit %d: %s\n' "$label" "$rc" "$(head -c 300 "$WORK/log/$tag.err" | head -1)"
    failed+=("$label (wproj refused: $(head -c 160 "$WORK/log/$tag.err" | head -1))")
    return
  fi
  if "$PY" "$HERE/reference.py" check "$WORK/cfg/$tag.yml" "$WORK/out/$tag" --label "$label"; then
    passed+=("$label")
  else
    failed+=("$label (output differs, see above)")
  fi
}

echo "== wproj merge vs the mergekit reference ($("$PY" "$HERE/reference.py" note))"
for cfg in "$HERE"/configs/*.yml; do
  name="$(basename "$cfg" .yml)"
  if [ "$ONLY" != "  " ]; then case "$ONLY" in *" $name "*) ;; *) continue ;; esac; fi
  run_one "$cfg" f32
  case "$BF16_TOO" in *" $name "*) run_one "$cfg" bf16 ;; esac
done

echo "== ${#passed[@]} passed, ${#failed[@]} failed"
for f in "${failed[@]}"; do echo "   failed: $f"; done
[ ${#failed[@]} -eq 0 ]
