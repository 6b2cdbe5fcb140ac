#!/usr/bin/env bash
# End-to-end tests of the wproj command-line tool (run by ctest as cli_end_to_end):
#   run.sh WPROJ CHECK WORKDIR
# Writes checkpoints and arrays (with the checker), runs every subcommand, and compares the
# outputs with the library called directly (tests/cli/check.cpp). Also: bf16 round trips, a
# sharded checkpoint, every malformed file rejected with one line on stderr, failures leave no
# output, and `kill -9` during a write leaves no output and the inputs intact.
set -euo pipefail
WPROJ="$1"
CHECK="$2"
DIR="$3"
MALFORMED="$(cd "$(dirname "$0")/../io/malformed" && pwd)"
rm -rf "$DIR"
mkdir -p "$DIR"
cd "$DIR"
pass=0
step() { echo "== $*"; pass=$((pass + 1)); }
die() { echo "cli test FAILED: $*" >&2; exit 1; }

# Runs a command that must fail: exit status non-zero, exactly one line on stderr, matching $1.
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

# Runs a command that must fail with exit status $1 and one line on stderr matching $2.
expect_status() {
  local code="$1" pattern="$2"; shift 2
  set +e
  "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  [ $rc -eq "$code" ] || { cat err.txt; die "expected exit status $code, got $rc: $*"; }
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt; die "expected one line on stderr: $*"; }
  grep -q -- "$pattern" err.txt || { cat err.txt; die "expected '$pattern' in stderr: $*"; }
}

"$CHECK" gen .
"$CHECK" gen-arrays .
"$CHECK" gen-shapes .
md5sum ./*.safetensors ./*.npy > inputs.md5

step "help of every subcommand has an example"
for c in info svd spectrum subspace edit merge "subspace detox" "subspace dama" "subspace inlp" "subspace leace" "subspace mean-diff"; do
  # shellcheck disable=SC2086
  "$WPROJ" $c --help | grep -q "Example" || die "no example in 'wproj $c --help'"
done

step "info"
"$WPROJ" info base.safetensors > info.txt
grep -q "layers.0.mlp.down_proj.weight *F32 *\[16, 24\]" info.txt || { cat info.txt; die "info table"; }
grep -q "total: 6 tensors (3 2-D)" info.txt || { cat info.txt; die "info totals"; }
"$WPROJ" info --json m_bf16.safetensors | grep -q '"BF16"' || die "info --json"

step "svd exact and randomized"
"$WPROJ" svd W.npy --rank 5 --out svd_exact > /dev/null
"$CHECK" svd W.npy svd_exact 5 exact 0
"$WPROJ" svd W.npy --rank 5 --method randomized --power-iters 2 --seed 9 --out svd_rand > /dev/null
"$CHECK" svd W.npy svd_rand 5 randomized 9
expect_fail "rank" "$WPROJ" svd W.npy --rank 31 --out svd_bad
[ ! -e svd_bad/U.npy ] || die "svd failure left output"

step "svd: input read in place, every order and dtype; krylov, power, --tol"
"$CHECK" read .
"$WPROJ" svd L_c.npy --rank 20 --out svd_c > svd_c.txt
grep -q "read in place" svd_c.txt || { cat svd_c.txt; die "a C-order f4 input should be used in place"; }
grep -q "svd (krylov, b=10, q=3)" svd_c.txt || { cat svd_c.txt; die "default method on 300x400"; }
"$CHECK" svd-error L_c.npy svd_c 20 1.01
"$WPROJ" svd L_f.npy --rank 20 --out svd_f > svd_f.txt
grep -q "read in place" svd_f.txt || { cat svd_f.txt; die "a Fortran-order f4 input should be used in place"; }
"$CHECK" svd-error L_f.npy svd_f 20 1.01
"$WPROJ" svd L_h.npy --rank 20 --out svd_h > svd_h.txt
grep -q "converted from F16" svd_h.txt || { cat svd_h.txt; die "f2 input conversion"; }
"$CHECK" svd-error L_h.npy svd_h 20 1.01
"$WPROJ" svd L_d.npy --rank 40 --method krylov --block-size 16 --out svd_k > /dev/null
"$CHECK" svd-error L_d.npy svd_k 40 1.01
"$WPROJ" svd L_d.npy --rank 40 --method power --power-iters 3 --out svd_p > /dev/null
"$CHECK" svd-error L_d.npy svd_p 40 1.05
"$WPROJ" svd L_d.npy --rank 150 --tol 0.2 --out svd_t > svd_t.txt
rank_t=$(sed -n 's/.*), rank \([0-9]*\):.*/\1/p' svd_t.txt)
[ -n "$rank_t" ] && [ "$rank_t" -lt 150 ] || { cat svd_t.txt; die "--tol should choose a rank below the cap"; }
"$CHECK" svd-error L_d.npy svd_t "$rank_t" 1.5
expect_status 2 "block-size" "$WPROJ" svd L_d.npy --rank 4 --block-size 0 --out svd_x
expect_status 2 "tol" "$WPROJ" svd L_d.npy --rank 4 --tol 1.5 --out svd_x
[ ! -e svd_x ] || die "refused svd created its output folder"

step "spectrum (csv and json)"
"$WPROJ" spectrum base.safetensors --min-tail 4 > spectrum.csv
"$CHECK" spectrum base.safetensors spectrum.csv
"$WPROJ" spectrum base.safetensors --tensors 'down_proj' --format json --min-tail 4 | grep -q '"effective_rank"' || die "spectrum json"
# A rank-3 matrix: the 13 numerically zero singular values stay out of the power-law fit.
"$WPROJ" spectrum lowrank.safetensors --min-tail 2 --format json > lowrank.json
grep -q '"alpha_zero": 13' lowrank.json || { cat lowrank.json; die "spectrum: numerically zero eigenvalues in the fit"; }
grep -q '"alpha_tail": [23],' lowrank.json || { cat lowrank.json; die "spectrum: tail of the rank-3 fit"; }
expect_status 2 "min-tail 1" "$WPROJ" spectrum base.safetensors --min-tail 1
expect_status 2 "min-tail 0" "$WPROJ" spectrum base.safetensors --min-tail 0

step "subspace estimators"
"$WPROJ" subspace detox --pos P.npy --neg N.npy --rank 2 -o detox.npy > /dev/null
"$CHECK" subspace detox detox.npy P.npy N.npy
"$WPROJ" subspace dama --inputs H.npy --targets V.npy --rank 3 -o dama.npy > /dev/null
"$CHECK" subspace dama dama.npy H.npy V.npy
"$WPROJ" subspace mean-diff --a A.npy --b B.npy -o md.npy > /dev/null
"$CHECK" subspace mean-diff md.npy A.npy B.npy
"$WPROJ" subspace inlp --x X.npy --labels z.npy --iterations 5 -o inlp.npy > /dev/null
"$CHECK" subspace inlp inlp.npy X.npy z.npy
"$WPROJ" subspace leace --x X.npy --labels z.npy -o eraser.safetensors > /dev/null
"$WPROJ" info eraser.safetensors | grep -q "left" || die "leace eraser file"

step "edit (output and input side, partial strength, LEACE fold)"
"$WPROJ" edit base.safetensors --basis md.npy --tensors 'down_proj\.weight|o_proj' --side output -o edited.safetensors > edit.txt
grep -q "edited 2 of 6 tensors" edit.txt || { cat edit.txt; die "edit report"; }
"$CHECK" edit base.safetensors edited.safetensors md.npy 'down_proj\.weight|o_proj' output 1.0
"$WPROJ" edit base.safetensors --basis detox.npy --tensors 'o_proj' --side input --strength 0.5 -o edited_in.safetensors > /dev/null
"$CHECK" edit base.safetensors edited_in.safetensors detox.npy 'o_proj' input 0.5
"$WPROJ" edit base.safetensors --leace eraser.safetensors --tensors 'down_proj\.weight' -o leace.safetensors > /dev/null
"$CHECK" leace-edit base.safetensors leace.safetensors eraser.safetensors layers.0.mlp.down_proj.weight layers.0.mlp.down_proj.bias
expect_fail "dimension" "$WPROJ" edit base.safetensors --basis dama.npy --tensors 'o_proj' --side output -o bad.safetensors
[ ! -e bad.safetensors ] || die "edit failure left output"

step "merge: every method equals the library on in-memory checkpoints"
for spec in "task_arithmetic lambda 0.7" "ties density 0.5" "dare_linear density 0.7" "dare_ties density 0.5" \
            "linear - -" "iso_c alpha 1.0" "iso_cts alpha 1.0" "tsv alpha 1.0" "model_stock - -" "opcm alpha 0.5" \
            "task_slerp t 0.3" "slerp t 0.3"; do
  read -r method pname pval <<< "$spec"
  models="m1.safetensors m2.safetensors m3.safetensors"
  [ "$method" = task_slerp ] && models="m1.safetensors m2.safetensors"
  [ "$method" = slerp ] && models="m1.safetensors"
  {
    echo "merge_method: $method"
    echo "base_model: base.safetensors"
    echo "models:"
    for m in $models; do
      echo "  - model: $m"
      # mergekit's methods with a weight require it for every model.
      case "$method" in task_arithmetic|ties|dare_*|linear) echo "    parameters: {weight: 1.0}" ;; esac
    done
    if [ "$pname" != - ]; then echo "parameters:"; echo "  $pname: $pval"; fi
    echo "seed: 3"
    echo "tensors:"
    echo "  - {pattern: 'embed_tokens', action: skip}"
  } > "$method.yaml"
  "$WPROJ" merge "$method.yaml" -o "merged_$method.safetensors" --report "report_$method.json" 2> /dev/null
  # shellcheck disable=SC2086
  "$CHECK" merge "$method" "${pval/-/0}" "merged_$method.safetensors" - embed_tokens base.safetensors $models
  grep -q '"delta_norm"' "report_$method.json" || die "merge report of $method"
done

step "merge: bf16 input, bf16/f16 output, sharded output folder"
cat > bf16.yaml <<'EOF'
merge_method: task_arithmetic
base_model: base.safetensors
models:
  - model: m1.safetensors
  - model: m_bf16.safetensors
parameters: {lambda: 0.5, weight: 1.0}
out_dtype: bfloat16
max_shard_size: 1500
EOF
"$WPROJ" merge bf16.yaml -o sharded --report report_bf16.json 2> /dev/null
[ -f sharded/model.safetensors.index.json ] || die "no index in sharded output"
[ "$(ls sharded/model-*.safetensors | wc -l)" -gt 1 ] || die "expected several shards"
"$CHECK" merge task_arithmetic 0.5 sharded bfloat16 - base.safetensors m1.safetensors m_bf16.safetensors
"$WPROJ" info sharded | grep -q "BF16" || die "info on a sharded folder"
# bf16 round trip: editing the sharded bf16 model with strength 0 reproduces it byte for byte.
"$WPROJ" edit sharded/model.safetensors.index.json --basis md.npy --tensors o_proj --strength 0 -o roundtrip.safetensors > /dev/null
"$WPROJ" edit roundtrip.safetensors --basis md.npy --tensors o_proj --strength 0 -o roundtrip2 --max-shard-size 1500 > /dev/null
"$CHECK" same roundtrip.safetensors roundtrip2
sed 's/bfloat16/float16/' bf16.yaml | grep -v max_shard > f16.yaml
"$WPROJ" merge f16.yaml -o merged_f16.safetensors --report /dev/null 2> /dev/null
"$CHECK" merge task_arithmetic 0.5 merged_f16.safetensors float16 - base.safetensors m1.safetensors m_bf16.safetensors

step "merge: dry run writes nothing; mismatches and bad configs fail with one line"
"$WPROJ" merge ties.yaml --dry-run -o never.safetensors > plan.txt
grep -q "estimated peak memory" plan.txt || die "dry run plan"
[ ! -e never.safetensors ] || die "dry run wrote output"
sed 's/m3.safetensors/m_vocab.safetensors/; /embed_tokens/d; /^tensors:/d' ties.yaml > vocab.yaml
expect_fail "shape mismatch for tensor 'embed_tokens.weight'" "$WPROJ" merge vocab.yaml -o vocab.safetensors
[ ! -e vocab.safetensors ] || die "failed merge left output"
printf 'merge_method: ties\nbase_model: base.safetensors\nmodels: [m1.safetensors]\nparameters: {densty: 0.2}\n' > typo.yaml
expect_fail "parameter 'densty'" "$WPROJ" merge typo.yaml -o typo.safetensors
expect_fail "is the input" "$WPROJ" merge ties.yaml -o m1.safetensors
expect_fail "no tensor\|no 2-D" "$WPROJ" edit base.safetensors --basis md.npy --tensors nomatch -o x.safetensors

step "merge --list-methods: the registry, the same methods as the table of docs/merging.md"
DOCS="$(cd "$(dirname "$0")/../../docs" && pwd)"
"$WPROJ" merge --list-methods > methods.txt
listed="$(grep -E '^[a-z_]+( \(also [a-z_]+\))*: ' methods.txt | sed 's/[ :].*//' | sort)"
documented="$(sed -n '/^### Methods by name/,/^## /p' "$DOCS/merging.md" | grep -E '^\| `[a-z_]+`' | sed 's/^| `\([a-z_]*\)`.*/\1/' | sort)"
[ -n "$listed" ] && [ "$listed" = "$documented" ] || { cat methods.txt; die "--list-methods ($listed) and docs/merging.md ($documented) differ"; }
for m in $listed; do
  # every parameter the listing gives for the method is in its row of the table
  for p in $(sed -n "/^$m[: ]/,/^[a-z]/p" methods.txt | grep -E '^    [a-z_]+ ' | awk '{print $1}'); do
    grep -E "^\| \`$m\`" "$DOCS/merging.md" | grep -q "\`$p\`" || die "parameter $p of $m missing from docs/merging.md"
  done
done
grep -q "^    rescale  *bool  *true" methods.txt || { cat methods.txt; die "typed parameters in --list-methods"; }
"$WPROJ" merge --help | grep -q "ties int8_mask=false normalize=true rescale=false lambda=1" || die "merge --help lists the methods"
expect_status 2 "list-methods" "$WPROJ" merge --list-methods ties.yaml
expect_status 2 "CONFIG" "$WPROJ" merge -o x.safetensors
printf 'merge_method: nope\nbase_model: base.safetensors\nmodels: [m1.safetensors]\n' > nope.yaml
expect_fail "unknown merge_method 'nope' (expected one of task_arithmetic, ties, dare_ties" "$WPROJ" merge nope.yaml --dry-run
printf 'merge_method: slerp\nbase_model: base.safetensors\nmodels: [m1.safetensors, m2.safetensors, m3.safetensors]\nparameters: {t: 0.5}\n' > slerp3.yaml
expect_fail "merge method 'slerp'.*exactly 1" "$WPROJ" merge slerp3.yaml --dry-run
printf 'merge_method: ties\nbase_model: base.safetensors\nmodels: [m1.safetensors]\nparameters: {density: 1.5, weight: 1}\n' > dens.yaml
expect_fail "merge method 'ties'.*'density'.*1.5" "$WPROJ" merge dens.yaml --dry-run
# mergekit requires the weight of task arithmetic and its family.
printf 'merge_method: ties\nbase_model: base.safetensors\nmodels: [m1.safetensors]\nparameters: {density: 0.5}\n' > noweight.yaml
expect_fail "'weight'" "$WPROJ" merge noweight.yaml --dry-run
# dare (0.1.0's name) is dare_linear: the same bytes.
printf 'merge_method: dare_linear\nbase_model: base.safetensors\nmodels:\n  - model: m1.safetensors\n    parameters: {weight: 0.5}\n  - model: m2.safetensors\n    parameters: {weight: 1}\nparameters: {density: 0.75}\nseed: 3\n' > dl.yaml
sed 's/dare_linear/dare/' dl.yaml > dd.yaml
"$WPROJ" merge dl.yaml -o dl.safetensors --report /dev/null 2> /dev/null
"$WPROJ" merge dd.yaml -o dd.safetensors --report /dev/null 2> /dev/null
"$CHECK" same dl.safetensors dd.safetensors

step "exit status: 2 and one line for a malformed command line, 1 for a failure"
"$WPROJ" --help > /dev/null || die "--help"
"$WPROJ" svd --help > /dev/null || die "svd --help"
expect_status 2 "rank" "$WPROJ" svd W.npy --out svd_u
expect_status 2 "frobnicate" "$WPROJ" frobnicate
expect_status 2 "subcommand" "$WPROJ"
expect_status 2 "method" "$WPROJ" svd W.npy --rank 2 --method nope --out svd_u
expect_status 2 "rank" "$WPROJ" svd W.npy --rank x --out svd_u
expect_status 2 "extra" "$WPROJ" info base.safetensors extra
expect_status 2 "strength" "$WPROJ" edit base.safetensors --basis md.npy --tensors o_proj --strength 2 -o s.safetensors
expect_status 2 "exactly one of" "$WPROJ" edit base.safetensors --tensors o_proj -o s.safetensors
expect_status 1 "rank" "$WPROJ" svd W.npy --rank 31 --out svd_u
expect_status 1 "no tensor\|cannot open" "$WPROJ" info missing.safetensors
[ ! -e svd_u ] && [ ! -e s.safetensors ] || die "a refused command wrote output"

step "a folder output is replaced as a whole: no stale shard or index survives"
"$WPROJ" merge bf16.yaml -o reuse --report /dev/null 2> /dev/null
[ -f reuse/model.safetensors.index.json ] || die "reuse: expected a sharded folder first"
grep -v max_shard bf16.yaml > bf16_single.yaml
"$WPROJ" merge bf16_single.yaml -o reuse --report /dev/null 2> /dev/null
[ "$(ls -A reuse)" = "model.safetensors" ] || { ls -A reuse; die "stale files in a reused output folder"; }
"$WPROJ" info reuse | grep -q ": 1 file(s)" || die "info on the reused folder"
"$CHECK" merge task_arithmetic 0.5 reuse bfloat16 - base.safetensors m1.safetensors m_bf16.safetensors
"$WPROJ" edit reuse --basis md.npy --tensors o_proj --strength 0 -o reuse2 --max-shard-size 1500 > /dev/null
"$WPROJ" edit reuse --basis md.npy --tensors o_proj --strength 0 -o reuse2 > /dev/null
[ "$(ls -A reuse2)" = "model.safetensors" ] || { ls -A reuse2; die "edit: stale files in a reused output folder"; }
ls -A | grep -q '^\.reuse' && die "a staging folder was left behind"
mkdir -p keep && echo '{}' > keep/config.json
expect_fail "config.json" "$WPROJ" merge bf16.yaml -o keep --report /dev/null
[ -f keep/config.json ] && [ "$(ls -A keep)" = "config.json" ] || die "a refused folder output was changed"

step "an output that is, contains or lies inside an input is refused"
mkdir -p h2 && cp m1.safetensors h2/model.safetensors
expect_fail "contains the input" "$WPROJ" edit h2/model.safetensors --basis md.npy --tensors o_proj -o h2
cmp -s h2/model.safetensors m1.safetensors || die "the input was replaced"
expect_fail "lies inside the input folder" "$WPROJ" edit h2 --basis md.npy --tensors o_proj -o h2/edited.safetensors
ln -sf m2.safetensors link.safetensors
expect_fail "is the input" "$WPROJ" merge ties.yaml -o link.safetensors
expect_fail "is the input" "$WPROJ" merge ties.yaml -o ./h2/../m3.safetensors
expect_fail "is the input" "$WPROJ" merge ties.yaml -o t.safetensors --report m2.safetensors
expect_fail "is the input" "$WPROJ" subspace mean-diff --a A.npy --b B.npy -o B.npy
[ "$(ls h2)" = "model.safetensors" ] && [ ! -e t.safetensors ] || die "a refused command wrote output"

step "every output location is checked before any work"
mkdir -p isdir.safetensors
expect_fail "is an existing folder" "$WPROJ" edit base.safetensors --basis md.npy --tensors o_proj -o isdir.safetensors
expect_fail "does not exist" "$WPROJ" merge ties.yaml -o late.safetensors --report missing_dir/r.json
[ ! -e late.safetensors ] || die "the merge wrote its output before failing on --report"
expect_fail "does not exist" "$WPROJ" edit base.safetensors --basis md.npy --tensors o_proj -o late.safetensors --report missing_dir/r.json
[ ! -e late.safetensors ] || die "the edit wrote its output before failing on --report"
expect_fail "does not exist" "$WPROJ" merge ties.yaml -o missing_dir/out.safetensors
expect_fail "does not exist" "$WPROJ" subspace mean-diff --a A.npy --b B.npy -o missing_dir/md.npy
expect_fail "does not exist" "$WPROJ" svd W.npy --rank 2 --out missing_dir/svd
expect_fail "is an existing folder" "$WPROJ" subspace mean-diff --a A.npy --b B.npy -o isdir.safetensors
expect_fail "not a folder" "$WPROJ" svd W.npy --rank 2 --out W.npy
expect_status 2 "same file" "$WPROJ" merge ties.yaml -o same.safetensors --report ./same.safetensors
mkdir -p same_dir
expect_fail "lies inside the output folder" "$WPROJ" merge ties.yaml -o same_dir --report same_dir/r.json
[ ! -e same.safetensors ] && [ -z "$(ls -A same_dir)" ] || die "a refused merge wrote output"

step "merge: full shapes compared; empty tensors copied through"
printf 'merge_method: task_arithmetic\nbase_model: s_base.safetensors\nmodels: [s_m1.safetensors, s_flat.safetensors]\nparameters: {weight: 1.0}\n' > shapes_bad.yaml
expect_fail "shape mismatch for tensor 'w3d': \[2, 3, 4\]" "$WPROJ" merge shapes_bad.yaml -o shapes_bad.safetensors
printf 'merge_method: task_arithmetic\nbase_model: s_base.safetensors\nmodels: [s_m1.safetensors]\nparameters: {weight: 1.0}\n' > shapes.yaml
"$WPROJ" merge shapes.yaml -o shapes.safetensors --report shapes.json 2> /dev/null
"$WPROJ" info shapes.safetensors | grep -q "empty *F32 *\[0, 16\]" || die "the empty tensor was not copied"
"$WPROJ" info shapes.safetensors | grep -q "w3d *F32 *\[2, 3, 4\]" || die "the 3-D tensor"

step "every malformed file is rejected with one line and a non-zero status"
n=0
while IFS=$'\t' read -r file msg; do
  case "$file" in \#*|"") continue ;; esac
  case "$file" in
    *.npy) expect_fail "$msg" "$WPROJ" svd "$MALFORMED/$file" --rank 1 --out malformed_out ;;
    *) expect_fail "$msg" "$WPROJ" info "$MALFORMED/$file" ;;
  esac
  n=$((n + 1))
done < "$MALFORMED/EXPECTED.tsv"
[ "$n" -ge 35 ] || die "only $n malformed files"
[ ! -e malformed_out/U.npy ] || die "malformed input produced output"

step "kill -9 during a merge leaves no output file and the inputs intact"
mkdir -p big
"$CHECK" gen-large big 3 1024
big_sum=$(md5sum big/*.safetensors)
printf 'merge_method: ties\nbase_model: big/big0.safetensors\nmodels: [big/big1.safetensors, big/big2.safetensors, big/big3.safetensors]\nparameters: {weight: 1.0}\n' > big.yaml
before=$(ls -a big | sort)
"$WPROJ" merge big.yaml -o big/out.safetensors --report /dev/null 2> /dev/null &
pid=$!
# Wait until the output is open (an unnamed O_TMPFILE inode, or a hidden temporary name), then kill.
for _ in $(seq 1 1000); do
  ls -l "/proc/$pid/fd" 2> /dev/null | grep -q 'big/#\|big/\.out' && break
  sleep 0.01
done
sleep 0.05
kill -9 $pid 2> /dev/null || die "the merge finished before it could be killed (make the test input larger)"
wait $pid 2> /dev/null || true
[ "$(ls -a big | sort)" = "$before" ] || { ls -la big; die "kill -9 left files behind"; }
step "dtypes this version cannot convert (F8_E8M0, unknown names) are listed and copied through byte for byte"
# Writes a safetensors file from a JSON header and raw data bytes (printf escapes).
mkst() {
  local hdr="$1" data="$2" out="$3"
  while [ $(( ${#hdr} % 8 )) -ne 0 ]; do hdr="$hdr "; done
  local n=${#hdr} le="" i
  for i in 0 1 2 3 4 5 6 7; do le="$le\\x$(printf %02x $(( (n >> (8 * i)) & 255 )))"; done
  printf "$le%s$data" "$hdr" > "$out"
}
f32=$'\\x00\\x00\\x80\\x3f'   # 1.0f
mkst '{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"z.scale":{"dtype":"F8_E8M0","shape":[4],"data_offsets":[16,20]},"z.zz":{"dtype":"F9_NEW","shape":[2],"data_offsets":[20,22]}}' \
  "$f32$f32$f32$f32\\x01\\x02\\x03\\x04\\x05\\x06" newdt_base.safetensors
mkst '{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"z.scale":{"dtype":"F8_E8M0","shape":[4],"data_offsets":[16,20]},"z.zz":{"dtype":"F9_NEW","shape":[2],"data_offsets":[20,22]}}' \
  "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\x02\\x03\\x04\\x05\\x06" newdt_m1.safetensors
"$WPROJ" info newdt_base.safetensors | grep -q "F8_E8M0" || die "info does not list F8_E8M0"
"$WPROJ" info newdt_base.safetensors --json | grep -q '"F9_NEW"' || die "info does not list an unknown dtype by its name"
printf 'merge_method: task_arithmetic\nbase_model: newdt_base.safetensors\nmodels:\n  - model: newdt_m1.safetensors\n    parameters: {weight: 1.0}\n' > newdt.yaml
"$WPROJ" merge newdt.yaml -o newdt_out.safetensors --report /dev/null 2> /dev/null || die "merge with an F8_E8M0 tensor failed"
[ "$(tail -c 6 newdt_out.safetensors | od -An -tx1 | tr -d ' \n')" = "010203040506" ] || die "F8_E8M0/unknown bytes not copied through"
"$WPROJ" info newdt_out.safetensors --json | grep -q '"F9_NEW"' || die "merged output lost the unknown dtype"

[ "$(md5sum big/*.safetensors)" = "$big_sum" ] || die "inputs changed"
rm -rf big

md5sum -c --quiet inputs.md5 || die "inputs were modified"
echo "cli tests: $pass groups passed"
