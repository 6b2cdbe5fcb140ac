import json
import struct

import numpy as np
import pytest

import wproj


def test_round_trip(tmp_path, rng):
    tensors = {
        "w": rng.standard_normal((7, 5)).astype(np.float32),
        "b": rng.standard_normal(5),
        "h": rng.standard_normal((2, 3, 4)).astype(np.float16),
        "i": np.arange(6, dtype=np.int64).reshape(2, 3),
        "m": np.array([True, False, True]),
        "f": np.asfortranarray(rng.standard_normal((4, 6)).astype(np.float32)),
    }
    p = tmp_path / "t.safetensors"
    wproj.io.save_safetensors(p, tensors, metadata={"format": "pt", "note": "x"})
    back = wproj.io.load_safetensors(p)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert np.array_equal(back[k], v)
    assert wproj.io.safetensors_metadata(p) == {"format": "pt", "note": "x"}
    # The file is a valid safetensors file: header readable with the standard library.
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["w"]["dtype"] == "F32" and header["w"]["shape"] == [7, 5]
    assert header["__metadata__"]["format"] == "pt"


def test_loaded_arrays_are_read_only_views_of_the_mapping(tmp_path, rng):
    p = tmp_path / "v.safetensors"
    w = rng.standard_normal((300, 200)).astype(np.float32)
    wproj.io.save_safetensors(p, {"w": w})
    d = wproj.io.load_safetensors(p)
    a = d["w"]
    assert not a.flags.writeable and not a.flags.owndata
    with pytest.raises(ValueError):
        a[0, 0] = 1.0
    base = a
    while getattr(base, "base", None) is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    assert type(base).__name__ == "SafetensorsFile"  # the mapping owns the bytes
    del d
    import gc
    gc.collect()
    assert np.array_equal(a, w)  # the view keeps the mapping alive
    # Views go straight into wproj without a copy.
    U, S, Vt = wproj.truncated_svd(a, 3)
    np.testing.assert_allclose(S, np.linalg.svd(w.astype(np.float64), compute_uv=False)[:3], rtol=1e-4)


def test_bf16_is_converted(tmp_path):
    vals = np.array([1.0, -2.5, 0.15625, 3e38], dtype=np.float32)
    bits = (vals.view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"x": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    p = tmp_path / "bf.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + bits.tobytes())
    x = wproj.io.load_safetensors(p)["x"]
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, (bits.astype(np.uint32) << 16).view(np.float32))


def test_atomic_write_keeps_old_file_on_failure(tmp_path, rng):
    p = tmp_path / "a.safetensors"
    wproj.io.save_safetensors(p, {"w": np.ones(3, np.float32)})
    before = p.read_bytes()
    with pytest.raises(TypeError):
        wproj.io.save_safetensors(p, {"w": np.ones(3, np.complex64)})
    with pytest.raises(OSError):
        wproj.io.save_safetensors(tmp_path / "no" / "such" / "dir.safetensors", {"w": np.ones(3)})
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.safetensors"]
