#!/usr/bin/env bash
# End-to-end tests of `wproj merge` on mergekit configurations (run by ctest as cli_merge_config):
#   merge_config.sh WPROJ WORKDIR
# Writes three tiny decoder-like model folders (config.json, tokenizer files, float32 weights of
# 4 layers) with NumPy, merges them with gradients, filters, slices and a base listed among the
# models, and compares every output tensor with the values computed here from mergekit's rules
# (t = i / (n - 1) over the layers of a slice, 0 before the layers, 1 after; the first filter
# whose text is in the tensor name). Also: mergekit's output folder (shard names, index,
# config.json with torch_dtype and num_hidden_layers, tokenizer, README.md), size suffixes,
# identical bytes for --threads 1 and 2, and one-line errors with the config's line.
# Exit status 77 (skipped) when no python3 with NumPy is found.
set -euo pipefail
WPROJ="$1"
DIR="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3 || true)"
if [ -z "$PY" ] || ! "$PY" -c "import numpy" 2>/dev/null; then
  echo "cli_merge_config skipped: no python3 with NumPy"
  exit 77
fi
rm -rf "$DIR"
mkdir -p "$DIR"
cd "$DIR"
step() { echo "== $*"; }
die() { echo "merge config cli test FAILED: $*" >&2; exit 1; }

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

cat > mk.py <<'EOF'
import json, os, sys
import numpy as np
sys.path.insert(0, os.environ["HERE"])
from check_adapter import read_st, write_st, to_bf16

L, H, V, F = 4, 8, 16, 12

def names(layer_count):
    n = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for i in range(layer_count):
        p = "model.layers.%d." % i
        n += [p + "self_attn.q_proj.weight", p + "mlp.up_proj.weight", p + "input_layernorm.weight"]
    return n

def shape(name):
    if "embed" in name or "lm_head" in name: return (V, H)
    if "up_proj" in name: return (F, H)
    if "q_proj" in name: return (H, H)
    return (H,)

def gen():
    rng = np.random.default_rng(7)
    for m in ["base", "m1", "m2"]:
        os.makedirs(m, exist_ok=True)
        t = {n: ("F32", rng.standard_normal(shape(n)).astype(np.float32)) for n in names(L)}
        t["model.position_ids"] = ("I64", np.arange(V, dtype=np.int64).reshape(1, V))
        write_st(m + "/model.safetensors", t)
        json.dump({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": L, "hidden_size": H,
                   "torch_dtype": "float32", "model": m}, open(m + "/config.json", "w"))
        json.dump({"tokenizer_class": "T", "from": m}, open(m + "/tokenizer_config.json", "w"))
        json.dump({"vocab": m}, open(m + "/tokenizer.json", "w"))

def load(path):
    if os.path.isdir(path) and not os.path.exists(path + "/model.safetensors.index.json"):
        return read_st(path + "/model.safetensors")[0]
    if os.path.isdir(path):
        idx = json.load(open(path + "/model.safetensors.index.json"))
        out = {}
        for f in sorted(set(idx["weight_map"].values())):
            out.update(read_st(path + "/" + f)[0])
        return out
    return read_st(path)[0]

def grad(points, t):
    s = t * (len(points) - 1)
    i0 = int(s); i1 = min(len(points) - 1, i0 + 1); f = s - i0
    return (1 - f) * points[i0] + f * points[i1]

def tof(name):
    import re
    m = re.search(r"layers\.(\d+)\.", name)
    if m: return int(m.group(1)) / (L - 1)
    return 0.0  # outside the layers: t = 0 (mergekit's planner, embeddings and final norm/lm_head alike)

def close(a, b, what, tol=1e-5):
    a = np.asarray(a, dtype=np.float64); b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape: sys.exit("%s: shape %s vs %s" % (what, a.shape, b.shape))
    err = np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b)))
    if not err <= tol: sys.exit("%s: max error %g" % (what, err))

def check_gradient(out):
    """task_arithmetic, base listed among the models; m1: weight gradient [0, 1]; m2: filter
    self_attn -> gradient [1, 0.5, 0], else 0.25; input_layernorm: the mean of the weighted task
    vectors of m1 and m2 only."""
    B, M1, M2, O = load("base"), load("m1"), load("m2"), load(out)
    for n in names(L):
        t = tof(n)
        w1 = grad([0.0, 1.0], t)
        w2 = grad([1.0, 0.5, 0.0], t) if "self_attn" in n else 0.25
        b = B[n][1]
        if "input_layernorm" in n:
            want = b + (w1 * (M1[n][1] - b) + w2 * (M2[n][1] - b)) / 2
        else:
            want = b + 0.8 * (w1 * (M1[n][1] - b) + w2 * (M2[n][1] - b))
        if O[n][0] != "F32": sys.exit(n + ": dtype " + O[n][0])
        close(O[n][1], want, n)
    if not np.array_equal(O["model.position_ids"][1], B["model.position_ids"][1]): sys.exit("non-float tensor")
    if len(O) != len(B): sys.exit("tensor count %d vs %d" % (len(O), len(B)))

def check_slices(out):
    """slice 1: layers 0-1 of base and m1 (lambda 1); slice 2: layers 1-3 of base and m2, lambda 0.5."""
    B, M1, M2, O = load("base"), load("m1"), load("m2"), load(out)
    if len(O) != 3 + 1 + 3 * 5: sys.exit("expected 5 layers out, got %d tensors" % len(O))
    for n in names(5):
        import re
        m = re.search(r"layers\.(\d+)\.", n)
        if m:
            k = int(m.group(1))
            if k < 2: src, lam, M = n, 1.0, M1
            else: src, lam, M = n.replace("layers.%d." % k, "layers.%d." % (k - 1)), 0.5, M2
        elif "embed" in n: src, lam, M = n, 1.0, M1
        else: src, lam, M = n, 0.5, M2
        close(O[n][1], B[src][1] + lam * (M[src][1] - B[src][1]), n + " <- " + src)

def check_bf16(out):
    B, M1, M2, O = load("base"), load("m1"), load("m2"), load(out)
    r = lambda x: (to_bf16(x).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    for n in names(L):
        if O[n][0] != "BF16": sys.exit(n + ": dtype " + O[n][0])
        b = r(B[n][1])
        want = r(b + 0.5 * ((r(M1[n][1]) - b) + (r(M2[n][1]) - b)))
        close(O[n][1], want, n, tol=1e-2)  # float32 sum of bf16 inputs, rounded once

def gen_gpt2():
    """GPT-2 style names (transformer.h.<i>.…), 4 layers, in files (no config.json)."""
    rng = np.random.default_rng(11)
    for m in ["g0", "g1"]:
        t = {"transformer.wte.weight": ("F32", rng.standard_normal((V, H)).astype(np.float32)),
             "transformer.ln_f.weight": ("F32", rng.standard_normal((H,)).astype(np.float32))}
        for i in range(L):
            t["transformer.h.%d.attn.c_attn.weight" % i] = ("F32", rng.standard_normal((H, 3 * H)).astype(np.float32))
        write_st(m + ".safetensors", t)

def check_gpt2(out):
    """slice 1: layer 0 of g0 and g1; slice 2: layers 2-3: the output's layers are g1's 0, 2, 3."""
    G1, O = load("g1.safetensors"), load(out)
    want = {"transformer.wte.weight": "transformer.wte.weight", "transformer.ln_f.weight": "transformer.ln_f.weight",
            "transformer.h.0.attn.c_attn.weight": "transformer.h.0.attn.c_attn.weight",
            "transformer.h.1.attn.c_attn.weight": "transformer.h.2.attn.c_attn.weight",
            "transformer.h.2.attn.c_attn.weight": "transformer.h.3.attn.c_attn.weight"}
    if sorted(O) != sorted(want): sys.exit("gpt2 names: %s" % sorted(O))
    for n, src in want.items():
        close(O[n][1], G1[src][1], n + " <- " + src)

def check_passthrough(out):
    """layers 0-2 of m1 then layers 1-3 of m2: embeddings from m1 (first slice), the rest from m2."""
    M1, M2, O = load("m1"), load("m2"), load(out)
    for n in names(6):
        m = __import__("re").search(r"layers\.(\d+)\.", n)
        if m:
            k = int(m.group(1))
            src, M = (n, M1) if k < 3 else (n.replace("layers.%d." % k, "layers.%d." % (k - 2)), M2)
        else:
            src, M = n, (M1 if "embed" in n else M2)
        if not np.array_equal(O[n][1], M[src][1]): sys.exit("passthrough: " + n + " <- " + src)

def check_slerp_ends(out):
    """t gradients [0, 1] on self_attn and [1, 0] on mlp: layer 0 and 3 are the endpoints."""
    M1, M2, O = load("m1"), load("m2"), load(out)
    for n, M in [("model.layers.0.self_attn.q_proj.weight", M1), ("model.layers.3.self_attn.q_proj.weight", M2),
                 ("model.layers.0.mlp.up_proj.weight", M2), ("model.layers.3.mlp.up_proj.weight", M1)]:
        close(O[n][1], M[n][1], n)

def check_json(path, key, value):
    j = json.load(open(path))
    for k in key.split("/"): j = j[k]
    if str(j) != value: sys.exit("%s: %s = %r, expected %s" % (path, key, j, value))

def gen_big():
    # Tensors of >= 1 MiB with more rows than 2 x threads: merged in row blocks on several cores.
    rng = np.random.default_rng(11)
    shapes = {"big.weight": (700, 410), "big.vec": (300000,), "small.weight": (5, 3)}
    for name in ["bbase", "b1", "b2"]:
        t = {}
        for n, s in shapes.items():
            x = rng.standard_normal(s).astype(np.float32)
            t[n] = ("BF16", to_bf16(x)) if n == "big.vec" else ("F32", x)
        write_st(name + ".safetensors", t)

def check_big(method, path):
    T = {m: read_st(m + ".safetensors")[0] for m in ["bbase", "b1", "b2"]}
    O = read_st(path)[0]
    for n in ["big.weight", "big.vec", "small.weight"]:
        b, x1, x2 = T["bbase"][n][1], T["b1"][n][1], T["b2"][n][1]
        if method == "linear": e = (0.5 * x1 - 0.2 * x2) / 0.3  # the base listed among the models is skipped
        elif method == "task_arithmetic": e = b + 0.5 * (x1 - b) - 0.2 * (x2 - b)
        else:  # nearswap, t = 0.4, base and b1
            w = np.clip(0.4 / np.maximum(np.abs(b - x1), 1e-8), 0, 1)
            e = w * x1 + (1 - w) * b
        tol = 1e-6
        if O[n][0] == "BF16": tol = 2 ** -7  # the output rounded to bfloat16
        err = np.abs(O[n][1] - e).max() / np.abs(e).max()
        if err > tol: sys.exit("%s %s: rel. error %g" % (method, n, err))

def check_blocks(report):
    blocks = {t["name"]: t["row_blocks"] for t in json.load(open(report))["tensors"]}
    if blocks != {"big.weight": 3, "big.vec": 3, "small.weight": 1}: sys.exit("%s: row blocks %r" % (report, blocks))

globals()[sys.argv[1]](*sys.argv[2:])
EOF
export HERE
py() { "$PY" mk.py "$@" || die "mk.py $*"; }
py gen
"$WPROJ" merge --list-methods > methods.txt   # steps for methods of this version's registry

step "gradients, filters, a base listed among the models, mergekit's output folder"
cat > grad.yml <<'EOF'
merge_method: task_arithmetic
base_model: base
models:
  - model: base
  - model: m1
    parameters:
      weight: [0.0, 1.0]
  - model: m2
    parameters:
      weight:
        - filter: self_attn
          value: [1.0, 0.5, 0.0]
        - value: 0.25
parameters:
  lambda: 0.8
dtype: float32
tensors:
  - {pattern: input_layernorm, action: average}
EOF
"$WPROJ" merge grad.yml -o out_grad --report grad.json 2> /dev/null
py check_gradient out_grad
[ "$(cd out_grad && ls -A | LC_ALL=C sort | tr '\n' ' ')" = "README.md config.json mergekit_config.yml model-00001-of-00001.safetensors model.safetensors.index.json tokenizer.json tokenizer_config.json " ] ||
  { ls -A out_grad; die "files of the output folder"; }
py check_json out_grad/config.json torch_dtype float32
py check_json out_grad/config.json num_hidden_layers 4
py check_json out_grad/config.json model base
py check_json out_grad/tokenizer_config.json from base
py check_json out_grad/model.safetensors.index.json weight_map/lm_head.weight model-00001-of-00001.safetensors
grep -q "task_arithmetic" out_grad/README.md && grep -q "filter: self_attn" out_grad/README.md || die "README.md model card"
cmp -s grad.yml out_grad/mergekit_config.yml || die "mergekit_config.yml"
grep -q '"models"' grad.json && [ "$("$PY" -c "import json; print(len(json.load(open('grad.json'))['models']))")" = 2 ] ||
  die "the base listed among the models is not a merged model"
# the same folder again: an earlier merge output is replaced as a whole
"$WPROJ" merge grad.yml -o out_grad --report /dev/null 2> /dev/null
py check_gradient out_grad

step "--threads 1 and --threads 2 write the same bytes"
"$WPROJ" merge grad.yml -o t1.safetensors --threads 1 --report /dev/null 2> /dev/null
"$WPROJ" merge grad.yml -o t2.safetensors --threads 2 --memory-budget 1G --report /dev/null 2> /dev/null
cmp -s t1.safetensors t2.safetensors || die "--threads 1 and 2 differ"
py check_gradient t1.safetensors
for m in ties dare dare_ties dare_linear della breadcrumbs; do
  grep -q "^$m[ :(]" methods.txt || continue
  printf 'merge_method: %s\nbase_model: base\nmodels:\n  - model: m1\n    parameters: {weight: [0.3, 0.9]}\n  - model: m2\n    parameters: {weight: 0.4}\nparameters: {density: [0.3, 0.7]}\nseed: 5\n' "$m" > "thr_$m.yml"
  "$WPROJ" merge "thr_$m.yml" -o "thr1_$m.safetensors" --threads 1 --report /dev/null 2> /dev/null
  "$WPROJ" merge "thr_$m.yml" -o "thr2_$m.safetensors" --threads 2 --report /dev/null 2> /dev/null
  cmp -s "thr1_$m.safetensors" "thr2_$m.safetensors" || die "$m: --threads 1 and 2 differ"
done

step "row blocks of large tensors on 3 threads: the same bytes as 1 thread, equal to NumPy"
py gen_big
printf 'merge_method: linear\nbase_model: bbase.safetensors\nmodels:\n  - model: bbase.safetensors\n    parameters: {weight: 0.3}\n  - model: b1.safetensors\n    parameters: {weight: 0.5}\n  - model: b2.safetensors\n    parameters: {weight: -0.2}\n' > big_linear.yml
printf 'merge_method: task_arithmetic\nbase_model: bbase.safetensors\nmodels:\n  - model: b1.safetensors\n    parameters: {weight: 0.5}\n  - model: b2.safetensors\n    parameters: {weight: -0.2}\n' > big_task_arithmetic.yml
printf 'merge_method: nearswap\nbase_model: bbase.safetensors\nmodels: [b1.safetensors]\nparameters: {t: 0.4}\n' > big_nearswap.yml
for m in linear task_arithmetic nearswap; do
  "$WPROJ" merge "big_$m.yml" -o "big1_$m.safetensors" --threads 1 --report /dev/null 2> /dev/null
  "$WPROJ" merge "big_$m.yml" -o "big3_$m.safetensors" --threads 3 --report "big_$m.json" 2> /dev/null
  cmp -s "big1_$m.safetensors" "big3_$m.safetensors" || die "$m: row blocks on 3 threads differ from 1 thread"
  py check_big "$m" "big3_$m.safetensors"
  py check_blocks "big_$m.json"
done

step "slices: layer ranges selected and renumbered, num_hidden_layers, per-slice parameters"
cat > slices.yml <<'EOF'
merge_method: task_arithmetic
base_model: base
slices:
  - sources:
      - model: base
        layer_range: [0, 2]
      - model: m1
        layer_range: [0, 2]
  - sources:
      - model: base
        layer_range: [1, 4]
      - model: m2
        layer_range: [1, 4]
    parameters:
      lambda: 0.5
parameters:
  weight: 1.0
max_shard_size: 5GB
EOF
"$WPROJ" merge slices.yml -o out_slices --report /dev/null 2> /dev/null
py check_slices out_slices
py check_json out_slices/config.json num_hidden_layers 5
py check_json out_slices/config.json torch_dtype float32
[ -f out_slices/model-00001-of-00001.safetensors ] || die "5GB: one shard"

step "slices on GPT-2 style names (transformer.h.<i>), single files in, one file out"
py gen_gpt2
cat > gpt2.yml <<'EOF'
merge_method: task_arithmetic
base_model: g0.safetensors
slices:
  - sources:
      - {model: g0.safetensors, layer_range: [0, 1]}
      - {model: g1.safetensors, layer_range: [0, 1]}
  - sources:
      - {model: g0.safetensors, layer_range: [2, 4]}
      - {model: g1.safetensors, layer_range: [2, 4]}
parameters: {weight: 1.0}
EOF
"$WPROJ" merge gpt2.yml -o gpt2.safetensors --report /dev/null 2> /dev/null
py check_gpt2 gpt2.safetensors

if grep -q "^passthrough[ :]" methods.txt; then
  step "passthrough frankenmerge (mergekit's example layout): 6 layers from two models"
  printf 'slices:\n  - sources:\n    - model: m1\n      layer_range: [0, 3]\n  - sources:\n    - model: m2\n      layer_range: [1, 4]\nmerge_method: passthrough\ndtype: float32\n' > pt.yml
  "$WPROJ" merge pt.yml -o out_pt --report /dev/null 2> /dev/null
  py check_passthrough out_pt
  py check_json out_pt/config.json num_hidden_layers 6
  py check_json out_pt/config.json model m1
fi
if grep -q "^slerp[ :]" methods.txt && grep -q "spherical interpolation of the tensors of the base" methods.txt; then
  step "slerp with t gradients per filter, the base listed among the sources (mergekit's gradient-slerp example)"
  printf 'slices:\n  - sources:\n      - model: m1\n        layer_range: [0, 4]\n      - model: m2\n        layer_range: [0, 4]\nmerge_method: slerp\nbase_model: m1\nparameters:\n  t:\n    - filter: self_attn\n      value: [0, 1]\n    - filter: mlp\n      value: [1, 0]\n    - value: 0.5\n' > gs.yml
  "$WPROJ" merge gs.yml -o out_gs --report /dev/null 2> /dev/null
  py check_slerp_ends out_gs
fi

step "max_shard_size with mergekit's suffixes: shard names as mergekit's"
sed 's/5GB/1.5K/' slices.yml > shards.yml
"$WPROJ" merge shards.yml -o out_shards --report /dev/null 2> /dev/null
n="$(ls out_shards/model-*-of-*.safetensors | wc -l)"
[ "$n" -gt 1 ] && [ -f "out_shards/model-00001-of-$(printf %05d "$n").safetensors" ] || { ls out_shards; die "shard names"; }
py check_slices out_shards

step "dtype bfloat16: inputs and result rounded to bfloat16, config.json says so"
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels: [m1, m2]\nparameters: {lambda: 0.5, weight: 1.0}\ndtype: bfloat16\ntokenizer_source: {model: m2}\n' > bf16.yml
"$WPROJ" merge bf16.yml -o out_bf16 --report /dev/null 2> /dev/null
py check_bf16 out_bf16
py check_json out_bf16/config.json torch_dtype bfloat16
py check_json out_bf16/tokenizer_config.json from m2

step "chat_template is written into tokenizer_config.json"
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels: [m1]\nparameters: {weight: 1.0}\nchat_template: "{%% for m in messages %%}{{ m.content }}{%% endfor %%}"\n' > chat.yml
"$WPROJ" merge chat.yml -o out_chat --report /dev/null 2> /dev/null
grep -q "for m in messages" out_chat/tokenizer_config.json || die "chat_template"

step "errors: one line naming the config, the key and the line"
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels: [m1]\nparameters: {weight: 1.0}\nfrobnicate: 1\n' > e1.yml
expect_fail "e1.yml:5: 'frobnicate': unknown key" "$WPROJ" merge e1.yml -o e.safetensors
printf 'merge_method: nope\nbase_model: base\nmodels: [m1]\n' > e2.yml
expect_fail "e2.yml:1: unknown merge_method 'nope'" "$WPROJ" merge e2.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: m1\n    parameters:\n      densty: 0.5\n' > e3.yml
expect_fail "e3.yml:6: 'models.parameters': parameter 'densty'" "$WPROJ" merge e3.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: m1\n    parameters:\n      weight: heavy\n' > e4.yml
expect_fail "e4.yml:6: 'models.parameters.weight': expected a number" "$WPROJ" merge e4.yml -o e.safetensors
if grep -q "^ties[ :]" methods.txt; then
  printf 'merge_method: ties\nbase_model: base\nmodels: [m1]\nparameters:\n  density: [0.5, 1.5]\n' > e5.yml
  expect_fail "e5.yml:5: 'parameters.density'.*1.5" "$WPROJ" merge e5.yml -o e.safetensors
fi
sed 's/\[1, 4\]/[1, 9]/g' slices.yml > e6.yml
expect_fail "e6.yml:.*layer_range.*outside model '.*', which has 4 layers" "$WPROJ" merge e6.yml -o e.safetensors
sed '0,/\[1, 4\]/s//[1, 3]/' slices.yml > e7.yml
expect_fail "e7.yml:9: 'slices': the sources of a slice span different numbers of layers" "$WPROJ" merge e7.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: some-org/some-model\n' > e8.yml
expect_fail "e8.yml:4: 'models.model': model 'some-org/some-model' is not a local file or folder.*download it first" \
  "$WPROJ" merge e8.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels: [m1]\nparameters: {weight: 1.0}\ntokenizer_source: union\n' > e9.yml
expect_fail "e9.yml:5: 'tokenizer_source': 'union'" "$WPROJ" merge e9.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels: [m1]\nparameters: {weight: 1.0}\nmax_shard_size: 5QB\n' > e10.yml
expect_fail "e10.yml:5: max_shard_size '5QB'" "$WPROJ" merge e10.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: m1\n    parameters:\n      weight: [{filter: mlp, value: [1, x]}]\n' > e11.yml
expect_fail "e11.yml:6: 'models.parameters.weight.value': expected a number" "$WPROJ" merge e11.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: m1\n    parameters:\n      weight:\n        - pattern: mlp\n          value: 0.5\n' > e14.yml
expect_fail "e14.yml:7: .*'pattern' in a filter: mergekit ignores this key" "$WPROJ" merge e14.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels: [m1]\nparameters: {weight: 1.0}\ndtype: int8\n' > e12.yml
expect_fail "e12.yml:5: 'dtype': 'int8'" "$WPROJ" merge e12.yml -o e.safetensors
printf 'merge_method: task_arithmetic\nbase_model: base\nmodels: [m1]\nslices: []\n' > e13.yml
expect_fail "exactly one of 'models'" "$WPROJ" merge e13.yml -o e.safetensors
expect_fail "bf16.yml: 'tokenizer_source' needs a folder output" "$WPROJ" merge bf16.yml -o e.safetensors
[ ! -e e.safetensors ] || die "a refused merge wrote output"
echo "merge config cli tests passed"
