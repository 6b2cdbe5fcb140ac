#!/usr/bin/env bash
# `mpirun -np N wproj merge` against the one-process merge (run by ctest as cli_mpi_merge):
#   mpi_merge.sh WPROJ MPIRUN WORKDIR
# Writes a base and three fine-tuned model folders (config.json, float32 and bfloat16 weights of
# 6 layers, an integer buffer) with NumPy and merges them with TIES, task arithmetic and OPCM on
# 1 process and on 2 and 3 ranks. Checks that every output tensor has the same dtype, shape and
# bytes as the one-process output, that the index maps every tensor to a shard that holds it, that
# the model folder files (config.json, README.md) are written once, and the all-or-nothing
# behaviour: different configurations on different ranks, a model missing on one rank, and a rank
# failing in the middle of its tensors each stop every rank with a one-line error naming that rank,
# and leave no output folder. Exit status 77 (skipped) when no python3 with NumPy is found.
set -euo pipefail
WPROJ="$1"
MPIRUN="$2"
DIR="$3"
TEST=cli_mpi_merge
source "$(cd "$(dirname "$0")" && pwd)/mpi_common.sh"

cat > mk.py <<'PYEOF'
import json, os, sys
import numpy as np
sys.path.insert(0, os.environ["HERE"])
from check_adapter import write_st

L, H, V, F = 6, 16, 40, 24
def tensors(seed, bad=None):
    rng = np.random.default_rng(seed)
    t = {"model.embed_tokens.weight": ("BF16", rng.standard_normal((V, H)).astype(np.float32)),
         "lm_head.weight": ("F32", rng.standard_normal((V, H)).astype(np.float32)),
         "model.norm.weight": ("F32", rng.standard_normal(H).astype(np.float32)),
         "model.position_ids": ("I64", np.arange(8, dtype=np.int64))}
    for i in range(L):
        p = "model.layers.%d." % i
        t[p + "self_attn.q_proj.weight"] = ("F32", rng.standard_normal((H, H)).astype(np.float32))
        t[p + "mlp.up_proj.weight"] = ("BF16", rng.standard_normal((F + 4 * i, H)).astype(np.float32))
        t[p + "input_layernorm.weight"] = ("F32", rng.standard_normal(H).astype(np.float32))
    if bad:
        t[bad][1][0, 0] = np.inf
    return t

def folder(name, seed, bad=None):
    os.makedirs(name, exist_ok=True)
    write_st(name + "/model.safetensors", tensors(seed, bad))
    json.dump({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": L, "torch_dtype": "float32"},
              open(name + "/config.json", "w"))

folder("base", 1)
folder("m1", 2)
folder("m2", 3)
folder("m3", 4)
folder("broken", 5, bad="model.layers.4.mlp.up_proj.weight")
PYEOF
"$PY" mk.py

cat > ties.yaml <<'YEOF'
merge_method: ties
base_model: base
models:
  - model: m1
    parameters: {weight: [0.2, 0.8]}
  - model: m2
    parameters: {weight: 0.5}
  - model: m3
    parameters: {weight: 0.3}
parameters: {density: 0.4}
dtype: float32
max_shard_size: 3000
YEOF
cat > ta.yaml <<'YEOF'
merge_method: task_arithmetic
base_model: base
models:
  - model: m1
    parameters: {weight: 0.7}
  - model: m2
    parameters: {weight: 0.4}
YEOF
cat > opcm.yaml <<'YEOF'
merge_method: opcm
base_model: base
models:
  - model: m1
  - model: m2
  - model: m3
YEOF
sed 's/density: 0.4/density: 0.5/' ties.yaml > ties_other.yaml
sed 's/model: m3/model: missing_model/' ties.yaml > ties_missing.yaml
sed 's/model: m3/model: broken/' ties.yaml > ties_broken.yaml


for cfg in ties ta opcm; do
  step "$cfg: 1 process, then 2 and 3 ranks"
  "$WPROJ" merge $cfg.yaml -o out_$cfg --threads 2 --report rep_$cfg.json 2> log.txt || { cat log.txt; die "$cfg serial"; }
  for n in 2 3; do
    mpi $n "$WPROJ" merge $cfg.yaml -o out_${cfg}_$n --threads 1 --report rep_${cfg}_$n.json 2> log.txt || { cat log.txt; die "$cfg on $n ranks"; }
    same_checkpoint out_$cfg out_${cfg}_$n || die "$cfg: $n ranks differ from 1 process"
    "$PY" - rep_${cfg}_$n.json $n <<'PYEOF' || die "$cfg: report of $n ranks"
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert r["ranks"] == n, r["ranks"]
ranks = {t["rank"] for t in r["tensors"]}
assert ranks <= set(range(n)), ranks
assert all(t["method"] for t in r["tensors"]), "a tensor without its method"
PYEOF
  done
done
grep -q '"rank": 2' rep_ties_3.json || die "ties on 3 ranks: rank 2 merged nothing"
[ "$(ls out_ties_3 | grep -c '^model-.*-of-.*\.safetensors$')" -ge 3 ] || die "ties on 3 ranks: expected several shards"
[ -f out_ties_3/config.json ] && [ -f out_ties_3/README.md ] || die "ties on 3 ranks: model folder files missing"

# All or nothing: nothing is written, every rank exits non-zero with a message naming the rank.
step "different configurations on two ranks"
expect_collective_fail "rank 1 holds a different configuration" out_x \
  "$MPIRUN" -np 1 "$WPROJ" merge ties.yaml -o out_x : -np 1 "$WPROJ" merge ties_other.yaml -o out_x
step "a model missing on one rank"
expect_collective_fail "failed on rank 1: .*missing_model" out_x \
  "$MPIRUN" -np 1 "$WPROJ" merge ties.yaml -o out_x : -np 1 "$WPROJ" merge ties_missing.yaml -o out_x
step "a rank failing in the middle of its tensors"
expect_collective_fail "merging failed on rank [0-9]: .*up_proj" out_x mpi 3 "$WPROJ" merge ties_broken.yaml -o out_x --threads 1
# Occurrences, not lines: the ranks share stderr.
[ "$(grep -o "wproj: error:" fail_err.txt | wc -l)" -eq 3 ] || { cat fail_err.txt; die "expected the error on every one of the 3 ranks"; }
step "a file output under mpirun is refused"
expect_collective_fail "writes a sharded folder" out_x.safetensors mpi 2 "$WPROJ" merge ties.yaml -o out_x.safetensors
echo "mpi merge cli test passed"
