"""same_checkpoint.py A B: the checkpoint folders A and B (one or more .safetensors shards) hold
the same tensors with the same dtypes, shapes and bytes; each tensor is written once; a folder of
several shards has an index that maps every tensor to the shard holding it; config.json and
README.md are present in both or in neither. Exits 1 with a message otherwise. Used by the MPI
tests of the tool, which compare the sharded output of N ranks with the one-process output."""
import json
import os
import sys

from check_adapter import read_st


def load(d):
    files = [f for f in os.listdir(d) if f.endswith(".safetensors")]
    out, raw, where = {}, {}, {}
    for f in files:
        o, r = read_st(os.path.join(d, f))
        for k in o:
            if k in out:
                sys.exit("tensor %s written twice in %s" % (k, d))
            out[k], raw[k], where[k] = o[k], r[k], f
    idx = os.path.join(d, "model.safetensors.index.json")
    if (len(files) > 1 or os.path.exists(idx)) and json.load(open(idx))["weight_map"] != where:
        sys.exit("%s: the index does not match the shards" % d)
    return out, raw, len(files)


a, ra, na = load(sys.argv[1])
b, rb, nb = load(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit("different tensor names: %s" % (sorted(set(a) ^ set(b)),))
for k in a:
    if a[k][0] != b[k][0] or a[k][1].shape != b[k][1].shape or ra[k] != rb[k]:
        sys.exit("tensor %s differs between %s and %s" % (k, sys.argv[1], sys.argv[2]))
for f in ("config.json", "README.md"):
    if os.path.exists(os.path.join(sys.argv[1], f)) != os.path.exists(os.path.join(sys.argv[2], f)):
        sys.exit("%s: present in one output only" % f)
print("same %d tensors (%d vs %d shards)" % (len(a), na, nb))
