import numpy as np
import pytest

torch = pytest.importorskip("torch")

import wproj  # noqa: E402
from wproj.torch import APOLLOAdamW, GaLoreAdafactor, GaLoreAdamW, Muon  # noqa: E402


def signed_svd(G):
    """SVD with wproj's sign convention: the largest-magnitude entry of each u_i is positive."""
    U, s, Vt = np.linalg.svd(G, full_matrices=False)
    for i in range(U.shape[1]):
        if U[np.argmax(np.abs(U[:, i])), i] < 0:
            U[:, i] *= -1
            Vt[i] *= -1
    return U, Vt


class NumpyProjectedAdam:
    """The part GaLore-AdamW and APOLLO share, from their formulas (proj_type 'std'): refresh at
    steps 0, T, 2T… (thin SVD of the gradient; right side P = Vt[:r] when m >= n, else left
    P = U[:, :r]); R = G Pᵀ or Pᵀ G; Adam moments of R kept across refreshes; the bias-corrected
    step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ); N = m/(√v + ε)."""

    def __init__(self, W, rank, gap, lr, betas, eps, wd):
        self.W = W.astype(np.float64)
        self.rank, self.gap, self.lr, self.eps, self.wd = rank, gap, lr, eps, wd
        self.b1, self.b2 = betas
        self.t = 0
        self.m = self.v = None
        self.right = W.shape[0] >= W.shape[1]

    def moments(self, G):
        """Returns (R, N, step size) for gradient G (float64)."""
        if self.t % self.gap == 0:
            U, Vt = signed_svd(G)
            self.P = Vt[: self.rank] if self.right else U[:, : self.rank]
        R = G @ self.P.T if self.right else self.P.T @ G
        if self.m is None:
            self.m, self.v = np.zeros_like(R), np.zeros_like(R)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * R
        self.v = self.b2 * self.v + (1 - self.b2) * R * R
        step = self.lr * np.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        return R, self.m / (np.sqrt(self.v) + self.eps), step


class NumpyGaLoreAdamW(NumpyProjectedAdam):
    """GaLore-AdamW (galore_torch): W -= step·scale·back(N); then W -= lr·wd·W."""

    def __init__(self, W, rank, gap, scale, lr, betas, eps, wd):
        super().__init__(W, rank, gap, lr, betas, eps, wd)
        self.scale = scale

    def step(self, G):
        _, N, step = self.moments(G.astype(np.float64))
        back = N @ self.P if self.right else self.P @ N
        self.W -= step * self.scale * back
        self.W -= self.lr * self.wd * self.W


@pytest.mark.parametrize("shape", [(24, 10), (10, 24)])
def test_galore_adamw_matches_numpy_port(shape):
    rng = np.random.default_rng(7)
    W0 = rng.standard_normal(shape).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(W0.copy()))
    opt = GaLoreAdamW([{"params": [p], "rank": 3, "update_proj_gap": 5, "scale": 0.25, "proj_type": "std"}],
                      lr=1e-2, weight_decay=0.1)
    ref = NumpyGaLoreAdamW(W0, 3, 5, 0.25, 1e-2, (0.9, 0.999), 1e-6, 0.1)
    for _ in range(25):
        G = rng.standard_normal(shape).astype(np.float32)
        p.grad = torch.from_numpy(G.copy())
        opt.step()
        ref.step(G)
    assert opt.state[p]["step"] == 25
    np.testing.assert_allclose(p.detach().numpy(), ref.W, atol=2e-5)
    assert np.abs(p.detach().numpy() - W0).max() > 1e-2


def test_plain_params_get_adamw():
    rng = np.random.default_rng(3)
    b0 = rng.standard_normal(7).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(b0.copy()))
    q = torch.nn.Parameter(torch.from_numpy(b0.copy()))
    opt = GaLoreAdamW([p], lr=1e-2, eps=1e-6, weight_decay=0.0)
    ref = torch.optim.AdamW([q], lr=1e-2, eps=1e-6, weight_decay=0.0)
    for _ in range(20):
        g = torch.from_numpy(rng.standard_normal(7).astype(np.float32))
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-5)


def _run(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()


@pytest.mark.parametrize("cls,basis", [(GaLoreAdamW, "svd"), (GaLoreAdamW, "randomized"), (GaLoreAdamW, "dct"),
                                       (GaLoreAdamW, "gaussian"), (GaLoreAdafactor, "svd")])
def test_state_dict_round_trip_is_bit_identical(cls, basis):
    rng = np.random.default_rng(11)
    shapes = [(16, 12), (12,)]
    W0 = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    grads = [[torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes] for _ in range(16)]
    kw = {"lr": 1e-2} if cls is GaLoreAdamW else {}

    def make(ws):
        ps = [torch.nn.Parameter(w.clone()) for w in ws]
        groups = [{"params": [ps[0]], "rank": 4, "update_proj_gap": 3, "scale": 0.5, "basis": basis, "seed": 9},
                  {"params": [ps[1]]}]
        return ps, cls(groups, **kw)

    a, opt_a = make(W0)
    _run(opt_a, a, grads[:8])
    sd = opt_a.state_dict()
    assert isinstance(sd["state"][0]["wproj_state"], bytes)
    b, opt_b = make([p.detach() for p in a])
    opt_b.load_state_dict(sd)
    _run(opt_a, a, grads[8:])
    _run(opt_b, b, grads[8:])
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_gradient_accumulation_equals_summed_gradient():
    torch.manual_seed(0)
    net = torch.nn.Linear(12, 8)
    twin = torch.nn.Linear(12, 8)
    twin.load_state_dict(net.state_dict())
    groups = lambda m: [{"params": [m.weight], "rank": 2, "update_proj_gap": 2}, {"params": [m.bias]}]  # noqa: E731
    opt, opt2 = GaLoreAdamW(groups(net), lr=1e-2), GaLoreAdamW(groups(twin), lr=1e-2)
    for _ in range(5):
        x1, x2 = torch.randn(4, 12), torch.randn(4, 12)
        opt.zero_grad()
        net(x1).square().sum().backward()
        net(x2).square().sum().backward()
        opt.step()
        g1 = torch.autograd.grad(twin(x1).square().sum(), list(twin.parameters()))
        g2 = torch.autograd.grad(twin(x2).square().sum(), list(twin.parameters()))
        for p, a, b in zip(twin.parameters(), g1, g2):
            p.grad = a + b
        opt2.step()
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda mats, rest: [GaLoreAdamW([{"params": mats, "rank": 4, "update_proj_gap": 20, "scale": 1.0},
                                     {"params": rest}], lr=1e-2)],
    lambda mats, rest: [GaLoreAdafactor([{"params": mats, "rank": 4, "update_proj_gap": 20, "scale": 1.0},
                                         {"params": rest}], lr=1e-2, relative_step=False, scale_parameter=False)],
    lambda mats, rest: [APOLLOAdamW([{"params": mats, "rank": 4, "update_proj_gap": 20, "proj": "random"},
                                     {"params": rest}], lr=1e-2)],
    lambda mats, rest: [Muon(mats, lr=0.02), torch.optim.AdamW(rest, lr=1e-2)],
], ids=["galore-adamw", "galore-adafactor", "apollo", "muon"])
def test_tiny_model_trains(make):
    torch.manual_seed(1)
    X = torch.randn(256, 16)
    y = torch.sin(X[:, :1]) + 0.5 * X[:, 1:2]
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 1))
    mats = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() != 2]
    opts = make(mats, rest)
    losses = []
    for _ in range(150):
        for o in opts:
            o.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        for o in opts:
            o.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_requirements():
    p = torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64))
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="float32"):
        GaLoreAdamW([p]).step()
    m = torch.nn.Parameter(torch.zeros(4, 3, device="meta"))
    m.grad = torch.zeros(4, 3, device="meta")
    with pytest.raises(ValueError, match="CPU"):
        GaLoreAdamW([m]).step()
    base = torch.zeros(3, 4)
    nc = torch.nn.Parameter(base.t())
    nc.grad = torch.ones(4, 3)
    with pytest.raises(ValueError, match="contiguous"):
        GaLoreAdamW([nc]).step()
    q = torch.nn.Parameter(torch.zeros(4, 3))
    q.grad = torch.ones(4, 3)
    with pytest.raises(ValueError, match="proj_type"):
        GaLoreAdamW([{"params": [q], "rank": 2, "proj_type": "diagonal"}]).step()
    with pytest.raises(ValueError, match="basis"):
        GaLoreAdafactor([{"params": [q], "rank": 2, "basis": "dct"}]).step()


def newton_schulz5(G, steps=5, a=3.4445, b=-4.7750, c=2.0315, eps=1e-7):
    """The reference zeropower_via_newtonschulz5, in float64."""
    X = G / (np.linalg.norm(G) + eps)
    tall = G.shape[0] > G.shape[1]
    if tall:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if tall else X


class NumpyMuon:
    """SingleDeviceMuon from its formulas: M ← lerp(M, G, 1−β); U = lerp(G, M, β) (Nesterov);
    O = NS5(U) · max(1, m/n)^½; W ← W(1 − lr·wd) − lr·O."""

    def __init__(self, W, lr, wd, beta):
        self.W, self.lr, self.wd, self.beta = W.astype(np.float64), lr, wd, beta
        self.M = np.zeros((W.shape[0], W.size // W.shape[0]))  # a filter as (out, in·kh·kw)

    def step(self, G):
        G = G.astype(np.float64).reshape(self.W.shape[0], -1)
        self.M += (1 - self.beta) * (G - self.M)
        U = G + self.beta * (self.M - G)
        O = newton_schulz5(U) * max(1.0, U.shape[0] / U.shape[1]) ** 0.5
        self.W *= 1 - self.lr * self.wd
        self.W -= self.lr * O.reshape(self.W.shape)


@pytest.mark.parametrize("shape", [(24, 10), (10, 24), (6, 2, 3, 3)])
def test_muon_matches_numpy_port(shape):
    rng = np.random.default_rng(5)
    W0 = rng.standard_normal(shape).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(W0.copy()))
    opt = Muon([p], lr=0.02, weight_decay=0.1, momentum=0.95)
    ref = NumpyMuon(W0, 0.02, 0.1, 0.95)
    for _ in range(20):
        G = rng.standard_normal(shape).astype(np.float32)
        p.grad = torch.from_numpy(G.copy())
        opt.step()
        ref.step(G)
    np.testing.assert_allclose(p.detach().numpy(), ref.W, atol=1e-4)
    assert np.abs(p.detach().numpy() - W0).max() > 0.05


def test_muon_update_is_orthogonal_and_scaled():
    # One step from zero momentum: W0 − W1 = lr·s·O with O ≈ the polar factor (singular values in [0.7, 1.2]).
    rng = np.random.default_rng(2)
    for m, n, scaling, s in [(32, 8, "shape", 2.0), (8, 32, "shape", 1.0), (32, 8, "match_adam", 0.2 * np.sqrt(32))]:
        W0 = rng.standard_normal((m, n)).astype(np.float32)
        p = torch.nn.Parameter(torch.from_numpy(W0.copy()))
        p.grad = torch.from_numpy(rng.standard_normal((m, n)).astype(np.float32))
        Muon([p], lr=0.1, scaling=scaling).step()
        O = (W0 - p.detach().numpy()) / (0.1 * s)
        sv = np.linalg.svd(O, compute_uv=False)
        assert sv.min() > 0.6 and sv.max() < 1.25, (m, n, scaling, sv)


class NumpyApollo(NumpyProjectedAdam):
    """APOLLO with the SVD projector (proj='svd'): channel = row (m ≥ n) or column;
    s = ‖N_channel‖/(‖R_channel‖ + 1e-8) (or one tensor-wise value); U = G ⊙ s; Fira's limiter
    (γ = 1.01); W ← W − step·√scale·U/ℓ; W ← W − lr·wd·W."""

    def __init__(self, W, rank, gap, lr, wd, scale, tensor, betas=(0.9, 0.999), eps=1e-6):
        super().__init__(W, rank, gap, lr, betas, eps, wd)
        self.scale, self.tensor, self.prev = scale, tensor, -1.0

    def step(self, G):
        G = G.astype(np.float64)
        R, N, step = self.moments(G)
        axis = 1 if self.right else 0
        if self.tensor:
            s = np.linalg.norm(N) / (np.linalg.norm(R) + 1e-8)
            Up = s * G
        else:
            s = np.linalg.norm(N, axis=axis) / (np.linalg.norm(R, axis=axis) + 1e-8)
            Up = G * (s[:, None] if self.right else s[None, :])
        norm = np.linalg.norm(Up)
        if self.prev < 0:
            limit, self.prev = 1.0, norm
        else:
            limit = max(norm / (self.prev + 1e-8), 1.01) / 1.01
            self.prev = norm / limit
        self.W -= step * np.sqrt(self.scale) * Up / limit
        self.W -= self.lr * self.wd * self.W


@pytest.mark.parametrize("shape,tensor", [((24, 10), False), ((10, 24), False), ((24, 10), True)])
def test_apollo_matches_numpy_port(shape, tensor):
    rng = np.random.default_rng(9)
    W0 = rng.standard_normal(shape).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(W0.copy()))
    group = {"params": [p], "rank": 3, "proj": "svd", "update_proj_gap": 5, "proj_type": "std",
             "scale": 128.0 if tensor else 2.0, "scale_type": "tensor" if tensor else "channel"}
    opt = APOLLOAdamW([group], lr=1e-2, weight_decay=0.1)
    ref = NumpyApollo(W0, 3, 5, 1e-2, 0.1, group["scale"], tensor)
    for k in range(25):
        # growing gradients make the norm-growth limiter act
        G = (rng.standard_normal(shape) * (1.0 + 0.2 * k)).astype(np.float32)
        p.grad = torch.from_numpy(G.copy())
        opt.step()
        ref.step(G)
    np.testing.assert_allclose(p.detach().numpy(), ref.W, atol=5e-5)
    assert np.abs(p.detach().numpy() - W0).max() > 1e-2


@pytest.mark.parametrize("cls,group", [
    (APOLLOAdamW, {"rank": 4, "update_proj_gap": 3, "proj": "random", "seed": 9}),
    (APOLLOAdamW, {"rank": 1, "update_proj_gap": 3, "proj": "random", "scale_type": "tensor", "scale": 128.0}),
    (APOLLOAdamW, {"rank": 4, "update_proj_gap": 3, "proj": "svd"}),
    (Muon, {}),
])
def test_apollo_muon_state_dict_round_trip_is_bit_identical(cls, group):
    rng = np.random.default_rng(11)
    shapes = [(16, 12), (12, 5)]  # Muon trains matrices only
    W0 = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    grads = [[torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes] for _ in range(16)]

    def make(ws):
        ps = [torch.nn.Parameter(w.clone()) for w in ws]
        return ps, cls([dict(group, params=[ps[0]]), {"params": [ps[1]]}], lr=1e-2)

    a, opt_a = make(W0)
    _run(opt_a, a, grads[:8])
    sd = opt_a.state_dict()
    assert isinstance(sd["state"][0]["wproj_state"], bytes)
    b, opt_b = make([p.detach() for p in a])
    opt_b.load_state_dict(sd)
    _run(opt_a, a, grads[8:])
    _run(opt_b, b, grads[8:])
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], W0[0])


def test_apollo_muon_requirements():
    b = torch.nn.Parameter(torch.zeros(5))
    b.grad = torch.ones(5)
    with pytest.raises(ValueError, match="AdamW"):
        Muon([b]).step()
    q = torch.nn.Parameter(torch.zeros(4, 3))
    q.grad = torch.ones(4, 3)
    with pytest.raises(ValueError, match="proj"):
        APOLLOAdamW([{"params": [q], "rank": 2, "proj": "dct"}]).step()
    with pytest.raises(ValueError, match="full"):
        APOLLOAdamW([{"params": [q], "rank": 2, "proj_type": "full"}]).step()
    with pytest.raises(ValueError, match="scale_type"):
        APOLLOAdamW([{"params": [q], "rank": 2, "scale_type": "row"}]).step()
    with pytest.raises(ValueError, match="momentum"):
        Muon([q], momentum=1.0)
    with pytest.raises(ValueError, match="scaling"):
        Muon([q], scaling="spectral")


def test_import_wproj_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, wproj; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    assert wproj.torch.GaLoreAdamW is GaLoreAdamW
