#!/usr/bin/env bash
# End-to-end tests of `wproj extract-lora` and `wproj apply-lora` (run by ctest as cli_lora):
#   lora.sh WPROJ WORKDIR
# Writes small decoder-like checkpoints (f32 and bf16) with tests/cli/check_adapter.py, extracts
# adapters with every rank rule and checks keys, shapes, dtypes, adapter_config.json and
# scale·B·A against NumPy's truncated SVD; applies them back (within the reported error),
# subtracts them, and checks that bad inputs fail with one line and leave no output.
# Exit status 77 (skipped) when no python3 with NumPy is found.
set -euo pipefail
WPROJ="$1"
DIR="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
CHECKPY="$HERE/check_adapter.py"
# Debian's interpreter first (its NumPy comes from python3-numpy), as scripts/common.sh does.
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3 || true)"
if [ -z "$PY" ] || ! "$PY" -c "import numpy" 2>/dev/null; then
  echo "cli_lora skipped: no python3 with NumPy"
  exit 77
fi
rm -rf "$DIR"
mkdir -p "$DIR"
cd "$DIR"
step() { echo "== $*"; }
die() { echo "lora cli test FAILED: $*" >&2; exit 1; }
check() { "$PY" "$CHECKPY" "$@" || die "check_adapter.py $*"; }

# Runs a command that must fail: exit status non-zero, exactly one line on stderr matching $1.
expect_fail() {
  local pattern="$1"; shift
  set +e
  "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  [ $rc -ne 0 ] || die "expected failure: $*"
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt; die "expected one line on stderr: $*"; }
  grep -q -- "$pattern" err.txt || { cat err.txt; die "expected '$pattern' in stderr: $*"; }
}

check gen .
md5sum ./*.safetensors > inputs.md5

step "help has examples"
"$WPROJ" extract-lora --help | grep -q "Example" || die "extract-lora --help"
"$WPROJ" apply-lora --help | grep -q "Example" || die "apply-lora --help"

step "fixed rank, f32"
"$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o a_rank --rank 6 --report a_rank.json > a_rank.txt
grep -q "lora_only\|LoRA modules" a_rank.txt || { cat a_rank.txt; die "summary"; }
[ "$(ls a_rank | sort | tr '\n' ' ')" = "adapter_config.json adapter_model.safetensors " ] || die "adapter folder holds $(ls a_rank)"
check check base_f32.safetensors ft_f32.safetensors a_rank a_rank.json fixed:6

step "rank larger than the tensors is clamped per tensor, float64 compute, split into B"
"$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o a_big --rank 40 --compute-dtype float64 \
  --split b --report a_big.json > a_big.txt
grep -q "clamped" a_big.txt || { cat a_big.txt; die "clamping not shown"; }
check check base_f32.safetensors ft_f32.safetensors a_big a_big.json fixed:40 clamped

step "float16 adapter, singular values into A"
"$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o a_h --rank 5 --split a --dtype float16 \
  --report a_h.json > /dev/null
check check base_f32.safetensors ft_f32.safetensors a_h a_h.json fixed:5 dtype=F16

step "energy rule with --embeddings and --alpha"
"$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o a_energy --energy 0.95 --embeddings \
  --alpha 16 --report a_energy.json > /dev/null
grep -q '"lora_embedding_A"\|lora_embedding_A' a_energy/adapter_model.safetensors || die "no lora_embedding_A"
check check base_f32.safetensors ft_f32.safetensors a_energy a_energy.json energy:0.95 embeddings alpha=16

step "rel-error = energy(1 - eps^2)"
"$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o a_rel --rel-error 0.2 --report a_rel.json > /dev/null
check check base_f32.safetensors ft_f32.safetensors a_rel a_rel.json energy:0.96

step "sv-epsilon on bf16 models (adapter in bf16)"
"$WPROJ" extract-lora --base base_bf16.safetensors --model ft_bf16.safetensors -o a_sv --sv-epsilon 0.05 --report a_sv.json > /dev/null
check check base_bf16.safetensors ft_bf16.safetensors a_sv a_sv.json sv:0.05 dtype=BF16

step "budget"
"$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o a_budget --budget 60KB --report a_budget.json > a_budget.txt
grep -q "predicted" a_budget.txt || { cat a_budget.txt; die "budget summary"; }
check check base_f32.safetensors ft_f32.safetensors a_budget a_budget.json budget budget=60000

step "apply-lora reproduces the fine-tuned model within the reported error; --subtract returns the base"
"$WPROJ" apply-lora --base base_f32.safetensors --adapter a_rank -o merged.safetensors > /dev/null
check applied base_f32.safetensors ft_f32.safetensors merged.safetensors a_rank.json
"$WPROJ" apply-lora --base merged.safetensors --adapter a_rank -o unmerged.safetensors --subtract > sub.txt
grep -q "cannot be subtracted" sub.txt || { cat sub.txt; die "--subtract note"; }
check close unmerged.safetensors base_f32.safetensors 1e-5 _proj.weight
cp -r a_rank a_peft
check peft-names a_peft
grep -q "lora_A.default.weight" a_peft/adapter_model.safetensors || die "peft-names"
"$WPROJ" apply-lora --base base_f32.safetensors --adapter a_peft -o merged_peft.safetensors > /dev/null
cmp merged.safetensors merged_peft.safetensors || die "keys with .default / base_layer give another result"
"$WPROJ" apply-lora --base base_f32.safetensors --adapter a_energy -o merged_e --max-shard-size 40KB > /dev/null
[ -f merged_e/model.safetensors.index.json ] || die "no sharded output"
"$WPROJ" apply-lora --base base_f32.safetensors --adapter a_energy -o merged_e.safetensors > /dev/null
check applied base_f32.safetensors ft_f32.safetensors merged_e.safetensors a_energy.json
"$WPROJ" apply-lora --base base_bf16.safetensors --adapter a_sv -o merged_sv.safetensors > /dev/null
check applied base_bf16.safetensors ft_bf16.safetensors merged_sv.safetensors a_sv.json 1e-2

step "merge config: a model PATH+ADAPTER_DIR is PATH with the adapter applied"
printf 'merge_method: task_arithmetic\nbase_model: base_f32.safetensors\nmodels:\n  - model: base_f32.safetensors+a_rank\n    parameters: {weight: 1.0}\n' > ta.yaml
"$WPROJ" merge ta.yaml -o via_merge.safetensors --report via_merge.json
check close via_merge.safetensors merged.safetensors 1e-6
printf 'merge_method: task_arithmetic\nbase_model: base_f32.safetensors\nmodels:\n  - model: ft_shape.safetensors+a_rank\n    parameters: {weight: 1.0}\n' > ta_bad.yaml
expect_fail "ft_shape.safetensors+a_rank" "$WPROJ" merge ta_bad.yaml -o via_bad.safetensors
[ ! -e via_bad.safetensors ] || die "merge failure left output"

step "bad inputs: one line, nothing written"
expect_fail "model.extra.weight" "$WPROJ" extract-lora --base base_f32.safetensors --model ft_extra.safetensors -o bad1
expect_fail "shape mismatch for tensor 'lm_head.weight': \[64, 48\].*\[65, 48\]" \
  "$WPROJ" extract-lora --base base_f32.safetensors --model ft_shape.safetensors -o bad2
expect_fail "too small.*at least" "$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o bad3 --budget 1000
expect_fail "download it first" "$WPROJ" extract-lora --base meta-llama/Llama-3-8B --model ft_f32.safetensors -o bad4
expect_fail "give one of" "$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o bad5 --rank 4 --energy 0.9
mkdir -p mdir && cp ft_f32.safetensors mdir/adapter_model.safetensors
expect_fail "contains the input\|is the input" "$WPROJ" extract-lora --base base_f32.safetensors --model mdir -o mdir
expect_fail "not a size" "$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o bad6 --budget 12XB
for d in bad1 bad2 bad3 bad4 bad5 bad6; do [ ! -e "$d" ] || die "failure left output $d"; done
cp -r a_rank a_dora
check edit-config a_dora use_dora true
expect_fail "DoRA adapters are not supported" "$WPROJ" apply-lora --base base_f32.safetensors --adapter a_dora -o bad7.safetensors
cp -r a_rank a_r
check edit-config a_r r 5
expect_fail "rank 6 in the file but 5 in adapter_config.json" "$WPROJ" apply-lora --base base_f32.safetensors --adapter a_r -o bad8.safetensors
expect_fail "shape\|is \[" "$WPROJ" apply-lora --base ft_shape.safetensors --adapter a_rank -o bad9.safetensors
[ ! -e bad7.safetensors ] && [ ! -e bad8.safetensors ] && [ ! -e bad9.safetensors ] || die "apply-lora failure left output"
echo "note" > a_rank/notes.txt
expect_fail "holds 'notes.txt'" "$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o a_rank
rm a_rank/notes.txt
"$WPROJ" extract-lora --base base_f32.safetensors --model ft_f32.safetensors -o a_rank --rank 3 > /dev/null  # replaces an adapter folder
md5sum -c --quiet inputs.md5 || die "inputs changed"
echo "cli_lora: all checks passed"
