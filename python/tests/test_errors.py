import numpy as np
import pytest

import wproj


def test_invalid_argument_is_value_error_with_cpp_message(rng):
    A = rng.standard_normal((20, 10))
    with pytest.raises(ValueError, match=r"setRank: argument 'k' = 0; expected >= 1"):
        wproj.randomized_svd(A, 0)
    with pytest.raises(ValueError, match=r"oversampling|'p'"):
        wproj.randomized_svd(A, 3, oversampling=-1)
    bad = A.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"non-finite entry \(nan\) at \(3, 4\)"):
        wproj.truncated_svd(bad, 2)
    with pytest.raises(ValueError, match="method"):
        wproj.randomized_svd(A, 3, method="lanczos")
    with pytest.raises(ValueError, match="dimension"):
        wproj.randomized_svd(np.ones(5), 1)


def test_numerical_error_is_arithmetic_error():
    assert issubclass(wproj.NumericalError, ArithmeticError)
    # float32 entries near FLT_MAX overflow the sketch: a numerical failure, not a bad argument.
    A = np.full((300, 200), 3e38, dtype=np.float32)
    with pytest.raises(wproj.NumericalError, match="overflow"):
        wproj.randomized_svd(A, 5)


def test_file_errors_are_os_errors(tmp_path):
    with pytest.raises(OSError):
        wproj.io.load_safetensors(tmp_path / "missing.safetensors")
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(OSError, match="bad.safetensors"):
        wproj.io.load_safetensors(p)


def test_dtypes_converted_or_refused(rng):
    A = rng.integers(-5, 5, size=(30, 20))
    U, S, Vt = wproj.truncated_svd(A, 3)
    assert S.dtype == np.float64
    np.testing.assert_allclose(S, np.linalg.svd(A.astype(float), compute_uv=False)[:3], rtol=1e-10)
    U, S, Vt = wproj.truncated_svd(A.astype(np.float16), 3)
    assert S.dtype == np.float32
    with pytest.raises(TypeError, match="complex"):
        wproj.truncated_svd(A.astype(np.complex128), 3)
    # Non-contiguous (strided) views are copied once and give the same answer.
    big = rng.standard_normal((60, 40))
    view = big[::2, ::2]
    np.testing.assert_allclose(wproj.truncated_svd(view, 4)[1], wproj.truncated_svd(view.copy(), 4)[1], rtol=1e-12)
    # Lists work too.
    assert wproj.truncated_svd([[3.0, 0.0], [0.0, 2.0]])[1].tolist() == [3.0, 2.0]
