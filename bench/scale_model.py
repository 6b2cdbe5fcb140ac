"""The cost model of docs/scale.md: predicted times of wproj's MPI workloads at P ranks.

Usage: python3 bench/scale_model.py [--flops 1e12] [--link 12.5e9] [--latency 2e-6]
                                     [--read 5e9] [--fs 200e9] [--merge-ns 31] [--cores 64]
                                     [--ranks 8 64 512]
Every constant is per rank (one rank per node): --flops the fp32 rate, --link the network
bandwidth in bytes/s, --read the checkpoint/activation read rate, --fs the file system's aggregate
read rate, --merge-ns the TIES merge cost per element per model on one core (31 ns measured by
bench/mpi_merge: 16.6 s for 8 models of 67 M float32 elements, reading from the page cache
included), --cores the cores per rank that share the merge work.
Prints, per workload and P: compute, I/O, communication and replicated (non-scaling) time, the
total (compute and I/O overlap: their maximum counts) and the parallel efficiency against P = 1.
"""
import argparse
import math


def allreduce(bytes_, p, link, lat):
    """Ring allreduce: 2 log2 P latencies + 2 (P - 1)/P of the message over the link."""
    if p == 1:
        return 0.0
    return 2 * math.log2(p) * lat + 2 * (p - 1) / p * bytes_ / link


def broadcast(bytes_, p, link, lat):
    """Pipelined broadcast: log2 P latencies + the message once over the link."""
    if p == 1:
        return 0.0
    return math.log2(p) * lat + bytes_ / link


def llama70b():
    """(rows, cols) of Llama-2/3-70B's 2-D weights: 80 layers of q, k, v, o, gate, up, down, plus
    the embedding and the LM head (vocabulary 128256, width 8192, MLP 28672, 8 KV heads)."""
    h, f, kv, v = 8192, 28672, 1024, 128256
    layer = [(h, h), (kv, h), (kv, h), (h, h), (f, h), (f, h), (h, f)]
    return layer * 80, [(v, h), (v, h)]


def merge(p, a):
    """TIES over 50 fine-tuned 70B bf16 checkpoints plus the base: each rank reads its tensors of
    all 51 models; the largest tensor (the embedding) cannot be split across ranks."""
    layers, other = llama70b()
    sizes = [r * c for r, c in layers + other]
    models = 51
    total = sum(sizes)
    # Largest-first assignment of the tensors by bytes.
    load = [0] * p
    for s in sorted(sizes, reverse=True):
        i = load.index(min(load))
        load[i] += s
    worst = max(load)
    # The file system serves at most R_fs in all, and one rank reads at most R: the slowest rank
    # needs worst/R, the job at least total/R_fs (ranks that finish early leave bandwidth to others).
    io = max(worst * 2 * models / a.read, total * 2 * models / a.fs)
    compute = worst * (models - 1) * a.merge_ns * 1e-9 / a.cores
    comm = 5 * 2 * math.log2(max(p, 2)) * a.latency + sum(1 for _ in sizes) * 100 / a.link
    return dict(compute=compute, io=io, comm=comm, fixed=0.0, note="%.0f GB read per rank (max)" % (worst * 2 * models / 1e9))


def svd(p, a):
    """Rank-1024 randomized SVD of a 10^6 x 10^5 fp32 matrix, rows distributed, q = 7 (automatic)."""
    m, n, k, over = 10**6, 10**5, 1024, 10
    l = k + over
    q = 7 if 10 * k < min(m, n) else 4
    products = 2 * q + 2
    compute = products * 2.0 * (m / p) * n * l / a.flops + (q + 2) * 4.0 * (m / p) * l * l / a.flops
    fixed = (2 * q + 4) * n * l * l / a.flops + 10.0 * l**3 / a.flops + 2.0 * n * l * k / a.flops
    comm = (q + 1) * allreduce(4.0 * n * l, p, a.link, a.latency) + (q + 3) * allreduce(8.0 * l * l, p, a.link, a.latency)
    io = 4.0 * m * n / p / a.read  # reading the rows once
    return dict(compute=compute, io=io, comm=comm, fixed=fixed, note="%.0f GB of A per rank" % (4.0 * m * n / p / 1e9))


def leace(p, a):
    """LEACE statistics of 10^10 activations of width 8192 (bf16 on disk), a 2-class concept."""
    n, d, c = 1e10, 8192, 2
    compute = n / p * (d * d + 2 * d * c) / a.flops
    io = max(n * d * 2 / p / a.read, n * d * 2 / a.fs)
    comm = allreduce(8.0 * (1 + d + c), p, a.link, a.latency) + allreduce(8.0 * (d * d + d * c), p, a.link, a.latency)
    fixed = 10.0 * d**3 / a.flops
    return dict(compute=compute, io=io, comm=comm, fixed=fixed, note="")


def refresh(p, a):
    """One GaLore refresh of every 2-D layer weight of a 70B model, rank 1024, warm-started
    randomized refresh (two products with G: 4 m n l flops); bases broadcast to every rank."""
    layers, _ = llama70b()
    r = 1024
    l = r + 10
    costs = [4.0 * m * n * l / a.flops for m, n in layers]
    load = [0.0] * p
    for cst in sorted(costs, reverse=True):
        i = load.index(min(load))
        load[i] += cst
    compute = max(load)
    volume = sum(4.0 * min(m, n) * min(r, min(m, n)) + 4.0 * r * r for m, n in layers)
    comm = broadcast(volume, p, a.link, a.latency) + len(layers) * math.log2(max(p, 2)) * a.latency
    return dict(compute=compute, io=0.0, comm=comm, fixed=0.0, note="%.1f GB broadcast" % (volume / 1e9))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flops", type=float, default=1e12)
    ap.add_argument("--link", type=float, default=12.5e9)
    ap.add_argument("--latency", type=float, default=2e-6)
    ap.add_argument("--read", type=float, default=5e9)
    ap.add_argument("--fs", type=float, default=200e9)
    ap.add_argument("--merge-ns", type=float, default=31.0)
    ap.add_argument("--cores", type=int, default=64)
    ap.add_argument("--ranks", type=int, nargs="+", default=[8, 64, 512])
    a = ap.parse_args()
    work = [("merge: TIES, 50 x 70B bf16", merge), ("randomized SVD: 10^6 x 10^5, k 1024", svd),
            ("LEACE: 10^10 x 8192 activations", leace), ("GaLore refresh: 70B, r 1024", refresh)]
    print("| workload | P | compute | I/O | communication | replicated | total | efficiency | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, f in work:
        one = f(1, a)
        t1 = max(one["compute"], one["io"]) + one["comm"] + one["fixed"]
        for p in a.ranks:
            r = f(p, a)
            t = max(r["compute"], r["io"]) + r["comm"] + r["fixed"]
            print("| %s | %d | %s | %s | %s | %s | %s | %.0f %% | %s |" % (
                name, p, fmt(r["compute"]), fmt(r["io"]), fmt(r["comm"]), fmt(r["fixed"]), fmt(t),
                100 * t1 / (p * t), r["note"]))


def fmt(s):
    if s == 0:
        return "—"
    if s >= 3600:
        return "%.1f h" % (s / 3600)
    if s >= 60:
        return "%.1f min" % (s / 60)
    if s >= 1:
        return "%.1f s" % s
    return "%.0f ms" % (s * 1e3)


if __name__ == "__main__":
    main()
