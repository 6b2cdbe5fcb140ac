#!/usr/bin/env python3
"""Regenerates the malformed safetensors/.npy files in this folder and EXPECTED.tsv.

Each file breaks exactly one rule; EXPECTED.tsv maps it to a substring of the error message the
reader must give. Run from anywhere: python3 generate.py (standard library only).
"""
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
expected = []


def put(name, data, message):
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
    expected.append((name, message))


def st(header, data=b"", raw_len=None):
    h = header if isinstance(header, bytes) else header.encode()
    n = len(h) if raw_len is None else raw_len
    return struct.pack("<Q", n) + h + data


def entry(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


ok16 = b"\0" * 16
put("st_too_small.safetensors", b"\x01\x02\x03", "too small")
put("st_header_too_large.safetensors", st(b"{}", raw_len=200_000_000), "exceeds the limit")
put("st_header_past_eof.safetensors", st(b"{}", raw_len=1000), "runs past the end of the file")
put("st_root_not_object.safetensors", st("[1, 2]"), "not a JSON object")
put("st_bad_json.safetensors", st('{"w": {"dtype": "F32", '), "invalid JSON")
put("st_duplicate_key.safetensors",
    st('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', ok16),
    "duplicate key")
# A dtype name wproj does not know ("F33") is accepted and kept as raw bytes; a malformed one is not.
put("st_invalid_dtype.safetensors", st(json.dumps({"w": entry("float32", [4], 0, 16)}), ok16), "invalid dtype 'float32'")
put("st_shape_overflow.safetensors", st(json.dumps({"w": entry("F32", [2**40, 2**40], 0, 16)}), ok16), "overflows")
put("st_shape_wraps_to_zero.safetensors", st(json.dumps({"w": entry("F32", [2**32, 2**32, 4], 0, 0)})), "overflows")
put("st_size_mismatch.safetensors", st(json.dumps({"w": entry("F32", [2, 2], 0, 12)}), b"\0" * 12), "needs 16")
put("st_gap.safetensors",
    st(json.dumps({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 12, 20)}), b"\0" * 20), "gap in the data buffer")
put("st_overlap.safetensors",
    st(json.dumps({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}), b"\0" * 12), "overlap")
put("st_trailing_bytes.safetensors", st(json.dumps({"w": entry("F32", [4], 0, 16)}), ok16 + b"xx"), "trailing bytes")
put("st_offsets_past_end.safetensors", st(json.dumps({"w": entry("F32", [4], 0, 16)}), b"\0" * 8),
    "data buffer holds 8 bytes")
put("st_offsets_reversed.safetensors", st(json.dumps({"w": entry("F32", [0], 8, 0)}), b"\0" * 8), "end before they begin")
put("st_negative_shape.safetensors", st(json.dumps({"w": entry("F32", [-1, 4], 0, 16)}), ok16),
    "not a non-negative integer")
put("st_metadata_not_string.safetensors", st(json.dumps({"__metadata__": {"step": 3}})), "__metadata__ entry 'step'")
put("st_extra_field.safetensors",
    st(json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "stride": [1]}}), ok16),
    "unexpected field 'stride'")
put("st_missing_offsets.safetensors", st(json.dumps({"w": {"dtype": "F32", "shape": [4]}}), ok16),
    "missing field 'data_offsets'")
put("st_trailing_json.safetensors", st('{} x'), "unexpected trailing characters")
put("st_bad_utf8.safetensors", st(b'{"w\xff":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', ok16), "invalid UTF-8")
put("st_float_offsets.safetensors", st('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0.0,16]}}', ok16),
    "not non-negative 64-bit integers")
# Deep nesting where an object of strings belongs: refused at the first '[' without descending.
put("st_deep_nesting.safetensors", st("{\"__metadata__\":" + "[" * 100 + "]" * 100 + "}"), "__metadata__ is not an object")
put("st_rank_17.safetensors", st(json.dumps({"w": entry("F32", [1] * 17, 0, 4)}), b"\0" * 4), "more than 16 extents")
put("st_nul_name.safetensors", st('{"w\\u0000.x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4),
    "NUL character")
put("st_subbyte_partial.safetensors", st(json.dumps({"w": entry("F4", [3], 0, 2)}), b"\0" * 2),
    "not a whole number of bytes")
put("st_metadata_duplicate.safetensors", st('{"__metadata__":{"a":"1","a":"2"}}'), "duplicate key \"a\" in __metadata__")
put("st_shape_string.safetensors", st(json.dumps({"w": entry("F32", ["4"], 0, 16)}), ok16), "shape entry is a string")
put("st_not_json_start.safetensors", st("  {}"), "must start with '{'")


def npy(header, data=b"", version=(1, 0), raw_len=None):
    h = header.encode("latin1") if isinstance(header, str) else header
    n = len(h) if raw_len is None else raw_len
    pre = b"\x93NUMPY" + bytes(version)
    pre += struct.pack("<H", n) if version[0] == 1 else struct.pack("<I", n)
    return pre + h + data


def hdr(d):
    s = d + " " * 8 + "\n"
    return s


put("npy_bad_magic.npy", b"\x93NUMPX\x01\x00" + b"\0" * 20, "bad magic")
put("npy_bad_version.npy", npy(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"), b"\0" * 4, (4, 0)),
    "unsupported .npy format version 4.0")
put("npy_header_past_eof.npy", npy(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"), raw_len=5000),
    "exceeds the file size")
put("npy_header_len_zero.npy", npy(b"", raw_len=0), "out of bounds")
put("npy_no_newline.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }  ", b"\0" * 4),
    "not terminated by a newline")
put("npy_extra_key.npy", npy(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}"), b"\0" * 4),
    "unexpected key 'x'")
put("npy_missing_shape.npy", npy(hdr("{'descr': '<f4', 'fortran_order': False}"), b"\0" * 4), "missing key 'shape'")
put("npy_duplicate_key.npy", npy(hdr("{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}"), b"\0" * 4),
    "duplicate key 'descr'")
put("npy_big_endian.npy", npy(hdr("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }"), b"\0" * 4), "big-endian")
put("npy_complex.npy", npy(hdr("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }"), b"\0" * 8),
    "unsupported descr '<c8'")
put("npy_3d.npy", npy(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), }"), b"\0" * 4),
    "more than 2 dimensions")
put("npy_shape_overflow.npy", npy(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }")),
    "shape product overflows")
put("npy_data_short.npy", npy(hdr("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }"), b"\0" * 40),
    "data size mismatch")
put("npy_fortran_not_bool.npy", npy(hdr("{'descr': '<f4', 'fortran_order': 1, 'shape': (1,), }"), b"\0" * 4),
    "must be True or False")
put("npy_negative_shape.npy", npy(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"), b"\0" * 4),
    "non-negative integers")
put("npy_non_ascii_v1.npy", npy(hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\xe9"), b"\0" * 4),
    "non-ASCII")

with open(os.path.join(here, "EXPECTED.tsv"), "w") as f:
    f.write("# file\tsubstring of the error message (generated by generate.py)\n")
    for name, msg in expected:
        f.write(f"{name}\t{msg}\n")
