import numpy as np
import pytest

import wproj
from wproj import merging


@pytest.fixture
def models(rng):
    base = rng.standard_normal((20, 15))
    return base, [base + 0.1 * rng.standard_normal((20, 15)) for _ in range(3)]


def test_task_arithmetic(models):
    base, ms = models
    out = merging.task_arithmetic(base, ms, scale=0.3)
    np.testing.assert_allclose(out, base + 0.3 * sum(m - base for m in ms), atol=1e-12)


def numpy_ties(base, ms, density, scale):
    taus = [m - base for m in ms]
    trimmed = []
    for t in taus:
        k = int(np.ceil(density * t.size - 1e-9))
        thr = np.sort(np.abs(t).ravel())[::-1][k - 1]
        trimmed.append(np.where(np.abs(t) >= thr, t, 0.0))
    s = np.sum(trimmed, axis=0)
    sign = np.where(s >= 0, 1.0, -1.0)
    agree = [np.where(t * sign > 0, t, 0.0) for t in trimmed]
    cnt = np.sum([a != 0 for a in agree], axis=0)
    return base + scale * np.sum(agree, axis=0) / np.maximum(cnt, 1)


@pytest.mark.parametrize("density", [0.1, 0.2, 0.5, 1.0])
def test_ties_matches_numpy(models, density):
    base, ms = models
    np.testing.assert_allclose(merging.ties(base, ms, density=density, scale=0.7), numpy_ties(base, ms, density, 0.7),
                               atol=1e-12)


def test_dare_masks(models):
    base, ms = models
    a = merging.dare(base, ms[:1], drop_rate=0.6, seed=5)
    assert np.array_equal(a, merging.dare(base, ms[:1], drop_rate=0.6, seed=5))
    assert not np.array_equal(a, merging.dare(base, ms[:1], drop_rate=0.6, seed=6))
    d, tau = a - base, ms[0] - base
    kept = d != 0
    np.testing.assert_allclose(d[kept], tau[kept] / 0.4, rtol=1e-12)
    assert 0.45 < 1 - kept.mean() < 0.75
    # No dropping is task arithmetic.
    np.testing.assert_allclose(merging.dare(base, ms, drop_rate=0.0), merging.task_arithmetic(base, ms), atol=1e-12)


def test_slerp_matches_formula(models):
    base, ms = models
    a, b = ms[0] - base, ms[1] - base
    t = 0.3
    om = np.arccos(np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b))
    ref = (np.sin((1 - t) * om) * a + np.sin(t * om) * b) / np.sin(om)
    np.testing.assert_allclose(merging.slerp(base, ms[:2], t=t), base + ref, atol=1e-12)


def test_model_stock_formula(models):
    base, ms = models
    taus = [(m - base).ravel() for m in ms]
    cos = [np.dot(taus[i], taus[j]) / np.linalg.norm(taus[i]) / np.linalg.norm(taus[j])
           for i in range(3) for j in range(i + 1, 3)]
    c = max(np.mean(cos), 0.0)
    t = 3 * c / (1 + 2 * c)
    np.testing.assert_allclose(merging.model_stock(base, ms), base + t * np.mean([m - base for m in ms], axis=0),
                               atol=1e-12)


def test_iso_c_flattens_the_spectrum(models):
    base, ms = models
    tot = sum(m - base for m in ms)
    u, s, vt = np.linalg.svd(tot, full_matrices=False)
    np.testing.assert_allclose(merging.iso_c(base, ms, scale=1.5), base + 1.5 * s.mean() * u @ vt, atol=1e-10)


@pytest.mark.parametrize("name", ["iso_cts", "tsv", "opcm"])
def test_spectral_methods_are_consistent(models, name):
    base, ms = models
    f = merging.METHODS[name]
    out = f(base, ms)
    assert out.shape == base.shape and np.all(np.isfinite(out))
    d = out - base
    assert np.linalg.norm(d) > 0
    # The merged delta lies in the span of the task vectors' column spaces.
    span = wproj.Subspace.from_columns(np.hstack([m - base for m in ms]))
    np.testing.assert_allclose(span.project(d), d, atol=1e-9)
    # float32 in, float32 out, close to the float64 result.
    out32 = f(base.astype(np.float32), [m.astype(np.float32) for m in ms])
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out, atol=1e-4)


def test_opcm_single_model_is_that_model(models):
    base, ms = models
    np.testing.assert_allclose(merging.opcm(base, ms[:1]), ms[0], atol=1e-12)


def test_merge_errors(models):
    base, ms = models
    with pytest.raises(ValueError, match="shape"):
        merging.task_arithmetic(base, [ms[0][:5]])
    with pytest.raises(ValueError, match="density"):
        merging.ties(base, ms, density=1.5)
    with pytest.raises(ValueError, match="empty"):
        merging.ties(base, [])
