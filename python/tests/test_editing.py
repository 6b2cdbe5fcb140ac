import numpy as np
import pytest

import wproj


def test_detox_matches_numpy(rng):
    n, d = 60, 20
    pos = rng.standard_normal((n, d)) + 3 * rng.standard_normal(d)
    toxic_dirs = np.linalg.qr(rng.standard_normal((d, 2)))[0]
    neg = pos + rng.standard_normal((n, 2)) @ toxic_dirs.T * 4 + 0.01 * rng.standard_normal((n, d))
    sub, s, v0 = wproj.detox_subspace(pos, neg, rank=2, return_details=True)
    # NumPy: T = (X+ − X−)/2, remove the top right singular vector of X+, top-2 right singular vectors.
    T = (pos - neg) / 2
    top = np.linalg.svd(pos, full_matrices=False)[2][0]
    T = T - np.outer(T @ top, top)
    _, s_ref, vt = np.linalg.svd(T, full_matrices=False)
    np.testing.assert_allclose(s, s_ref[:2], rtol=1e-9)
    np.testing.assert_allclose(np.abs(v0 @ top), 1, atol=1e-9)
    np.testing.assert_allclose(sub.basis @ sub.basis.T, vt[:2].T @ vt[:2], atol=1e-9)
    # The recovered subspace is close to the planted toxic directions.
    assert sub.overlap(wproj.Subspace.from_columns(toxic_dirs)) > 0.95
    # Editing a weight removes the toxic subspace from its outputs.
    W = rng.standard_normal((d, 30))
    We = sub.project_out(W, side="left")
    np.testing.assert_allclose(sub.basis.T @ We, 0, atol=1e-10)
    with pytest.raises(ValueError, match="toxic"):
        wproj.detox_subspace(pos, neg[:10])


def test_alpha_edit_matches_numpy(rng):
    d, m = 16, 10
    # Preserved keys span 10 of the 16 directions.
    K0 = rng.standard_normal((d, 10)) @ rng.standard_normal((10, 400))
    ae = wproj.AlphaEdit(K0, lam=10.0)
    S0 = K0 @ K0.T / K0.shape[1]
    lam, V = np.linalg.eigh(S0)
    N = V[:, lam < 2e-2]
    P = N @ N.T
    assert ae.null_space.dim == N.shape[1] == 6
    np.testing.assert_allclose(ae.null_space.basis @ ae.null_space.basis.T, P, atol=1e-8)
    K, R = rng.standard_normal((d, 3)), rng.standard_normal((m, 3))
    delta = ae.update(K, R)
    ref = np.linalg.solve(P @ (K @ K.T) + 10 * np.eye(d), P @ K @ R.T).T
    np.testing.assert_allclose(delta, ref, atol=1e-10)
    np.testing.assert_allclose(delta @ K0, 0, atol=1e-8 * np.abs(K0).max())  # preserved keys untouched
    np.testing.assert_allclose(ae.cache, K @ K.T, atol=1e-12)
    K2, R2 = rng.standard_normal((d, 2)), rng.standard_normal((m, 2))
    ref2 = np.linalg.solve(P @ (K2 @ K2.T + K @ K.T) + 10 * np.eye(d), P @ K2 @ R2.T).T
    np.testing.assert_allclose(ae.compute_update(K2, R2), ref2, atol=1e-10)
    np.testing.assert_allclose(ae.cache, K @ K.T, atol=1e-12)  # compute_update leaves C alone
    with pytest.raises(ValueError, match="keys"):
        ae.update(rng.standard_normal((d + 1, 2)), R2)
