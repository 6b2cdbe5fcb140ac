"""PyTorch peers: torch.svd_lowrank (niter tuned to reach <= 1.01x the optimal error),
torch.linalg.svd (the full thin SVD GaLore refreshes with) and a warm-started refresh written
with torch ops (two GEMMs + QR)."""
import torch

import workloads as w


def setup():
    torch.set_num_threads(w.threads())
    torch.manual_seed(0)


def rsvd(mat, repeats, target=1.01, max_niter=12):
    """torch.svd_lowrank(A, q=k+p, niter) at the smallest niter with error <= target x optimal."""
    a = torch.from_numpy(mat.a)
    k, q = w.RSVD_RANK, w.RSVD_RANK + w.RSVD_OVERSAMPLING
    opt = mat.optimal_error(k)
    rows, chosen = [], None
    for niter in range(0, max_niter + 1):
        def run():
            torch.manual_seed(niter)
            return torch.svd_lowrank(a, q=q, niter=niter)
        best, med, reps, (u, s, v) = w.best_time(run, repeats if chosen is None else 1)
        err = mat.relative_error(u[:, :k].numpy(), s[:k].numpy(), v[:, :k].numpy().T)
        row = dict(workload="rsvd", impl="torch.svd_lowrank", params=f"q={q},niter={niter}", time_s=best, cpu_s=w.LAST_CPU,
                   time_median_s=med, reps=reps, rel_error=err, error_ratio=err / opt)
        rows.append(row)
        if err <= target * opt:
            row["equal_accuracy"] = True
            chosen = row
            break
    return rows


def refresh(grad, repeats, exact=True):
    g = torch.from_numpy(grad.g)
    r = w.GRAD_RANK
    rows = []
    # GaLore's refresh: full thin SVD, keep U[:, :r] (m < n: left projection).
    if exact:
        best, med, reps, (u, s, vh) = w.best_time(lambda: torch.linalg.svd(g, full_matrices=False), 1)
        rows.append(dict(workload="refresh", impl="torch.linalg.svd", params="full_matrices=False (GaLore)",
                         time_s=best, cpu_s=w.LAST_CPU, time_median_s=med, reps=reps,
                         overlap=w.overlap(u[:, :r].numpy(), grad.exact_basis)))
        del u, s, vh
    # Warm start written in torch: one subspace iteration from the previous basis.
    p0 = torch.from_numpy(grad.prev_basis)

    def warm():
        return torch.linalg.qr(g @ (g.T @ p0))[0]
    best, med, reps, p = w.best_time(warm, repeats)
    rows.append(dict(workload="refresh", impl="torch warm (G(G^T P0), QR)", params="1 subspace iteration",
                     time_s=best, cpu_s=w.LAST_CPU, time_median_s=med, reps=reps, overlap=w.overlap(p.numpy(), grad.exact_basis)))
    # Cold randomized: torch.svd_lowrank with its default niter=2 and q = r + 10.
    def cold():
        torch.manual_seed(0)
        return torch.svd_lowrank(g, q=r + 10, niter=2)
    best, med, reps, (u, s, v) = w.best_time(cold, repeats)
    rows.append(dict(workload="refresh", impl="torch.svd_lowrank", params=f"q={r + 10},niter=2",
                     time_s=best, cpu_s=w.LAST_CPU, time_median_s=med, reps=reps, overlap=w.overlap(u[:, :r].numpy(), grad.exact_basis)))
    # The two GEMMs a warm refresh cannot avoid.
    z = torch.empty(g.shape[1], r)
    best, med, reps, _ = w.best_time(lambda: g.T @ p0, repeats)
    cpu = w.LAST_CPU
    best2, med2, reps2, _ = w.best_time(lambda: g @ z, repeats)
    rows.append(dict(workload="refresh", impl="torch two GEMMs", params="G^T P (11008x4096x512) + G Z (4096x11008x512)",
                     time_s=best + best2, cpu_s=cpu + w.LAST_CPU, time_median_s=med + med2, reps=min(reps, reps2)))
    return rows
