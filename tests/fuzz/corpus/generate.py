#!/usr/bin/env python3
"""Writes the seed corpus: a few valid safetensors/.npy files (run with Debian's python3 + numpy)."""
import json, os, struct
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))

def st(name, tensors, meta=None):
    header, data, off = {}, b"", 0
    if meta:
        header["__metadata__"] = meta
    for k, (dtype, shape, raw) in sorted(tensors.items()):
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(os.path.join(here, "safetensors", name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)

a = np.arange(6, dtype=np.float32).reshape(2, 3)
st("f32.safetensors", {"w": ("F32", [2, 3], a.tobytes()), "b": ("F32", [3], a[0].tobytes())}, {"format": "pt"})
st("mixed.safetensors", {"h": ("F16", [2, 2], np.ones(4, np.float16).tobytes()), "i": ("I64", [2], np.arange(2).tobytes()),
                         "d": ("F64", [1], np.ones(1).tobytes()), "e": ("BF16", [0], b""), "u": ("U8", [3], b"abc")})
st("empty.safetensors", {})
np.save(os.path.join(here, "npy", "c_f4.npy"), a)
np.save(os.path.join(here, "npy", "f_f8.npy"), np.asfortranarray(a.astype(np.float64)))
np.save(os.path.join(here, "npy", "vec_f2.npy"), a[0].astype(np.float16))
np.save(os.path.join(here, "npy", "i2.npy"), np.arange(4, dtype=np.int16))
with open(os.path.join(here, "npy", "v3.npy"), "wb") as f:
    np.lib.format.write_array(f, a, version=(3, 0))
