"""The benchmark workloads of bench/, built the same way as bench/common.hpp builds them.

The matrices are not bit-identical to the C++ ones (NumPy's own generator draws the random
numbers), but they are drawn from the same distribution with the same construction, so the
accuracy figures (error / optimal, overlap with the exact subspace) are comparable.

Construction (cheap, no SVD in setup): A = U diag(sigma) V^T + (I - U U^T) E (I - V V^T), with
U (m x R) and V (n x R) orthonormal (CholeskyQR2 of Gaussian blocks) and E Gaussian noise whose entries
have standard deviation noise / sqrt(max(m, n)) (singular values of order `noise`). The noise is
projected off span(U) and span(V), so the singular values of A are exactly sigma together with
those of the projected noise: the optimal rank-k error and the exact top-r subspaces are known.
"""
import os
import time

import numpy as np

# Workload parameters (keep in step with bench/common.hpp).
RSVD_M, RSVD_N, RSVD_SIGNAL_RANK, RSVD_RANK, RSVD_OVERSAMPLING = 4096, 4096, 1024, 128, 10
GRAD_M, GRAD_N, GRAD_SIGNAL_RANK, GRAD_RANK = 4096, 11008, 1024, 512
GRAD_DRIFT = 0.3  # basis drift between two refreshes: U1 = orth(U0 + drift * Z / sqrt(rows))
NOISE = 1e-4
DCT_N, DCT_COLS, DCT_RANK = 4096, 11008, 512


def power_law(r):
    """sigma_i = 1/i, i = 1..r."""
    return 1.0 / np.arange(1, r + 1, dtype=np.float64)


def cholesky_qr2(x):
    """Orthonormal basis of the columns of x by two Cholesky-QR passes (as wproj's CholeskyQR2)."""
    import scipy.linalg
    for _ in range(2):
        r = scipy.linalg.cholesky(x.T @ x, lower=False)
        x = scipy.linalg.solve_triangular(r, x.T, trans="T", lower=False).T
    return np.ascontiguousarray(x, dtype=np.float32)


def orthonormal(rng, m, r):
    """An m x r matrix with orthonormal columns (Gaussian block, CholeskyQR2)."""
    return cholesky_qr2(rng.standard_normal((m, r), dtype=np.float32))


def with_spectrum(rng, u, v, sigma, noise):
    """U diag(sigma) V^T + (I - U U^T) E (I - V V^T); returns (A, ||projected noise||_F)."""
    m, n = u.shape[0], v.shape[0]
    e = rng.standard_normal((m, n), dtype=np.float32)
    e *= np.float32(noise / np.sqrt(max(m, n)))
    e -= u @ (u.T @ e)
    e -= (e @ v) @ v.T
    noise_norm = float(np.linalg.norm(e.astype(np.float64)))
    a = e
    a += (u * sigma.astype(np.float32)) @ v.T
    return a, noise_norm


class PowerLawMatrix:
    """The 4096 x 4096 rSVD test matrix: sigma_i = 1/i (i <= 1024) plus 1e-4 noise."""

    def __init__(self, seed=1):
        rng = np.random.default_rng(seed)
        self.sigma = power_law(RSVD_SIGNAL_RANK)
        u = orthonormal(rng, RSVD_M, RSVD_SIGNAL_RANK)
        v = orthonormal(rng, RSVD_N, RSVD_SIGNAL_RANK)
        self.a, self.noise_norm = with_spectrum(rng, u, v, self.sigma, NOISE)

    def optimal_error(self, k):
        """Relative Frobenius error of the best rank-k approximation."""
        tail = np.sum(self.sigma[k:] ** 2) + self.noise_norm ** 2
        total = np.sum(self.sigma ** 2) + self.noise_norm ** 2
        return float(np.sqrt(tail / total))

    def relative_error(self, u, s, vt):
        """||A - U diag(s) V^T||_F / ||A||_F (V^T given as k x n)."""
        r = self.a - (u * s) @ vt
        return float(np.linalg.norm(r.astype(np.float64)) / np.linalg.norm(self.a.astype(np.float64)))


class DriftingGradient:
    """Two consecutive 4096 x 11008 'gradients' whose singular bases drift slowly.

    G_t = U_t diag(sigma) V_t^T + noise, sigma_i = 1/i (i <= 1024); U_1 = orth(U_0 + drift Z / sqrt(m)),
    V_1 = orth(V_0 + drift Z' / sqrt(n)) with Gaussian Z, Z' (each column of U_0 moves by about
    `drift`). The exact top-r left subspace of G_t is span(U_t[:, :r]); only G_1 is formed: the
    refresh starts from the previous exact basis U_0[:, :r].
    """

    def __init__(self, seed=2):
        rng = np.random.default_rng(seed)
        self.sigma = power_law(GRAD_SIGNAL_RANK)
        u0 = orthonormal(rng, GRAD_M, GRAD_SIGNAL_RANK)
        v0 = orthonormal(rng, GRAD_N, GRAD_SIGNAL_RANK)
        self.prev_basis = np.ascontiguousarray(u0[:, :GRAD_RANK])
        u1 = drift(rng, u0, GRAD_DRIFT)
        v1 = drift(rng, v0, GRAD_DRIFT)
        del v0
        self.exact_basis = np.ascontiguousarray(u1[:, :GRAD_RANK])
        self.g, _ = with_spectrum(rng, u1, v1, self.sigma, NOISE)


def drift(rng, q, amount):
    z = rng.standard_normal(q.shape, dtype=np.float32)
    z *= np.float32(amount / np.sqrt(q.shape[0]))
    z += q
    return cholesky_qr2(z)


def overlap(q1, q2):
    """||Q1^T Q2||_F^2 / min(k1, k2): sign-free subspace overlap in [0, 1]."""
    c = q1.astype(np.float64).T @ q2.astype(np.float64)
    return float(np.sum(c * c) / max(1, min(q1.shape[1], q2.shape[1])))


def dct_input(seed=3):
    """The DCT-selection gradient, stored as DCT_COLS rows of length DCT_N (each row is one column
    of the 4096 x 11008 gradient: column-major in C++, C-order transposed here)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((DCT_COLS, DCT_N), dtype=np.float32)


LAST_CPU = 0.0  # process CPU time (all threads) of the fastest run of the last best_time() call


def best_time(fn, repeats, min_seconds=0.0):
    """Best wall time of `repeats` runs of fn() (at least one run; more while under min_seconds).
    Also records in LAST_CPU the process CPU time (all threads) of the run with the best wall time."""
    global LAST_CPU
    times, cpus, out = [], [], None
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start) < min_seconds and len(times) < 50:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    LAST_CPU = cpus[int(np.argmin(times))]
    return min(times), float(np.median(times)), len(times), out


def threads():
    return int(os.environ.get("WPROJ_BENCH_THREADS", os.cpu_count() or 1))


# LoRA extraction (bench_lora.cpp, peer_lora.py): tau = W_ft - W_base shaped like a fine-tuning delta.
LORA_SHAPES = ((4096, 11008), (4096, 4096), (1024, 2752))
LORA_RANKS = (16, 64, 256)
LORA_SIGNAL_RANK, LORA_DECAY, LORA_NOISE_SHARE, LORA_RMS = 256, 0.7, 0.3, 1e-3


def lora_tau(m, n, seed):
    """A synthetic task vector: sum_i sigma_i u_i v_i^T with sigma_i = i^-0.7 (i <= 256 or min(m, n)/2, random
    orthonormal u_i, v_i) plus dense Gaussian noise holding ~30% of the Frobenius norm, scaled to an
    entry RMS of 1e-3 (the size of a fine-tuning delta). float32, m x n (out x in, like nn.Linear)."""
    rng = np.random.default_rng(seed)
    r = min(LORA_SIGNAL_RANK, min(m, n) // 2)
    sigma = np.arange(1, r + 1, dtype=np.float64) ** -LORA_DECAY
    u = orthonormal(rng, m, r)
    v = orthonormal(rng, n, r)
    tau = rng.standard_normal((m, n), dtype=np.float32)
    # ||noise||^2 = share^2 / (1 - share^2) * ||low rank||^2: noise ~ share of ||tau|| (nearly orthogonal parts).
    share = LORA_NOISE_SHARE
    tau *= np.float32(np.sqrt(share ** 2 / (1 - share ** 2) * np.sum(sigma ** 2) / (m * n)))
    tau += (u * sigma.astype(np.float32)) @ v.T
    tau *= np.float32(LORA_RMS * np.sqrt(m * n) / np.linalg.norm(tau.astype(np.float64)))
    return tau


def lora_spectrum(tau):
    """All singular values of tau (float64, descending) from the eigenvalues of the float64 Gram
    matrix of its shorter side, and ||tau||_F^2: the exact optimum of every rank."""
    t = tau.astype(np.float64)
    g = t @ t.T if t.shape[0] <= t.shape[1] else t.T @ t
    del t
    ev = np.linalg.eigvalsh(g)[::-1]
    return np.sqrt(np.clip(ev, 0.0, None)), float(np.trace(g))


def lora_data(folder):
    """Writes (once) lora_tau_MxN.npy (float32, C order) and lora_sigma_MxN.npy (float64, every
    singular value) for each shape of LORA_SHAPES into `folder`; bench_lora and peer_lora both read
    them, so the two sides factor the same bits. Returns {(m, n): (tau path, sigma path)}."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for i, (m, n) in enumerate(LORA_SHAPES):
        tau_path = os.path.join(folder, f"lora_tau_{m}x{n}.npy")
        sigma_path = os.path.join(folder, f"lora_sigma_{m}x{n}.npy")
        if not (os.path.exists(tau_path) and os.path.exists(sigma_path)):
            tau = lora_tau(m, n, seed=40 + i)
            sigma, _ = lora_spectrum(tau)
            np.save(tau_path + ".tmp.npy", tau)
            np.save(sigma_path + ".tmp.npy", sigma)
            os.replace(tau_path + ".tmp.npy", tau_path)
            os.replace(sigma_path + ".tmp.npy", sigma_path)
        paths[(m, n)] = (tau_path, sigma_path)
    return paths


def lora_data_folder():
    """Where the LoRA workloads live: $WPROJ_LORA_DATA, else a fixed folder under the temp folder."""
    import tempfile
    return os.environ.get("WPROJ_LORA_DATA", os.path.join(tempfile.gettempdir(), "wproj-lora-bench"))
