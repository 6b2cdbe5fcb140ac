import numpy as np
import pytest

from wproj.editing import Dama, Inlp, ThinkEdit, WeightEditor


def orth_projector(B):
    u, s, _ = np.linalg.svd(B, full_matrices=False)
    u = u[:, s > s.max() * max(B.shape) * np.finfo(float).eps]
    return u @ u.T


def numpy_pls_x_weights(X, Y, r, iters=500, tol=1e-6):
    """PLS2 (NIPALS, centred, unscaled) x-weights, as scikit-learn's PLSRegression(scale=False)."""
    Xk, Yk = X - X.mean(0), Y - Y.mean(0)
    W = []
    for _ in range(r):
        y = Yk[:, [np.argmax(np.sum(Yk**2, 0))]]
        w_old = np.zeros((X.shape[1], 1))
        for _ in range(iters):
            w = Xk.T @ y / (y.T @ y)
            w /= np.linalg.norm(w)
            t = Xk @ w
            c = Yk.T @ t / (t.T @ t)
            y = Yk @ c / (c.T @ c)
            if np.linalg.norm(w - w_old) < tol:
                break
            w_old = w
        t = Xk @ w
        p = Xk.T @ t / (t.T @ t)
        q = Yk.T @ t / (t.T @ t)
        Xk = Xk - t @ p.T
        Yk = Yk - t @ q.T
        W.append(w[:, 0])
    return np.array(W).T


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("whiten", [False, True])
def test_dama_matches_pls(rng, dtype, whiten):
    n, d, t, r = 200, 12, 3, 4
    X = rng.standard_normal((n, d))
    Y = X @ rng.standard_normal((d, t)) + 0.1 * rng.standard_normal((n, t))
    C = None
    Xw = X
    if whiten:
        K = rng.standard_normal((50, d))
        C = K.T @ K / 50
        Xw = X @ np.linalg.inv(2.0 * C + X.T @ X)
    est = Dama(r, whitening=None if C is None else C.astype(dtype), lam=2.0, max_iter=5000,
               tol=1e-12).fit(X.astype(dtype), Y.astype(dtype))
    B = numpy_pls_x_weights(Xw, Y, r, iters=5000, tol=1e-12)
    Q = est.subspace.basis
    assert Q.dtype == dtype and Q.shape == (d, r)
    tol = 2e-3 if dtype == np.float32 else 1e-6  # NIPALS stops on ||w - w_old|| < tol
    np.testing.assert_allclose(Q @ Q.T, orth_projector(B), atol=tol)
    M = est.projector
    np.testing.assert_allclose(M @ M, M, atol=tol)
    np.testing.assert_allclose(M, M.T, atol=tol)


def test_dama_errors(rng):
    with pytest.raises(ValueError, match="rank"):
        Dama(20).fit(rng.standard_normal((30, 5)), rng.standard_normal((30, 2)))
    with pytest.raises(ValueError, match="y|Y"):
        Dama(2).fit(rng.standard_normal((30, 5)), rng.standard_normal((29, 2)))


@pytest.mark.parametrize("classifier", ["svm", "logistic"])
def test_inlp_removes_the_concept(rng, classifier):
    from sklearn.linear_model import LogisticRegression

    n, d = 400, 10
    y = rng.integers(0, 2, n)
    mu = rng.standard_normal(d)
    X = rng.standard_normal((n, d)) + np.outer(2 * y - 1, mu)
    before = LogisticRegression(max_iter=1000).fit(X, y).score(X, y)
    assert before > 0.95
    est = Inlp(6, classifier=classifier).fit(X, y)
    P = est.projector
    np.testing.assert_allclose(P @ P, P, atol=1e-8)
    for w in est.weights:
        np.testing.assert_allclose(P @ np.ravel(w), 0, atol=1e-8)
    Xp = est.transform(X)
    np.testing.assert_allclose(Xp, X @ P, atol=1e-10)
    majority = max(y.mean(), 1 - y.mean())
    assert est.majority == pytest.approx(majority)
    after = LogisticRegression(max_iter=1000).fit(Xp, y).score(Xp, y)
    assert after < majority + 0.08
    assert est.accuracies[0] > 0.95


def test_inlp_errors(rng):
    with pytest.raises(ValueError, match="classifier"):
        Inlp(2, classifier="tree").fit(rng.standard_normal((20, 3)), np.arange(20) % 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_think_edit_direction(rng, dtype):
    A = rng.standard_normal((30, 8)) + 1.0
    B = rng.standard_normal((40, 8))
    est = ThinkEdit().fit(A.astype(dtype), B.astype(dtype))
    diff = A.mean(0) - B.mean(0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(est.direction, diff / np.linalg.norm(diff), atol=tol)
    assert est.gap == pytest.approx(np.linalg.norm(diff), rel=1e-5)
    assert est.subspace.dim == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_editor_sides(rng, dtype):
    out_dim, in_dim = 12, 9
    W = rng.standard_normal((out_dim, in_dim)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    # Input side: W' = W (I − QQᵀ), so W' k = 0 for every k in the subspace.
    Qi, _ = np.linalg.qr(rng.standard_normal((in_dim, 3)))
    Wi, rep = WeightEditor("input").apply(W, Qi.astype(dtype))
    assert Wi.dtype == dtype
    np.testing.assert_allclose(Wi, W @ (np.eye(in_dim) - Qi @ Qi.T), atol=tol)
    np.testing.assert_allclose(Wi @ Qi, 0, atol=tol)
    np.testing.assert_allclose(rep.norm_before, np.linalg.norm(W @ Qi, axis=0), rtol=1e-4)
    np.testing.assert_allclose(rep.norm_after, 0, atol=1e-4)
    assert rep.delta_norm == pytest.approx(np.linalg.norm(Wi - W), rel=1e-4)
    # Output side at half strength: (I − ½QQᵀ) W.
    Qo, _ = np.linalg.qr(rng.standard_normal((out_dim, 2)))
    Wo, _ = WeightEditor("output", strength=0.5).apply(W, Qo.astype(dtype))
    np.testing.assert_allclose(Wo, (np.eye(out_dim) - 0.5 * Qo @ Qo.T) @ W, atol=tol)
    # Stored transposed (in, out), as GPT-2's Conv1D: the same edit on Wᵀ.
    Wt, _ = WeightEditor("input", transposed=True).apply(W.T.copy(), Qi.astype(dtype))
    np.testing.assert_allclose(Wt, Wi.T, atol=tol)
    # A block: ThinkEdit edits one head's slice of o_proj (columns 3..5) on the output side.
    v = rng.standard_normal(out_dim)
    v /= np.linalg.norm(v)
    Wb, _ = WeightEditor("output", input_range=(3, 3)).apply(W, v.reshape(-1, 1).astype(dtype))
    ref = W.copy()
    ref[:, 3:6] = (np.eye(out_dim) - np.outer(v, v)) @ W[:, 3:6]
    np.testing.assert_allclose(Wb, ref, atol=tol)
    # The input is never modified.
    assert not np.shares_memory(Wb, W)


def test_weight_editor_errors(rng):
    W = rng.standard_normal((6, 5))
    with pytest.raises(ValueError, match="side"):
        WeightEditor("both")
    with pytest.raises(ValueError, match="alpha|strength"):
        WeightEditor("output", strength=1.5).apply(W, np.eye(6)[:, :1])
    with pytest.raises(ValueError):
        WeightEditor("input").apply(W, np.eye(6)[:, :1])  # a subspace of R^6 for 5 inputs
