#!/usr/bin/env bash
# `mpirun -np N wproj extract-lora` and `mpirun -np N wproj edit` against the one-process runs (run
# by ctest as cli_mpi_edit_lora):  mpi_edit_lora.sh WPROJ MPIRUN WORKDIR
# Writes a base and a fine-tuned model folder with NumPy (float32 and bfloat16 weights of 6 layers
# with biases, an embedding, a norm, an integer buffer). Checks that on 2 and 3 ranks
#   - extract-lora writes the same adapter bytes and config as one process, with --rank, --energy
#     and --budget (the budget shared out from every rank's spectra), and --embeddings;
#   - edit writes the same tensor bytes as one process with a basis (output and input side) and
#     with a LEACE eraser whose mean term folds into the biases; the index maps every tensor;
# and the all-or-nothing behaviour: different options on two ranks, an input missing on one rank,
# a rank failing in the middle of its tensors, and a file output under mpirun each stop every rank
# with a one-line error naming the rank, and leave nothing behind. Exit status 77 (skipped) when
# no python3 with NumPy is found.
set -euo pipefail
WPROJ="$1"
MPIRUN="$2"
DIR="$3"
TEST=cli_mpi_edit_lora
source "$(cd "$(dirname "$0")" && pwd)/mpi_common.sh"

cat > mk.py <<'PYEOF'
import json, os, sys
import numpy as np
sys.path.insert(0, os.environ["HERE"])
from check_adapter import write_st

L, H, V, F = 6, 16, 40, 24
def tensors(seed, delta=0.0, bad=None):
    rng = np.random.default_rng(1)
    t = {"model.embed_tokens.weight": ("BF16", rng.standard_normal((V, H)).astype(np.float32)),
         "model.norm.weight": ("F32", rng.standard_normal(H).astype(np.float32)),
         "model.position_ids": ("I64", np.arange(8, dtype=np.int64))}
    for i in range(L):
        p = "model.layers.%d." % i
        t[p + "self_attn.q_proj.weight"] = ("F32", rng.standard_normal((H, H)).astype(np.float32))
        t[p + "self_attn.q_proj.bias"] = ("F32", rng.standard_normal(H).astype(np.float32))
        t[p + "mlp.up_proj.weight"] = ("BF16", rng.standard_normal((F + 4 * i, H)).astype(np.float32))
        t[p + "mlp.down_proj.weight"] = ("F32", rng.standard_normal((H, F + 4 * i)).astype(np.float32))
        t[p + "input_layernorm.weight"] = ("F32", rng.standard_normal(H).astype(np.float32))
    if delta:
        d = np.random.default_rng(seed)
        for k, (dt, a) in t.items():
            if dt == "I64" or (k.endswith("q_proj.bias") and "layers.3" not in k):
                continue
            if a.ndim == 2:  # a low-rank change plus a little noise
                u = d.standard_normal((a.shape[0], 3)); v = d.standard_normal((3, a.shape[1]))
                a += (delta * (u @ v) / np.sqrt(a.shape[1]) + 1e-3 * d.standard_normal(a.shape)).astype(np.float32)
            else:
                a += (delta * d.standard_normal(a.shape)).astype(np.float32)
    if bad:
        t[bad][1][0, 0] = np.inf
    return t

def folder(name, seed, delta=0.0, bad=None):
    os.makedirs(name, exist_ok=True)
    write_st(name + "/model.safetensors", tensors(seed, delta, bad))
    json.dump({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": L}, open(name + "/config.json", "w"))

folder("base", 1)
folder("ft", 2, delta=0.5)
folder("broken", 2, delta=0.5, bad="model.layers.4.mlp.down_proj.weight")
rng = np.random.default_rng(7)
q, _ = np.linalg.qr(rng.standard_normal((H, 2)))
np.save("basis.npy", q)
np.save("basis_other.npy", np.linalg.qr(rng.standard_normal((H, 2)))[0])
x = rng.standard_normal((200, H)); z = (x[:, 0] + 0.3 * rng.standard_normal(200) > 0).astype(np.int64)
np.save("x.npy", x + 2.0)
np.save("z.npy", z)
PYEOF
"$PY" mk.py


step "extract-lora: 1 process, then 2 and 3 ranks"
lora_case() {
  local tag="$1"; shift
  "$WPROJ" extract-lora --base base --model ft -o lora_$tag "$@" --report rep_lora_$tag.json > /dev/null 2> log.txt || { cat log.txt; die "extract-lora $tag serial"; }
  for n in 2 3; do
    mpi $n "$WPROJ" extract-lora --base base --model ft -o lora_${tag}_$n "$@" --report rep_lora_${tag}_$n.json > /dev/null 2> log.txt ||
      { cat log.txt; die "extract-lora $tag on $n ranks"; }
    cmp lora_$tag/adapter_model.safetensors lora_${tag}_$n/adapter_model.safetensors || die "extract-lora $tag: adapter of $n ranks differs"
    cmp lora_$tag/adapter_config.json lora_${tag}_$n/adapter_config.json || die "extract-lora $tag: config of $n ranks differs"
    [ "$(ls -A lora_${tag}_$n | sort | tr '\n' ' ')" = "adapter_config.json adapter_model.safetensors " ] ||
      { ls -A lora_${tag}_$n; die "extract-lora $tag on $n ranks: unexpected files in the adapter folder"; }
    "$PY" - rep_lora_$tag.json rep_lora_${tag}_$n.json $n <<'PYEOF' || die "extract-lora $tag: report of $n ranks"
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2])); n = int(sys.argv[3])
assert b["mpi_ranks"] == n, b.get("mpi_ranks")
procs = {t["mpi_rank"] for t in b["tensors"] if "mpi_rank" in t}
assert procs == set(range(n)), procs
for x, y in zip(a["tensors"], b["tensors"]):
    for k in ("name", "action", "rank", "relative_error", "bytes"):
        assert x.get(k) == y.get(k), (x["name"], k, x.get(k), y.get(k))
assert a.get("budget") == b.get("budget"), (a.get("budget"), b.get("budget"))
assert a["relative_error"] == b["relative_error"]
PYEOF
  done
}
lora_case rank --rank 4
lora_case energy --energy 0.9 --max-rank 8 --embeddings
lora_case budget --budget 30KB --modules-to-save 'embed_tokens'
grep -q '"action": "bias"' rep_lora_rank_3.json || die "extract-lora: expected a LoRA bias (bias: lora_only)"
grep -q '"allocation"' rep_lora_budget_2.json || die "extract-lora --budget: no allocation in the report"

step "edit: 1 process, then 2 and 3 ranks"
"$WPROJ" subspace leace --x x.npy --labels z.npy -o eraser.safetensors > /dev/null
edit_case() {
  local tag="$1"; shift
  "$WPROJ" edit base "$@" -o edit_$tag --report rep_edit_$tag.json > /dev/null 2> log.txt || { cat log.txt; die "edit $tag serial"; }
  for n in 2 3; do
    mpi $n "$WPROJ" edit base "$@" -o edit_${tag}_$n --report rep_edit_${tag}_$n.json > /dev/null 2> log.txt ||
      { cat log.txt; die "edit $tag on $n ranks"; }
    same_checkpoint edit_$tag edit_${tag}_$n || die "edit $tag: $n ranks differ from 1 process"
    "$PY" - rep_edit_$tag.json rep_edit_${tag}_$n.json $n <<'PYEOF' || die "edit $tag: report of $n ranks"
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2])); n = int(sys.argv[3])
assert b["ranks"] == n and len(a["tensors"]) == len(b["tensors"])
for x, y in zip(a["tensors"], b["tensors"]):
    for k in ("name", "weight_norm", "delta_norm", "max_direction_norm_after"):
        assert x[k] == y[k], (x["name"], k)
assert {t["rank"] for t in b["tensors"]} <= set(range(n))
PYEOF
  done
}
edit_case out --basis basis.npy --tensors 'q_proj\.weight|down_proj\.weight' --side output
edit_case in --basis basis.npy --tensors 'up_proj\.weight' --side input --max-shard-size 2000
edit_case leace --leace eraser.safetensors --tensors 'q_proj\.weight|down_proj\.weight'
[ "$(ls edit_in_3 | grep -c '^model-.*-of-.*\.safetensors$')" -ge 3 ] || die "edit on 3 ranks: expected several shards"

# All or nothing: nothing is written, every rank exits non-zero with a message naming the rank.
step "different options on two ranks"
expect_collective_fail "rank 1 holds a different extraction options" out_x \
  "$MPIRUN" -np 1 "$WPROJ" extract-lora --base base --model ft -o out_x --rank 4 : -np 1 "$WPROJ" extract-lora --base base --model ft -o out_x --rank 5
expect_collective_fail "rank 1 holds a different edit" out_x \
  "$MPIRUN" -np 1 "$WPROJ" edit base --basis basis.npy --tensors q_proj -o out_x : -np 1 "$WPROJ" edit base --basis basis_other.npy --tensors q_proj -o out_x
step "an input missing on one rank"
expect_collective_fail "failed on rank 1: .*missing_model" out_x \
  "$MPIRUN" -np 1 "$WPROJ" extract-lora --base base --model ft -o out_x : -np 1 "$WPROJ" extract-lora --base base --model missing_model -o out_x
expect_collective_fail "failed on rank 1: .*missing.npy" out_x \
  "$MPIRUN" -np 1 "$WPROJ" edit base --basis basis.npy --tensors q_proj -o out_x : -np 1 "$WPROJ" edit base --basis missing.npy --tensors q_proj -o out_x
step "a rank failing in the middle of its tensors"
expect_collective_fail "extracting failed on rank [0-9]: .*tau" out_x mpi 3 "$WPROJ" extract-lora --base base --model broken -o out_x --rank 4
# Occurrences, not lines: the ranks share stderr.
[ "$(grep -o "wproj: error:" fail_err.txt | wc -l)" -eq 3 ] || { cat fail_err.txt; die "expected the error on every one of the 3 ranks"; }
expect_collective_fail "computing the spectra failed on rank [0-9]: .*tau" out_x mpi 2 "$WPROJ" extract-lora --base base --model broken -o out_x --budget 30KB
step "a file output of edit under mpirun is refused"
expect_collective_fail "writes a sharded folder" out_x.safetensors mpi 2 "$WPROJ" edit base --basis basis.npy --tensors q_proj -o out_x.safetensors
echo "mpi edit/extract-lora cli test passed"
