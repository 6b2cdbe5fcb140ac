#!/usr/bin/python3
"""Runs every peer (NumPy/SciPy, scikit-learn, PyTorch) on the workloads of bench/ and writes
one JSON list of result rows. Usage: /usr/bin/python3 bench/peers/run_peers.py OUT.json [--quick]"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads as w  # noqa: E402


def main():
    out = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "peers.json"
    quick = "--quick" in sys.argv
    skip_exact = "--skip-exact" in sys.argv
    repeats = 2 if quick else 5
    rows = []

    def emit(new):
        for r in new:
            print("  {:<10} {:<30} {:<45} {:9.4f} s{}".format(
                r["workload"], r["impl"], r["params"], r["time_s"],
                "".join(f"  {key}={r[key]:.4f}" for key in ("error_ratio", "overlap", "gflops") if key in r)),
                flush=True)
        rows.extend(new)
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)

    import numpy as np
    import peer_scipy
    import peer_sklearn
    import peer_torch
    import scipy
    import sklearn
    import torch
    peer_torch.setup()
    print(f"peers: numpy {np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)", flush=True)

    emit(peer_scipy.gemm(repeats))
    emit(peer_scipy.dct(repeats))

    t0 = time.perf_counter()
    mat = w.PowerLawMatrix()
    print(f"  (power-law 4096x4096 matrix built in {time.perf_counter() - t0:.1f} s; optimal rank-{w.RSVD_RANK} "
          f"relative error {mat.optimal_error(w.RSVD_RANK):.5f})", flush=True)
    emit(peer_torch.rsvd(mat, repeats))
    emit(peer_sklearn.rsvd(mat, repeats))
    if not skip_exact:
        emit(peer_scipy.exact_truncated(mat))
    del mat

    t0 = time.perf_counter()
    grad = w.DriftingGradient()
    print(f"  (drifting 4096x11008 gradient built in {time.perf_counter() - t0:.1f} s; previous basis overlap "
          f"{w.overlap(grad.prev_basis, grad.exact_basis):.4f})", flush=True)
    emit(peer_torch.refresh(grad, 2 if quick else 3, exact=not skip_exact))
    del grad

    # LoRA extraction: the .npy task vectors bench_lora read; svd_lowrank matched to wproj's error
    # (bench_lora.json beside OUT). Its rows go to peer_lora.json, its ratios are printed here.
    import peer_lora
    folder = os.path.dirname(os.path.abspath(out))
    wproj_json = os.path.join(folder, "bench_lora.json")
    wproj = peer_lora.load_wproj(wproj_json) if os.path.exists(wproj_json) else {}
    lora_rows = peer_lora.lora(1 if quick else 3, wproj, skip_exact=skip_exact)
    with open(os.path.join(folder, "peer_lora.json"), "w") as f:
        json.dump(lora_rows, f, indent=1)
    peer_lora.summarize(lora_rows, wproj)


if __name__ == "__main__":
    main()
