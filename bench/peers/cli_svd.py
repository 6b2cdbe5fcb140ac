"""`wproj svd` as a whole process against torch.svd_lowrank in-process, on the same .npy file.

    /usr/bin/python3 bench/peers/cli_svd.py --wproj build/tools/wproj/wproj [--repeats 5] [--rank 128]

Builds the benchmark's 4096 x 4096 power-law matrix (sigma_i = 1/i, i <= 1024, plus 1e-4 noise;
bench/peers/workloads.py), saves it as a float32 C-order .npy in a temporary folder (page cache
warm), then reports, best of --repeats runs each:

- `wproj svd A.npy --rank k --out DIR` (default method, then any --extra configurations): wall
  time of the whole process (start, read, SVD, write U/S/V, exit), its peak RSS (from
  /usr/bin/time -v when present, else getrusage of the child), the read / SVD / write split the
  tool prints with --timings, and the relative Frobenius error of the U, S, V it wrote, over the
  optimal rank-k error;
- torch.svd_lowrank(A, q=k+10, niter) in-process on the same array (loaded once, not timed) at
  the smallest niter reaching <= --target x the optimal error (as bench/peers/peer_torch.py);
- the ratio of the two times at equal accuracy.

Benchmark only (timings depend on the machine); never run from the tests. Run it as
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/peers/cli_svd.py ...`
on an otherwise idle machine.
"""
import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as w  # noqa: E402


def run_wproj(exe, npy, k, out, extra):
    """One whole-process run; returns (wall s, peak RSS bytes, timings dict, stdout)."""
    cmd = [exe, "svd", npy, "--rank", str(k), "--out", out, "--timings"] + extra
    timev = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if timev:
        cmd = [timev, "-v"] + cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"wproj failed ({p.returncode}): {p.stderr.strip()}")
    rss = None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    if m:
        rss = int(m.group(1)) * 1024
    else:
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rss = max(after, before) * 1024
    timings = {}
    m = re.search(r"timings: read ([\d.e+-]+) s, svd ([\d.e+-]+) s, write ([\d.e+-]+) s", p.stdout)
    if m:
        timings = dict(read=float(m.group(1)), svd=float(m.group(2)), write=float(m.group(3)))
    return wall, rss, timings, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wproj", required=True, help="path of the wproj executable")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rank", type=int, default=w.RSVD_RANK)
    ap.add_argument("--target", type=float, default=1.01, help="accuracy target: error <= target x optimal")
    ap.add_argument("--extra", action="append", default=[],
                    help="another wproj configuration to time, e.g. --extra='--method power' (repeatable)")
    args = ap.parse_args()
    k = args.rank

    mat = w.PowerLawMatrix()
    opt = mat.optimal_error(k)
    tmp = tempfile.mkdtemp(prefix="wproj-cli-svd-")
    try:
        npy = os.path.join(tmp, "A.npy")
        np.save(npy, np.ascontiguousarray(mat.a, dtype=np.float32))
        in_bytes = os.path.getsize(npy)
        m, n = mat.a.shape
        factor_bytes = 4 * k * (m + n + 1)
        print(f"matrix {m}x{n} float32 ({in_bytes / 2**20:.1f} MiB), rank {k}, optimal relative error {opt:.6g}, "
              f"threads {w.threads()}")

        rows = []
        for extra in [""] + args.extra:
            ex = extra.split()
            best = None
            for _ in range(max(1, args.repeats)):
                out = os.path.join(tmp, "out")
                r = run_wproj(args.wproj, npy, k, out, ex)
                if best is None or r[0] < best[0]:
                    best = r
                    u = np.load(os.path.join(out, "U.npy"))
                    s = np.load(os.path.join(out, "S.npy"))
                    v = np.load(os.path.join(out, "V.npy"))
                shutil.rmtree(out)
            wall, rss, tm, stdout = best
            err = mat.relative_error(u, s, v.T)
            label = re.search(r"svd \(([^)]*)\)", stdout)
            rows.append(dict(impl="wproj svd (process)", config=(label.group(1) if label else extra) or "default",
                             time_s=wall, rss=rss, timings=tm, ratio=err / opt))

        a = None
        import torch
        torch.set_num_threads(w.threads())
        a = torch.from_numpy(mat.a)
        q = k + w.RSVD_OVERSAMPLING
        chosen = None
        for niter in range(0, 13):
            def run():
                torch.manual_seed(niter)
                return torch.svd_lowrank(a, q=q, niter=niter)
            t, _, _, (tu, ts, tv) = w.best_time(run, args.repeats)
            err = mat.relative_error(tu[:, :k].numpy(), ts[:k].numpy(), tv[:, :k].numpy().T)
            if err <= args.target * opt:
                chosen = dict(impl="torch.svd_lowrank (in-process)", config=f"q={q}, niter={niter}", time_s=t, rss=None,
                              timings={}, ratio=err / opt)
                break
        if chosen:
            rows.append(chosen)

        print(f"{'implementation':32s} {'configuration':26s} {'time s':>8s} {'err/opt':>8s} {'peak RSS':>10s}  read / svd / write s")
        for r in rows:
            rss = f"{r['rss'] / 2**20:.0f} MiB" if r["rss"] else "-"
            tm = r["timings"]
            split = f"{tm['read']:.4f} / {tm['svd']:.4f} / {tm['write']:.4f}" if tm else ""
            print(f"{r['impl']:32s} {r['config']:26s} {r['time_s']:8.3f} {r['ratio']:8.4f} {rss:>10s}  {split}")
        print(f"RSS budget 1.3 x input + factors = {(1.3 * in_bytes + factor_bytes) / 2**20:.0f} MiB")
        if chosen:
            for r in rows[:-1]:
                if r["ratio"] <= args.target:
                    print(f"{r['config']}: wproj whole process / torch in-process at <= {args.target}x optimal = "
                          f"{r['time_s'] / chosen['time_s']:.2f}")
                    if r["timings"]:
                        print(f"{r['config']}: input overhead (read / svd) = {r['timings']['read'] / r['timings']['svd']:.1%}")
                else:
                    print(f"{r['config']}: error {r['ratio']:.4f}x optimal misses the target {args.target}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
