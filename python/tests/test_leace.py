import numpy as np
import pytest

import wproj


def numpy_leace(X, Z, svd_tol=0.01):
    """Independent NumPy LEACE (Belrose et al. 2023, no shrinkage, no trace constraint)."""
    n, d = X.shape
    mx, mz = X.mean(0), Z.mean(0)
    sxx = (X - mx).T @ (X - mx) / (n - 1)
    sxz = (X - mx).T @ (Z - mz) / (n - 1)
    lam, V = np.linalg.eigh(sxx)
    keep = lam > lam.max() * d * np.finfo(X.dtype).eps
    inv = np.where(keep, 1 / np.sqrt(np.where(keep, lam, 1)), 0)
    sq = np.where(keep, np.sqrt(np.clip(lam, 0, None)), 0)
    W, Winv = (V * inv) @ V.T, (V * sq) @ V.T
    u, s, _ = np.linalg.svd(W @ sxz, full_matrices=False)
    u = u[:, s > svd_tol]
    return Winv @ u, (W @ u).T, mx  # proj_left, proj_right, bias


def data(rng, n=4000, d=12, classes=3):
    labels = rng.integers(0, classes, n)
    means = rng.standard_normal((classes, d)) * 2
    A = rng.standard_normal((d, d))
    X = rng.standard_normal((n, d)) @ A + means[labels]
    return X, labels


def test_leace_matches_numpy(rng):
    X, y = data(rng)
    Z = np.eye(3)[y]
    e = wproj.LeaceEraser.fit(X, y, shrinkage=False, constrain_cov_trace=False)
    L, R, mu = numpy_leace(X, Z)
    assert e.proj_left.shape == L.shape and e.proj_right.shape == R.shape
    P = np.eye(12) - L @ R
    np.testing.assert_allclose(e.P, P, atol=1e-9)
    np.testing.assert_allclose(e.bias, mu, atol=1e-12)
    np.testing.assert_allclose(e(X), X - (X - mu) @ R.T @ L.T, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erased_features_carry_no_linear_concept(rng, dtype):
    X, y = data(rng)
    X = X.astype(dtype)
    e = wproj.LeaceEraser.fit(X, y)  # concept-erasure's defaults: shrinkage, trace constraint
    Xe = e(X)
    assert Xe.dtype == dtype
    Z = np.eye(3)[y]
    cross = (Xe - Xe.mean(0)).astype(np.float64).T @ (Z - Z.mean(0)) / len(X)
    before = (X - X.mean(0)).astype(np.float64).T @ (Z - Z.mean(0)) / len(X)
    assert np.abs(cross).max() < (1e-4 if dtype == np.float32 else 1e-10) * np.abs(before).max()
    # A least-squares probe can do no better than the constant predictor.
    F = np.hstack([Xe.astype(np.float64), np.ones((len(X), 1))])
    # (float32 erasure leaves rounding-level residue in the erased directions: the probe ignores
    # directions below float32 precision.)
    coef = np.linalg.lstsq(F, Z, rcond=1e-5 if dtype == np.float32 else None)[0]
    assert np.mean((F @ coef - Z) ** 2) == pytest.approx(np.mean((Z - Z.mean(0)) ** 2), rel=1e-4)


def test_streaming_fitter_equals_one_batch(rng):
    X, y = data(rng)
    f = wproj.LeaceFitter(12, 3)
    for i in range(0, len(X), 500):
        f.update(X[i:i + 500], y[i:i + 500])
    assert f.n == len(X)
    one = wproj.LeaceEraser.fit(X, y)
    np.testing.assert_allclose(f.eraser.P, one.P, atol=1e-9)
    np.testing.assert_allclose(f.eraser(X[:10]), one(X[:10]), atol=1e-9)


def test_continuous_concept_and_linear_eraser(rng):
    X = rng.standard_normal((2000, 8))
    z = X[:, 0] * 2 + X[:, 3] + 0.1 * rng.standard_normal(2000)
    e = wproj.LeaceEraser.fit(X, z, affine=False)
    assert e.bias is None
    Xe = e(X)
    assert abs(np.corrcoef(Xe @ rng.standard_normal(8), z)[0, 1]) < 0.05
    cross = (Xe - Xe.mean(0)).T @ (z - z.mean()) / len(z)
    assert np.abs(cross).max() < 1e-10


def test_eraser_from_factors(rng):
    X, y = data(rng)
    e = wproj.LeaceEraser.fit(X, y)
    again = wproj.LeaceEraser(e.proj_left, e.proj_right, e.bias)
    np.testing.assert_allclose(again(X[:5]), e(X[:5]), atol=1e-12)


def test_leace_errors(rng):
    with pytest.raises(ValueError, match="samples seen"):
        wproj.LeaceFitter(4, 2).eraser
    with pytest.raises(ValueError, match="class index"):
        wproj.LeaceFitter(4, 2).update(rng.standard_normal((5, 4)), np.array([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match="method"):
        wproj.LeaceFitter(4, 2, method="fancy")
