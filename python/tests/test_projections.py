import numpy as np
import pytest
import scipy.linalg

import wproj


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subspace_projections(rng, dtype):
    K = rng.standard_normal((50, 6)).astype(dtype)
    S = wproj.Subspace.from_columns(K)
    assert S.dim == 6 and S.ambient_dim == 50 and S.dtype == dtype
    Q = S.basis
    eps = np.finfo(dtype).eps
    assert np.linalg.norm(Q.T @ Q - np.eye(6)) < 100 * eps
    P = Q.astype(np.float64) @ Q.T.astype(np.float64)
    Pk = K.astype(np.float64) @ np.linalg.pinv(K.astype(np.float64))  # oracle projector onto span(K)
    np.testing.assert_allclose(P, Pk, atol=1e3 * eps)
    X = rng.standard_normal((50, 7)).astype(dtype)
    np.testing.assert_allclose(S.project(X), Pk @ X, atol=1e3 * eps)
    np.testing.assert_allclose(S.project_out(X, side="left"), X - Pk @ X, atol=1e3 * eps)
    W = rng.standard_normal((9, 50)).astype(dtype)
    out = S.project_out(W, side="right")
    np.testing.assert_allclose(out, W - W @ Pk, atol=1e3 * eps)
    assert np.abs(out @ K).max() < 1e3 * eps * np.abs(W).max() * np.abs(K).max() * 50
    # C-ordered and F-ordered inputs give the same result.
    np.testing.assert_allclose(S.project(np.asfortranarray(X)), S.project(X), atol=10 * eps)
    with pytest.raises(ValueError, match="side"):
        S.project(X, side="top")
    with pytest.raises(ValueError):
        S.project(W, side="left")  # 9 rows, ambient dimension 50


def test_rank_deficient_columns(rng):
    B = rng.standard_normal((30, 3))
    K = np.hstack([B, B @ rng.standard_normal((3, 4))])
    assert wproj.Subspace.from_columns(K).dim == 3
    assert wproj.Subspace.from_rows(K.T).dim == 3


def test_principal_angles_and_overlap(rng):
    A, B = rng.standard_normal((40, 5)), rng.standard_normal((40, 3))
    SA, SB = wproj.Subspace.from_columns(A), wproj.Subspace.from_columns(B)
    angles = SA.principal_angles(SB)
    np.testing.assert_allclose(angles, np.sort(scipy.linalg.subspace_angles(A, B)), atol=1e-10)
    assert SA.overlap(SB) == pytest.approx(np.sum(np.cos(angles) ** 2) / 3, rel=1e-10)
    assert SA.overlap(SA) == pytest.approx(1.0)
    assert SA.overlap(SA.complement()) == pytest.approx(0.0, abs=1e-12)
    assert SA.complement().dim == 35
    both = SA.sum(SB)
    assert both.dim == 8
    C = rng.standard_normal((40, 2))
    inter = wproj.Subspace.from_columns(np.hstack([A, C])).intersection(wproj.Subspace.from_columns(np.hstack([B, C])))
    assert inter.dim == 2
    np.testing.assert_allclose(inter.project(C), C, atol=1e-9)
    with pytest.raises(TypeError):
        SA.overlap(wproj.Subspace.from_columns(B.astype(np.float32)))


@pytest.mark.parametrize("order", ["C", "F"])
def test_null_space_matches_scipy(rng, order):
    A = np.asarray(rng.standard_normal((4, 10)) , order=order)
    A = np.asarray(np.vstack([A, A[:2] + A[2:4]]), order=order)  # rank 4, 6 rows
    N = wproj.null_space(A)
    ref = scipy.linalg.null_space(A)
    assert N.shape == ref.shape == (10, 6)
    np.testing.assert_allclose(A @ N, 0, atol=1e-12)
    np.testing.assert_allclose(N.T @ N, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(N @ N.T, ref @ ref.T, atol=1e-12)  # same subspace
    # rtol as scipy's rcond: a large rtol treats small singular values as zero.
    s = np.linalg.svd(A, compute_uv=False)
    r = np.sum(s > 0.5 * s[0])
    assert wproj.null_space(A, rtol=0.5).shape == (10, 10 - r)
