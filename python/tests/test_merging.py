import inspect

import numpy as np
import pytest

import wproj
from wproj import merging


@pytest.fixture
def models(rng):
    # Three fine-tunes sharing a direction (positive pairwise cosines of the task vectors).
    base = rng.standard_normal((20, 15))
    common = 0.1 * rng.standard_normal((20, 15))
    return base, [base + common + 0.1 * rng.standard_normal((20, 15)) for _ in range(3)]


def _inputs_for(m, base, ms):
    """Arguments that satisfy a registry entry: model count, base, required parameters."""
    hi = m["max_models"] if m["max_models"] is not None else 3
    n = min(max(m["min_models"], 2), hi)
    params = {}
    for p in m["params"]:
        if p["required"] and p["name"] != "weight":
            params[p["name"]] = 0.4
    return (base if m["accepts_base"] else None), ms[:n], params


def test_every_registry_method_is_a_function(models):
    base, ms = models
    names = {m["name"] for m in wproj._core.merge_methods()}
    assert names >= {"linear", "slerp", "nuslerp", "multislerp", "karcher", "task_arithmetic", "ties", "dare_ties",
                     "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear", "sce", "model_stock",
                     "nearswap", "arcee_fusion", "passthrough", "task_slerp", "iso_c", "iso_cts", "tsv", "opcm"}
    for name in names:
        m = merging.REGISTRY[name]
        f = getattr(merging, name)
        assert merging.METHODS[name] is f
        sig = inspect.signature(f)
        for p in m["params"]:
            assert (p["name"] + "_" if p["name"] == "lambda" else p["name"]) in sig.parameters
        assert ("seed" in sig.parameters) == m["randomized"]
        assert m["title"].split()[0].lower() in f.__doc__.lower()
        b, xs, params = _inputs_for(m, base, ms)
        out = f(b, xs, **params)
        assert out.shape == base.shape and np.all(np.isfinite(out)), name
        assert np.array_equal(out, merging.merge(name, b, xs, **params))
        out32 = f(None if b is None else b.astype(np.float32), [x.astype(np.float32) for x in xs], **params)
        assert out32.dtype == np.float32
    assert merging.dare is merging.dare_linear and merging.METHODS["dare"] is merging.dare_linear


def test_linear_matches_numpy(models):
    _, ms = models
    w = [0.2, 0.5, 1.3]
    ref = sum(wi * m for wi, m in zip(w, ms)) / sum(w)
    np.testing.assert_allclose(merging.linear(None, ms, weight=w), ref, atol=1e-12)
    np.testing.assert_allclose(merging.linear(None, ms, weight=w, normalize=False),
                               sum(wi * m for wi, m in zip(w, ms)), atol=1e-12)


def test_task_arithmetic_matches_numpy(models):
    base, ms = models
    w = [0.3, 1.0, -0.5]
    ref = base + 0.7 * sum(wi * (m - base) for wi, m in zip(w, ms))
    np.testing.assert_allclose(merging.task_arithmetic(base, ms, weight=w, lambda_=0.7), ref, atol=1e-12)
    np.testing.assert_allclose(merging.task_arithmetic(base, ms, **{"lambda": 0.7, "weight": w}), ref, atol=1e-12)
    # The 0.1 spelling `scale` still works (with a DeprecationWarning).
    with pytest.warns(DeprecationWarning):
        old = merging.task_arithmetic(base, ms, scale=0.3)
    np.testing.assert_allclose(old, base + 0.3 * sum(m - base for m in ms), atol=1e-12)


def numpy_topk_mask(t, density):
    k = int(density * t.size)
    idx = np.argsort(-np.abs(t).ravel(), kind="stable")[:k]
    mask = np.zeros(t.size, bool)
    mask[idx] = True
    return mask.reshape(t.shape)


def numpy_ties(base, ms, density, weights, lam=1.0):
    """mergekit's TIES: top-k by magnitude per model, weighted deltas, sign election by their sum,
    sum of the agreeing weighted deltas divided by the sum of the agreeing weights."""
    deltas = np.stack([np.where(numpy_topk_mask(m - base, density), m - base, 0.0) for m in ms])
    w = np.asarray(weights, float).reshape(-1, 1, 1)
    wd = deltas * w
    majority = np.where(wd.sum(0) >= 0, 1.0, -1.0)
    mask = np.sign(wd) == majority
    mixed = (wd * mask).sum(0)
    divisor = (w * mask).sum(0)
    divisor[np.abs(divisor) < 1e-8] = 1.0
    return base + lam * mixed / divisor


@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_ties_matches_numpy(models, density):
    base, ms = models
    w = [1.0, 0.4, 2.5]
    np.testing.assert_allclose(merging.ties(base, ms, density=density, weight=w, lambda_=0.8),
                               numpy_ties(base, ms, density, w, 0.8), atol=1e-12)
    # Per-model densities.
    got = merging.ties(base, ms, density=[0.2, 0.5, 1.0], weight=w)
    deltas = [np.where(numpy_topk_mask(m - base, d), m, base) for m, d in zip(ms, [0.2, 0.5, 1.0])]
    np.testing.assert_allclose(got, numpy_ties(base, deltas, 1.0, w), atol=1e-12)


def test_ties_divides_by_the_agreeing_weights():
    base = np.zeros((1, 2))
    ms = [np.array([[1.0, 1.0]]), np.array([[-1.0, 3.0]])]
    # Entry 0: weighted deltas 2·1 = 2 and 1·(−1): the sum is positive, only model 0 agrees → 2/2 = 1.
    # Entry 1: 2·1 + 1·3 = 5, both agree → 5/3.
    np.testing.assert_allclose(merging.ties(base, ms, weight=[2.0, 1.0]), [[1.0, 5.0 / 3.0]], atol=1e-12)


def test_slerp_matches_mergekit_formula(models):
    base, ms = models
    v0, v1, t = base, ms[0] * 1.7, 0.3
    dot = np.sum(v0 / np.linalg.norm(v0) * (v1 / np.linalg.norm(v1)))
    th = np.arccos(dot)
    ref = np.sin((1 - t) * th) / np.sin(th) * v0 + np.sin(t * th) / np.sin(th) * v1
    np.testing.assert_allclose(merging.slerp(base, [v1], t=t), ref, atol=1e-10)
    np.testing.assert_allclose(merging.slerp(base, [v1], t=0.0), base, atol=1e-12)
    with pytest.raises(ValueError, match="'t'"):
        merging.slerp(base, [v1])
    with pytest.raises(ValueError, match="model"):
        merging.slerp(base, ms[:2], t=0.5)


def test_task_slerp_is_the_old_slerp(models):
    base, ms = models
    a, b = ms[0] - base, ms[1] - base
    t = 0.3
    om = np.arccos(np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b))
    ref = (np.sin((1 - t) * om) * a + np.sin(t * om) * b) / np.sin(om)
    np.testing.assert_allclose(merging.task_slerp(base, ms[:2], t=t), base + ref, atol=1e-12)


def test_model_stock_formula(models):
    base, ms = models
    taus = [(m - base).ravel() for m in ms]
    cos = [np.dot(taus[i], taus[j]) / np.linalg.norm(taus[i]) / np.linalg.norm(taus[j])
           for i in range(3) for j in range(i + 1, 3)]
    c = np.mean(cos)
    assert c > 0
    t = 3 * c / (1 + 2 * c)
    np.testing.assert_allclose(merging.model_stock(base, ms), t * np.mean(ms, axis=0) + (1 - t) * base, atol=1e-12)


def test_breadcrumbs_matches_numpy(models):
    base, ms = models
    density, gamma, w = 0.5, 0.02, [1.0, 0.5, 2.0]
    out = base.copy()
    for m, wi in zip(ms, w):
        t = (m - base).ravel()
        n = t.size
        target, n_top = int(density * n), int(gamma * n)
        n_bot = n - target - n_top
        order = np.argsort(np.abs(t), kind="stable")
        keep = np.zeros(n, bool)
        keep[order[n_bot:n - n_top]] = True
        out += wi * np.where(keep, t, 0.0).reshape(base.shape)
    np.testing.assert_allclose(merging.breadcrumbs(base, ms, density=density, gamma=gamma, weight=w), out, atol=1e-12)


@pytest.mark.parametrize("name", ["dare_linear", "dare_ties", "della", "della_linear"])
def test_randomized_methods_keep_rate_and_seed(rng, name):
    base = rng.standard_normal((200, 100))
    m = base + rng.standard_normal((200, 100))
    f = merging.METHODS[name]
    kw = dict(density=0.3, weight=1.0)
    if name.startswith("della"):
        kw.update(epsilon=0.1, rescale=False, normalize=False)
    a = f(base, [m], seed=5, **kw)
    assert np.array_equal(a, f(base, [m], seed=5, **kw))
    assert not np.array_equal(a, f(base, [m], seed=6, **kw))
    d, tau = a - base, m - base
    kept = d != 0
    # Keep rate: 20000 Bernoulli draws with mean 0.3 (standard deviation 0.0032).
    assert abs(kept.mean() - 0.3) < 0.02
    # Kept entries are the task vector's entries times one common factor.
    ratio = d[kept] / tau[kept]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    if name.startswith("della"):
        # DELLA keeps large entries more often than small ones.
        big = np.abs(tau) > np.median(np.abs(tau))
        assert kept[big].mean() > kept[~big].mean() + 0.05


def test_dare_old_spelling(models):
    base, ms = models
    with pytest.warns(DeprecationWarning):
        a = merging.dare(base, ms[:1], drop_rate=0.6, seed=5)
    assert np.array_equal(a, merging.dare_linear(base, ms[:1], density=0.4, seed=5))
    # No dropping is task arithmetic.
    np.testing.assert_allclose(merging.dare(base, ms, density=1.0), merging.task_arithmetic(base, ms), atol=1e-12)


def test_iso_c_flattens_the_spectrum(models):
    base, ms = models
    tot = sum(m - base for m in ms)
    u, s, vt = np.linalg.svd(tot, full_matrices=False)
    np.testing.assert_allclose(merging.iso_c(base, ms, alpha=1.5), base + 1.5 * s.mean() * u @ vt, atol=1e-10)


@pytest.mark.parametrize("name", ["iso_cts", "tsv", "opcm"])
def test_spectral_methods_are_consistent(models, name):
    base, ms = models
    f = merging.METHODS[name]
    out = f(base, ms)
    d = out - base
    assert np.linalg.norm(d) > 0
    # The merged delta lies in the span of the task vectors' column spaces.
    span = wproj.Subspace.from_columns(np.hstack([m - base for m in ms]))
    np.testing.assert_allclose(span.project(d), d, atol=1e-9)
    out32 = f(base.astype(np.float32), [m.astype(np.float32) for m in ms])
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
    with pytest.raises(ValueError, match="density"):
        merging.ties(base, ms, density=[0.5, 0.5])
    with pytest.raises(ValueError, match="empty"):
        merging.ties(base, [])
    with pytest.raises(ValueError, match="foo"):
        merging.ties(base, ms, foo=1.0)
    with pytest.raises(ValueError, match="normalize"):
        merging.ties(base, ms, normalize=0.5)
    with pytest.raises(ValueError, match="base"):
        merging.ties(None, ms)
    with pytest.raises(ValueError, match="seed"):
        merging.merge("ties", base, ms, seed=3)
    with pytest.raises(ValueError, match="method"):
        merging.merge("no_such_method", base, ms)
    with pytest.raises(ValueError, match="gamma"):
        merging.breadcrumbs(base, ms, gamma=-0.1)


def test_stub_lists_every_function_with_its_keywords():
    import ast
    import pathlib

    stub = pathlib.Path(merging.__file__).with_suffix(".pyi")
    tree = ast.parse(stub.read_text())
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for name, f in merging.METHODS.items():
        assert name in defs, f"{name} is missing from merging.pyi (regenerate it with python/gen_merging_stub.py)"
        keywords = [a.arg for a in defs[name].args.kwonlyargs]
        assert keywords == [p for p in inspect.signature(f).parameters if p not in ("base", "models")], name
