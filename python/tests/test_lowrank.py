import itertools

import numpy as np
import pytest

import wproj
from wproj import lowrank


def low_rank_plus_noise(rng, m, n, r, noise, dtype=np.float64):
    u, _ = np.linalg.qr(rng.standard_normal((m, r)))
    v, _ = np.linalg.qr(rng.standard_normal((n, r)))
    s = 1.0 / np.arange(1, r + 1) ** 0.7
    return (u * s @ v.T + noise * rng.standard_normal((m, n)) / np.sqrt(m * n)).astype(dtype)


def truncation(tau, k):
    u, s, vt = np.linalg.svd(tau.astype(np.float64), full_matrices=False)
    return (u[:, :k] * s[:k]) @ vt[:k], s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(60, 40), (40, 60), (50, 50)])
def test_extract_equals_numpy_truncated_svd(rng, dtype, shape):
    base = rng.standard_normal(shape).astype(dtype)
    ft = base + low_rank_plus_noise(rng, *shape, 20, 0.3, dtype)
    f = lowrank.extract(ft, base, rank=8, scale=0.5)
    assert f.B.shape == (shape[0], 8) and f.A.shape == (8, shape[1])
    assert f.B.dtype == dtype and f.A.dtype == dtype
    best, s = truncation(ft.astype(np.float64) - base, 8)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    norm = np.linalg.norm(best)
    np.testing.assert_allclose(0.5 * f.B.astype(np.float64) @ f.A, best, atol=tol * norm)
    assert f.relative_error == pytest.approx(np.sqrt(np.sum(s[8:] ** 2) / np.sum(s ** 2)), rel=1e-4)
    # Balanced split: equal norms of B's columns and A's rows.
    np.testing.assert_allclose(np.linalg.norm(f.B, axis=0), np.linalg.norm(f.A, axis=1), rtol=1e-4)
    # Inputs untouched; apply reproduces fine_tuned within the reported error.
    w = lowrank.apply(base, f.B, f.A, f.scale)
    assert np.linalg.norm(ft.astype(np.float64) - w) == pytest.approx(np.sqrt(f.error_sq), rel=1e-3)
    np.testing.assert_allclose(lowrank.remove(w, f.B, f.A, f.scale), base, atol=tol * 100 * np.abs(base).max())


def test_rules_and_errors(rng):
    tau = low_rank_plus_noise(rng, 80, 60, 30, 0.0)
    _, s = truncation(tau, 1)
    energy = np.cumsum(s ** 2) / np.sum(s ** 2)
    assert lowrank.extract(tau, energy=0.9).rank == int(np.searchsorted(energy, 0.9) + 1)
    assert lowrank.extract(tau, sv_epsilon=0.2).rank == int(np.sum(s > 0.2))
    assert lowrank.extract(tau, sv_epsilon=0.0, max_rank=7).rank == 7
    f = lowrank.extract(tau, rel_error=0.1)
    assert f.relative_error <= 0.1 + 1e-9
    assert lowrank.extract(np.zeros((5, 4))).rank == 0
    with pytest.raises(ValueError, match="at most one"):
        lowrank.extract(tau, rank=3, energy=0.5)
    with pytest.raises(ValueError, match="base"):
        lowrank.extract(tau, np.zeros((80, 61)))
    bad = tau.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        lowrank.extract(bad, rank=2)
    with pytest.raises(ValueError, match="split"):
        lowrank.extract(tau, rank=2, split="middle")
    with pytest.raises(ValueError, match="'W'"):
        lowrank.apply(np.zeros((3, 3)), f.B, f.A)


def test_embedding_layout(rng):
    tau = low_rank_plus_noise(rng, 30, 50, 10, 0.0)  # (dim, vocab): τᵀ of a vocab×dim embedding
    f = lowrank.extract(tau, rank=10)
    w = np.zeros((50, 30))
    np.testing.assert_allclose(lowrank.apply(w, f.B, f.A, transposed=True), (f.B @ f.A).T, atol=1e-12)


def test_budget_matches_brute_force(rng):
    spectra, costs = [], []
    for t in range(3):
        s = np.sort(rng.uniform(0.1, 3.0, size=4))[::-1]
        spectra.append((s, float(np.sum(s ** 2)) + 0.5))
        costs.append(int(rng.integers(2, 6)) * 16)
    budget = sum(costs) + 150
    out = lowrank.allocate_budget(spectra, costs, budget)
    best = np.inf
    for ranks in itertools.product(range(1, 5), repeat=3):
        if sum(r * c for r, c in zip(ranks, costs)) <= budget:
            best = min(best, sum(n - np.sum(s[:r] ** 2) for (s, n), r in zip(spectra, ranks)))
    assert out["exact"] and out["bytes"] <= budget
    assert out["error_sq"] == pytest.approx(best, rel=1e-12)
    greedy = lowrank.allocate_budget(spectra, costs, budget, force_greedy=True)
    assert greedy["error_sq"] - best <= greedy["gap_bound"] + 1e-12
    with pytest.raises(ValueError, match="budget"):
        lowrank.allocate_budget(spectra, costs, sum(costs) - 1)


def test_spectrum(rng):
    tau = low_rank_plus_noise(rng, 70, 40, 40, 0.0)
    sigma, norm_sq = lowrank.spectrum(tau, 10)
    _, s = truncation(tau, 1)
    np.testing.assert_allclose(sigma, s[:10], rtol=1e-10)
    assert norm_sq == pytest.approx(np.sum(s ** 2), rel=1e-12)
