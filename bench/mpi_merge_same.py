"""Checks that two merge output folders hold the same tensors with the same bytes (shards may differ).
Usage: mpi_merge_same.py DIR_A DIR_B"""
import json, os, struct, sys

def tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(d, f), "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
            header.pop("__metadata__", None)
            for name, t in header.items():
                b, e = t["data_offsets"]
                fh.seek(8 + n + b)
                out[name] = (t["dtype"], tuple(t["shape"]), hash(fh.read(e - b)))
    return out

a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if a != b:
    sys.exit("outputs differ: %s" % sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[:5])
print("same %d tensors" % len(a))
