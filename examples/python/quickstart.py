"""wproj from Python: a low-rank approximation, a protected edit, a concept eraser and a merge.

Run:  PYTHONPATH=build/python /usr/bin/python3 examples/python/quickstart.py
(or plain /usr/bin/python3 after `scripts/install-python`).
"""
import numpy as np

import wproj

rng = np.random.default_rng(0)

# 1. A weight matrix with a decaying spectrum, approximated at rank 32 by randomized SVD.
m, n, k = 1024, 768, 32
U0, _ = np.linalg.qr(rng.standard_normal((m, n)))
V0, _ = np.linalg.qr(rng.standard_normal((n, n)))
sigma = 1.0 / np.arange(1, n + 1)
W = ((U0 * sigma) @ V0.T).astype(np.float32)

U, S, Vt = wproj.randomized_svd(W, k, oversampling=10, power_iterations=2, seed=42)
err = np.linalg.norm(W - (U * S) @ Vt)
best = np.sqrt(np.sum(sigma[k:] ** 2))
print(f"randomized_svd rank {k}: error {err:.5f}, optimal {best:.5f} ({err / best:.4f}x)")

# 2. An edit that leaves the responses to protected inputs unchanged: dW (I - QQ^T) K = 0.
K = rng.standard_normal((n, 16)).astype(np.float32)        # 16 protected input directions
keys = wproj.Subspace.from_columns(K)
dW = rng.standard_normal((m, n)).astype(np.float32) * 1e-2
safe = keys.project_out(dW, side="right")
print(f"protected edit: |dW K| = {np.abs(dW @ K).max():.3f} -> |safe K| = {np.abs(safe @ K).max():.2e}")

# 3. LEACE: remove a binary concept from 64-dim features, streamed in batches.
labels = rng.integers(0, 2, 20000)
X = rng.standard_normal((20000, 64)) + np.outer(labels, rng.standard_normal(64))
fitter = wproj.LeaceFitter(64, 2)
for i in range(0, len(X), 5000):
    fitter.update(X[i:i + 5000], labels[i:i + 5000])
eraser = fitter.eraser
Xe = eraser(X)
gap = lambda A: np.linalg.norm(A[labels == 1].mean(0) - A[labels == 0].mean(0))
print(f"LEACE: class-mean gap {gap(X):.3f} -> {gap(Xe):.2e} (rank of the eraser {eraser.proj_left.shape[1]})")

# 4. Merge three fine-tuned copies of a weight with TIES.
base = rng.standard_normal((256, 256)).astype(np.float32)
models = [base + 0.01 * rng.standard_normal((256, 256)).astype(np.float32) for _ in range(3)]
merged = wproj.merging.ties(base, models, density=0.2)
print(f"TIES: {np.count_nonzero(merged != base)} of {base.size} entries changed")
