"""NumPy/SciPy peers: scipy.fft.dct(norm='ortho') alone and with top-r selection, the exact
truncated SVD through LAPACK (gesdd, then truncate) and NumPy's GEMM rate."""
import numpy as np
import scipy.fft
import scipy.linalg

import workloads as w


def dct(repeats):
    x = w.dct_input()
    r = w.DCT_RANK
    rows = []
    for workers in (None, -1):
        label = "" if workers is None else ",workers=all"

        def transform():
            return scipy.fft.dct(x, type=2, norm="ortho", axis=-1, workers=workers)

        def select():
            s = scipy.fft.dct(x, type=2, norm="ortho", axis=-1, workers=workers)
            score = np.abs(s).sum(axis=0)  # l1 norm of each DCT coefficient over the 11008 columns
            return s, np.argpartition(score, -r)[-r:]

        best, med, reps, _ = w.best_time(transform, repeats, min_seconds=1.0)
        rows.append(dict(workload="dct", impl="scipy.fft.dct", params=f"n={w.DCT_N},cols={w.DCT_COLS}{label}",
                         time_s=best, cpu_s=w.LAST_CPU, time_median_s=med, reps=reps))
        best, med, reps, _ = w.best_time(select, repeats, min_seconds=1.0)
        rows.append(dict(workload="dct", impl="scipy.fft.dct + top-r", params=f"r={r}{label}",
                         time_s=best, cpu_s=w.LAST_CPU, time_median_s=med, reps=reps))
    return rows


def exact_truncated(mat):
    k = w.RSVD_RANK
    best, med, reps, (u, s, vt) = w.best_time(
        lambda: scipy.linalg.svd(mat.a, full_matrices=False, lapack_driver="gesdd", check_finite=False), 1)
    err = mat.relative_error(u[:, :k], s[:k], vt[:k])
    return [dict(workload="truncated_svd", impl="scipy.linalg.svd (gesdd)", params=f"full thin SVD, keep {k}",
                 time_s=best, cpu_s=w.LAST_CPU, time_median_s=med, reps=reps, rel_error=err, error_ratio=err / mat.optimal_error(k))]


def gemm(repeats):
    rows = []
    rng = np.random.default_rng(7)
    for (m, n, k) in ((4096, 138, 4096), (4096, 512, 11008)):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        best, med, reps, _ = w.best_time(lambda: a @ b, repeats, min_seconds=0.5)
        rows.append(dict(workload="gemm", impl="numpy matmul", params=f"{m}x{k}x{n}", time_s=best, cpu_s=w.LAST_CPU,
                         time_median_s=med, reps=reps, gflops=2.0 * m * n * k / best / 1e9))
    return rows
