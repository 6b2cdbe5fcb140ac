#!/usr/bin/python3
"""The reference OPCM projection step in NumPy, with full SVDs (full_matrices=True, as the
reference implementation does), on the tensors written by `bench_merging --write-npy=DIR`.

For the merged delta S = U diag(s) V^T and the incoming task vector tau:
    r   = argmax(cumsum(s) / sum(s) > alpha)          (0-based, as upstream)
    P   = U^T tau V                                   (m x n, full U: m x m, full V: n x n)
    P[:r, :r] = 0; diag(P) = 0
    tau' = U P V^T

Checks that wproj's projected.npy equals this (relative Frobenius difference <= 1e-5 against the
float64 reference) and reports the time per layer of the reference (fp32, as the reference runs
in fp32) next to wproj's (read from the Google Benchmark JSON, if present).

Usage: /usr/bin/python3 bench/peers/opcm_reference.py DIR [--repeats N] [--bench-json FILE]

Run both single-threaded (OPENBLAS_NUM_THREADS=1) for a like-for-like comparison.
"""
import json
import os
import sys
import time

import numpy as np

ALPHA = 0.5


def reference_project(s_mat, tau, alpha=ALPHA):
    u, s, vh = np.linalg.svd(s_mat, full_matrices=True)
    r = int(np.argmax(np.cumsum(s) / np.sum(s) > alpha))
    p = u.T @ tau @ vh.T
    p[:r, :r] = 0
    np.fill_diagonal(p, 0)
    return u @ p @ vh, r


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    folder = sys.argv[1]
    repeats = 3
    if "--repeats" in sys.argv:
        repeats = int(sys.argv[sys.argv.index("--repeats") + 1])
    s_mat = np.load(os.path.join(folder, "S.npy"))
    tau = np.load(os.path.join(folder, "tau.npy"))
    ours = np.load(os.path.join(folder, "projected.npy"))
    our_r = int(open(os.path.join(folder, "split_rank.txt")).read().split()[0])
    print(f"layer {s_mat.shape[0]}x{s_mat.shape[1]} {s_mat.dtype}, alpha {ALPHA}")

    ref64, r64 = reference_project(s_mat.astype(np.float64), tau.astype(np.float64))
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        ref32, r32 = reference_project(s_mat, tau)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    ref_time, ref_cpu = min(times), min(cpu)

    def rel(a, b):
        return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))

    d_ours = rel(ours, ref64)
    d_ref32 = rel(ref32, ref64)
    print(f"split rank r: wproj {our_r}, reference fp64 {r64}, reference fp32 {r32}")
    print(f"relative difference to the fp64 reference: wproj fp32 {d_ours:.2e}, reference fp32 {d_ref32:.2e}")
    ok = d_ours <= 1e-5 and our_r == r64
    print("same merged tensor (<= 1e-5):", "yes" if ok else "NO")
    print(f"reference (NumPy full SVD, fp32): {ref_time * 1e3:.0f} ms wall, {ref_cpu * 1e3:.0f} ms CPU per layer"
          f" (best of {repeats})")

    bench_json = os.path.join(folder, "bench.json")
    if "--bench-json" in sys.argv:
        bench_json = sys.argv[sys.argv.index("--bench-json") + 1]
    if os.path.exists(bench_json):
        with open(bench_json) as f:
            data = json.load(f)
        for b in data.get("benchmarks", []):
            if b["name"].startswith("BM_OpcmStep/") or b["name"] == "BM_OpcmStep" or b["name"].startswith("BM_OpcmStep/min_time"):
                unit = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b.get("time_unit", "ns")]
                ours_t, ours_c = b["real_time"] * unit, b["cpu_time"] * unit
                print(f"wproj opcmProject (thin SVD, fp32): {ours_t * 1e3:.0f} ms wall, {ours_c * 1e3:.0f} ms CPU"
                      " (main thread) per layer")
                print(f"speed-up: {ref_time / ours_t:.2f}x wall-clock, {ref_cpu / ours_c:.2f}x CPU time"
                      " (CPU time is the fair figure single-threaded on a loaded machine)")
                break
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
