#!/usr/bin/python3
"""PyTorch peer of bench_muon's BM_MuonStep: one Muon step on a 4096x11008 float32 weight, with
the reference Newton-Schulz iteration (KellerJordan/Muon zeropower_via_newtonschulz5: general
products A = X X^T, B = bA + cA@A, X = aX + B@X, five times) written here in torch ops, in float32
(the reference runs in bfloat16 on a GPU), with the same momentum, Nesterov and shape scale.

Usage:
  /usr/bin/python3 bench/peers/peer_muon.py [--rows 4096] [--cols 11008] [--repeats 2]
Threads: $WPROJ_BENCH_THREADS (default: all cores), as the other peers.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import workloads as w  # noqa: E402


def newton_schulz(g, steps=5, eps=1e-7):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / (x.norm() + eps)
    for _ in range(steps):
        A = x @ x.T
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    if tall:
        x = x.T
    return x


def muon_step(p, grad, momentum, lr=0.02, beta=0.95, wd=0.0):
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp(momentum, beta)
    update = newton_schulz(update)
    update *= max(1, grad.size(0) / grad.size(1)) ** 0.5
    p.mul_(1 - lr * wd)
    p.add_(update, alpha=-lr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=11008)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(w.threads())
    gen = torch.Generator().manual_seed(0)
    m, n = args.rows, args.cols
    grad = torch.randn(m, n, generator=gen) * 1e-2
    p = torch.randn(m, n, generator=gen) * 2e-2
    momentum = torch.zeros(m, n)
    times = []
    with torch.no_grad():
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            muon_step(p, grad, momentum)
            times.append(time.perf_counter() - t0)
    pq = min(m, n), max(m, n)
    flops = 5 * (4.0 * pq[0] ** 2 * pq[1] + 2.0 * pq[0] ** 3)
    best = min(times)
    print(f"torch Muon step {m}x{n} fp32, threads={torch.get_num_threads()}: "
          f"best {best * 1e3:.0f} ms, all {[round(t * 1e3) for t in times]} ms, {flops / best / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
