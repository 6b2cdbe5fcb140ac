"""Streaming LEACE fit in one Python process: wproj.LeaceFitter against a NumPy implementation of
the same estimator (concept-erasure's LeaceFitter: batch Welford updates of Σxx and Σxz, Ledoit-Wolf
style linear shrinkage, whitening, the SVD of W Σxz, the trace constraint).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=build/python \\
        /usr/bin/python3 bench/peers/python_leace.py [--rows 1000000] [--dim 512] [--batch 8192]

Workload: --rows float32 activations of width --dim with a binary concept (integer labels), streamed
in batches of --batch rows (a pool of 16 pre-generated batches is cycled, so generation is not timed).
Prints the wall and CPU time of each fit, their ratio, and the relative difference of the two
erasers' projectors. Benchmark only; never run from the tests.
"""
import argparse
import os
import sys
import time

import numpy as np

import wproj


def numpy_fit(batches, rows, dim):
    """concept-erasure's LeaceFitter(method='leace', affine=True, constrain_cov_trace=True,
    shrinkage=True, svd_tol=0.01) in NumPy, float32 statistics as the input."""
    n = 0
    mean_x = np.zeros(dim, np.float32)
    mean_z = np.zeros(2, np.float32)
    sxx = np.zeros((dim, dim), np.float32)
    sxz = np.zeros((dim, 2), np.float32)
    seen = 0
    k = 0
    while seen < rows:
        x, labels = batches[k % len(batches)]
        k += 1
        z = np.zeros((x.shape[0], 2), np.float32)
        z[np.arange(x.shape[0]), labels] = 1
        n += x.shape[0]
        dx = x - mean_x
        mean_x += dx.sum(0) / n
        dx2 = x - mean_x
        sxx += dx.T @ dx2
        dz = z - mean_z
        mean_z += dz.sum(0) / n
        dz2 = z - mean_z
        sxz += dx.T @ dz2
        seen += x.shape[0]
    # The eraser: Σxx = shrink(S/n), Σxz = Sxz/(n − 1), whitening, SVD of W Σxz (concept-erasure).
    s = sxx / n
    s = (s + s.T) / 2
    p = dim
    tr = np.trace(s)
    fro2 = (s.astype(np.float64) ** 2).sum()
    denom = fro2 - tr * tr / p
    alpha = 0.0 if not denom > np.finfo(np.float32).eps * fro2 else float(np.clip(1 - (tr * tr / n) / denom, 0, 1))
    sigma = (alpha * s + (1 - alpha) * (tr / p) * np.eye(p)).astype(np.float32)
    cross = sxz / (n - 1)
    L, V = np.linalg.eigh(sigma)
    keep = L > L[-1] * dim * np.finfo(np.float32).eps
    Lc = np.maximum(L, 0)
    W = (V * np.where(keep, 1 / np.sqrt(np.where(keep, Lc, 1)), 0)) @ V.T
    W_inv = (V * np.where(keep, np.sqrt(Lc), 0)) @ V.T
    u, sv, _ = np.linalg.svd(W @ cross, full_matrices=False)
    u = u[:, sv > 0.01]
    left, right = W_inv @ u, W @ u
    # The trace constraint (when erasure would raise the trace): the blend of the LEACE and the
    # orthogonal projections that keeps tr(Σxx).
    P = np.eye(dim, dtype=np.float32) - left @ right.T
    old, new_tr = float(np.trace(sigma)), float(np.trace(P @ sigma @ P.T))
    if new_tr > old:
        Q = np.eye(dim, dtype=np.float32) - u @ u.T
        x, y, z, wt = new_tr, 2 * float(np.trace(P @ sigma @ Q.T)), float(np.trace(Q @ sigma @ Q.T)), old
        a = x - y + z
        disc = np.sqrt(max(0.0, 4 * wt * x - 4 * wt * y + 4 * wt * z + y * y - 4 * x * z))
        al = 1.0
        if abs(a) > 0:
            a1, a2 = (-y / 2 + z - disc / 2) / a, (-y / 2 + z + disc / 2) / a
            al = float(np.clip(a1 if a1 > 0 else a2, 0, 1))
        return np.eye(dim, dtype=np.float32) - (al * P + (1 - al) * Q)
    return left @ right.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8192)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((a.dim, a.dim)).astype(np.float32) / np.sqrt(a.dim)
    direction = rng.standard_normal(a.dim).astype(np.float32)
    batches = []
    for _ in range(16):
        labels = rng.integers(0, 2, a.batch)
        x = rng.standard_normal((a.batch, a.dim)).astype(np.float32) @ mix + np.outer(labels - 0.5, direction).astype(np.float32)
        batches.append((np.ascontiguousarray(x, dtype=np.float32), labels.astype(np.int64)))

    def wproj_fit():
        f = wproj.LeaceFitter(a.dim, 2, dtype=np.float32)
        seen, k = 0, 0
        while seen < a.rows:
            x, labels = batches[k % len(batches)]
            k += 1
            f.update(x, labels)
            seen += x.shape[0]
        e = f.eraser
        return np.asarray(e.proj_left) @ np.asarray(e.proj_right)

    results = {}
    for name, fn in (("wproj.LeaceFitter", wproj_fit), ("NumPy LeaceFitter", lambda: numpy_fit(batches, a.rows, a.dim))):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        results[name] = (wall, cpu, out)
        print(f"{name:<20} {wall:8.2f} s wall  {cpu:8.2f} s CPU", flush=True)
    (w_wall, w_cpu, w_p), (n_wall, n_cpu, n_p) = results["wproj.LeaceFitter"], results["NumPy LeaceFitter"]
    print(f"ratio wproj / NumPy: wall {w_wall / n_wall:.3f}, CPU {w_cpu / n_cpu:.3f}")
    print(f"projector difference ||P_wproj - P_numpy|| / ||P_numpy|| = {np.linalg.norm(w_p - n_p) / np.linalg.norm(n_p):.2e}")


if __name__ == "__main__":
    sys.exit(main())
