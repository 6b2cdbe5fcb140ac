import numpy as np
import pytest
import scipy.fft
import scipy.linalg

import wproj
from conftest import decaying


def optimal_error(A, k):
    s = np.linalg.svd(A.astype(np.float64), compute_uv=False)
    return np.sqrt(np.sum(s[k:] ** 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("method", ["power", "krylov"])
def test_randomized_svd_near_optimal(rng, dtype, order, method):
    A, _ = decaying(300, 200, rng, dtype)
    A = np.asarray(A, order=order)
    k = 20
    U, S, Vt = wproj.randomized_svd(A, k, oversampling=10, power_iterations=3, seed=7, method=method)
    assert U.shape == (300, k) and S.shape == (k,) and Vt.shape == (k, 200)
    assert U.dtype == dtype and S.dtype == dtype and Vt.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert np.linalg.norm(U.T @ U - np.eye(k)) < tol * 10
    assert np.linalg.norm(Vt @ Vt.T - np.eye(k)) < tol * 10
    err = np.linalg.norm(A.astype(np.float64) - (U * S).astype(np.float64) @ Vt)
    assert err <= 1.01 * optimal_error(A, k) + tol
    s_true = np.linalg.svd(A.astype(np.float64), compute_uv=False)[:k]
    # σ_i(QᵀA) ≤ σ_i(A) (interlacing): never above the truth; the leading ones are accurate.
    assert np.all(S <= s_true * (1 + 10 * np.finfo(dtype).eps) + 10 * np.finfo(dtype).eps)
    assert np.all(S >= 0.99 * s_true)
    np.testing.assert_allclose(S[: k // 2], s_true[: k // 2], rtol=1e-3 if dtype == np.float32 else 1e-6)
    assert np.all(np.diff(S) <= 0)
    # wproj's sign convention: the largest-magnitude entry of each column of U is positive.
    idx = np.abs(U).argmax(axis=0)
    assert np.all(U[idx, np.arange(k)] > 0)


def test_randomized_svd_seeded_and_layout_independent(rng):
    A, _ = decaying(120, 90, rng)
    r1 = wproj.randomized_svd(A, 10, seed=3)
    r2 = wproj.randomized_svd(A, 10, seed=3)
    for a, b in zip(r1, r2):
        assert np.array_equal(a, b)
    U, S, Vt = wproj.randomized_svd(np.asfortranarray(A), 10, seed=3)
    np.testing.assert_allclose(S, r1[1], rtol=1e-10)
    np.testing.assert_allclose(np.abs(U.T @ r1[0]), np.eye(10), atol=1e-6)


def test_randomized_svd_error_estimate_and_tolerance(rng):
    A, _ = decaying(200, 150, rng, decay=lambda i: 0.7 ** i)
    U, S, Vt, est = wproj.randomized_svd(A, 12, return_error=True)
    true = np.linalg.norm(A - (U * S) @ Vt) / np.linalg.norm(A)
    assert 0.3 * true <= est <= 3 * true
    U, S, Vt = wproj.randomized_svd(A, 100, tol=1e-3)
    assert np.linalg.norm(A - (U * S) @ Vt) <= 1e-3 * np.linalg.norm(A) * 1.01
    assert len(S) < 100


@pytest.mark.parametrize("method", ["auto", "bdc", "gram"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_truncated_svd_matches_numpy(rng, method, order):
    A = np.asarray(rng.standard_normal((80, 50)), order=order)
    U, S, Vt = wproj.truncated_svd(A, 10, method=method)
    u, s, vt = np.linalg.svd(A, full_matrices=False)
    np.testing.assert_allclose(S, s[:10], rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(U * u[:, :10], axis=0)), 1, atol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(Vt * vt[:10], axis=1)), 1, atol=1e-8)
    assert np.linalg.norm(A - (U * S) @ Vt) == pytest.approx(optimal_error(A, 10), rel=1e-9)
    U, S, Vt = wproj.truncated_svd(A)
    np.testing.assert_allclose((U * S) @ Vt, A, atol=1e-10)


def test_incremental_svd_tracks_appended_columns(rng):
    A = rng.standard_normal((60, 20))
    C = rng.standard_normal((60, 15))
    isvd = wproj.IncrementalSVD().initialize(A).append_columns(C)
    full = np.hstack([A, C])
    np.testing.assert_allclose(isvd.S, np.linalg.svd(full, compute_uv=False)[: isvd.rank], rtol=1e-9)
    np.testing.assert_allclose(isvd.reconstruct(), full, atol=1e-9)
    B1, B2 = rng.standard_normal((60, 2)), rng.standard_normal((35, 2))
    isvd.update(B1, B2)
    np.testing.assert_allclose(isvd.reconstruct(), full + B1 @ B2.T, atol=1e-9)
    R = rng.standard_normal((5, 35))
    isvd.append_rows(R)
    assert isvd.shape == (65, 35)
    np.testing.assert_allclose(isvd.reconstruct(), np.vstack([full + B1 @ B2.T, R]), atol=1e-9)
    assert isvd.orthogonality_error < 1e-10
    capped = wproj.IncrementalSVD(max_rank=5).initialize(full)
    assert capped.rank == 5
    np.testing.assert_allclose(capped.S, np.linalg.svd(full, compute_uv=False)[:5], rtol=1e-9)


@pytest.mark.parametrize("method", ["auto", "householder", "cholesky-qr2", "shifted-cholesky-qr3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthonormalize(rng, method, dtype):
    X = rng.standard_normal((100, 12)).astype(dtype)
    Q = wproj.orthonormalize(X, method=method)
    assert Q.dtype == dtype
    eps = np.finfo(dtype).eps
    assert np.linalg.norm(Q.T @ Q - np.eye(12)) < 100 * eps
    # Same span: X = Q (Qᵀ X).
    np.testing.assert_allclose(Q @ (Q.T @ X), X, atol=1e3 * eps * np.abs(X).max())


def test_dct_matches_scipy(rng):
    n = 37
    C = wproj.dct_matrix(n)
    np.testing.assert_allclose(C, scipy.fft.dct(np.eye(n), axis=0, norm="ortho"), atol=1e-13)
    np.testing.assert_allclose(C @ C.T, np.eye(n), atol=1e-13)
    assert wproj.dct_matrix(8, np.float32).dtype == np.float32
    for order in "CF":
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            X = np.asarray(rng.standard_normal((64, 48)), order=order).astype(dtype, order=order)
            for axis in (0, 1, -1):
                Y = wproj.dct(X, axis=axis)
                assert Y.dtype == dtype
                np.testing.assert_allclose(Y, scipy.fft.dct(X.astype(np.float64), axis=axis, norm="ortho"), atol=tol)
                np.testing.assert_allclose(wproj.idct(Y, axis=axis), X, atol=tol * 10)


def test_randomized_svd_repeated_calls_keep_no_state(rng):
    """randomized_svd keeps its work matrices per thread between calls: calls with other shapes,
    dtypes, methods, tolerances and a failed call in between leave a call's result unchanged."""
    A, _ = decaying(260, 180, rng)
    B = np.asfortranarray(decaying(90, 310, rng)[0])
    first = wproj.randomized_svd(A, 15, seed=4, power_iterations=4, method="krylov", krylov_block_size=6, return_error=True)
    others = [
        lambda: wproj.randomized_svd(B, 30, oversampling=3, power_iterations=5, seed=9),
        lambda: wproj.randomized_svd(A.astype(np.float32), 15, seed=4, method="krylov"),
        lambda: wproj.randomized_svd(A, 100, tol=0.1),
        lambda: wproj.randomized_svd(B, 12, normalization="lu", method="power"),
        lambda: wproj.randomized_svd(A, 200),  # the exact fallback (rank >= min(m, n))
    ]
    for other in others:
        other()
        again = wproj.randomized_svd(A, 15, seed=4, power_iterations=4, method="krylov", krylov_block_size=6, return_error=True)
        for a, b in zip(first, again):
            assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        wproj.randomized_svd(np.full_like(A, np.nan), 15, seed=4, power_iterations=4, method="krylov", krylov_block_size=6)
    with pytest.raises(wproj.NumericalError, match=r"tol = 0.01.* not reached within rank = 100"):
        wproj.randomized_svd(A, 100, tol=1e-2)  # the 1/i spectrum needs more than 100 triplets
    again = wproj.randomized_svd(A, 15, seed=4, power_iterations=4, method="krylov", krylov_block_size=6, return_error=True)
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    # The result is a real decomposition, not merely a repeatable one.
    U, S, Vt, _ = first
    assert np.linalg.norm(A - (U * S) @ Vt) <= 1.05 * optimal_error(A, 15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_randomized_svd_names_the_non_finite_entry_of_a(rng, dtype, order, value):
    """The finiteness of A is checked by the products themselves; a non-finite entry is reported
    with its position in A (not in the transposed view a C-ordered A is decomposed through)."""
    A = np.asarray(rng.standard_normal((70, 50)), dtype=dtype, order=order)
    A[6, 41] = value
    for kwargs in ({}, {"method": "krylov", "krylov_block_size": 4}, {"tol": 0.1}, {"oversampling": 60}):
        with pytest.raises(ValueError, match=r"non-finite entry \((nan|inf|-inf)\) at \(6, 41\)"):
            wproj.randomized_svd(A, 5, **kwargs)
