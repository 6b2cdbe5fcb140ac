"""wproj.randomized_svd (the Python package) against torch.svd_lowrank and scikit-learn's
randomized_svd in one Python process, at equal accuracy.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=build/python \\
        /usr/bin/python3 bench/peers/python_svd.py [--repeats 3] [--target 1.01]

Workload: bench/peers/workloads.py's 4096 x 4096 float32 matrix, sigma_i = 1/i (i <= 1024) plus
1e-4 noise, rank k = RSVD_RANK, oversampling RSVD_OVERSAMPLING. For each implementation the
smallest number of power iterations whose relative Frobenius error is <= --target x the optimal
rank-k error is timed (best of --repeats); wproj is also timed with block Krylov iteration
(block k + p, and blocks 48, 64 and 96).
Prints one row per configuration tried and the time ratios at equal accuracy.
Benchmark only (timings depend on the machine); never run from the tests.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as w  # noqa: E402

import wproj  # noqa: E402


def sweep(name, make, mat, repeats, target, max_q=12):
    """Times make(q)() for q = 0, 1, … until the error is <= target x optimal; returns the rows."""
    opt = mat.optimal_error(w.RSVD_RANK)
    rows = []
    for q in range(0, max_q + 1):
        fn = make(q)
        best, med, reps, (u, s, vt) = w.best_time(fn, repeats)
        err = mat.relative_error(u, s, vt)
        row = dict(impl=name, q=q, time_s=best, cpu_s=w.LAST_CPU, ratio=err / opt)
        rows.append(row)
        print(f"  {name:<34} q={q:<2d} {best * 1e3:9.1f} ms  cpu {w.LAST_CPU * 1e3:9.1f} ms  error {err / opt:.4f}x optimal",
              flush=True)
        if err <= target * opt:
            row["equal"] = True
            break
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", type=float, default=1.01)
    args = ap.parse_args()

    k, p = w.RSVD_RANK, w.RSVD_OVERSAMPLING
    mat = w.PowerLawMatrix()
    a = np.ascontiguousarray(mat.a, dtype=np.float32)
    print(f"A: {a.shape[0]} x {a.shape[1]} float32, sigma_i = 1/i, rank {k}, oversampling {p}, "
          f"target {args.target}x optimal, {os.cpu_count()} CPUs")

    results = {}
    results["wproj.randomized_svd (power)"] = sweep(
        "wproj.randomized_svd (power)",
        lambda q: (lambda: wproj.randomized_svd(a, k, oversampling=p, power_iterations=q, seed=0)),
        mat, args.repeats, args.target)
    results["wproj.randomized_svd (krylov)"] = sweep(
        "wproj.randomized_svd (krylov)",
        lambda q: (lambda: wproj.randomized_svd(a, k, oversampling=p, power_iterations=q, seed=0, method="krylov")),
        mat, args.repeats, args.target)
    for b in (48, 64, 96):
        name = f"wproj.randomized_svd (krylov, b={b})"
        results[name] = sweep(
            name,
            lambda q, b=b: (lambda: wproj.randomized_svd(a, k, oversampling=p, power_iterations=q, seed=0,
                                                         method="krylov", krylov_block_size=b)),
            mat, args.repeats, args.target)
    try:
        import torch
        ta = torch.from_numpy(a)

        def torch_run(q):
            def run():
                torch.manual_seed(0)
                u, s, v = torch.svd_lowrank(ta, q=k + p, niter=q)
                return u[:, :k].numpy(), s[:k].numpy(), v[:, :k].T.numpy()
            return run
        results["torch.svd_lowrank"] = sweep("torch.svd_lowrank", torch_run, mat, args.repeats, args.target)
    except ImportError:
        print("  torch not installed: skipped")
    try:
        from sklearn.utils.extmath import randomized_svd
        results["sklearn randomized_svd"] = sweep(
            "sklearn randomized_svd",
            lambda q: (lambda: randomized_svd(a, k, n_oversamples=p, n_iter=q, random_state=0)),
            mat, args.repeats, args.target)
    except ImportError:
        print("  scikit-learn not installed: skipped")

    print("\nAt equal accuracy (<= %.2fx optimal):" % args.target)
    print("| implementation | q | time (ms) | CPU (ms) | error / optimal |")
    print("|---|---|---|---|---|")
    best = {}
    for name, rows in results.items():
        eq = [r for r in rows if r.get("equal")]
        if not eq:
            print(f"| {name} | — | not reached | | |")
            continue
        r = eq[0]
        best[name] = r["time_s"]
        print(f"| {name} | {r['q']} | {r['time_s'] * 1e3:.1f} | {r['cpu_s'] * 1e3:.1f} | {r['ratio']:.4f} |")
    wp = min([t for n, t in best.items() if n.startswith("wproj")], default=None)
    if wp is not None:
        for peer in ("torch.svd_lowrank", "sklearn randomized_svd"):
            if peer in best:
                print(f"wproj (best variant) / {peer}: {wp / best[peer]:.2f}x")


if __name__ == "__main__":
    main()
