#!/usr/bin/python3
"""PyTorch peers of bench_lora (LoRA extraction from a task vector tau = W_ft - W_base).

  torch.linalg.svd truncation   what mergekit-extract-lora does: the full thin SVD of tau, then
                                lora_B = U[:, :r] diag(S[:r]), lora_A = Vh[:r]
  torch.svd_lowrank             q = r + 10 columns (wproj's oversampling), at its default niter=2
                                and at the smallest niter whose error matches wproj's

Both sides read the same float32 tau from the .npy files of workloads.lora_data (in
$WPROJ_LORA_DATA or <temp folder>/wproj-lora-bench), and measure the error as
||tau - B A||_F / ||tau||_F against the optimum from tau's exact spectrum.

Usage:
  /usr/bin/python3 bench/peers/peer_lora.py --prepare          write the workloads (once)
  /usr/bin/python3 bench/peers/peer_lora.py OUT.json [--wproj BENCH_LORA.json] [--quick] [--skip-exact]
      time the peers; with --wproj (bench_lora's --benchmark_out JSON) match svd_lowrank's niter to
      wproj's error and print the ratios against the targets
  /usr/bin/python3 bench/peers/peer_lora.py --model-loop --base DIR --model DIR --rank R [-o OUT_DIR]
      the whole-model loop mergekit runs (load each tensor pair, SVD of tau, truncate), for
      /usr/bin/time -v against `wproj extract-lora`
"""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import workloads as w  # noqa: E402

OVERSAMPLING = 10
ERROR_TARGET = 1.01  # wproj's target: <= 1.01x the optimal error


def optimal_error(sigma, norm_sq, r):
    return float(np.sqrt(max(0.0, norm_sq - float(np.sum(sigma[:r] ** 2))) / norm_sq))


def relative_error(tau, b, a, norm_sq):
    """||tau - B A||_F / ||tau||_F (the residual in float32, its norm in float64)."""
    import torch
    res = tau - b @ a
    return float(torch.linalg.vector_norm(res, dtype=torch.float64)) / np.sqrt(norm_sq)


def load_wproj(path):
    """bench_lora's JSON: {(m, n, r): [rows of BM_LoraExtract with median time and counters]}."""
    with open(path) as f:
        data = json.load(f)
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    groups = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
            continue
        groups.setdefault(b.get("run_name", b["name"]), []).append(b)
    out = {}
    for name, runs in groups.items():
        if not (name.startswith("BM_LoraExtract") or name.startswith("BM_LoraExact")):
            continue
        label = runs[0].get("label", "")
        shape, rank = label.split(",")[0], int(label.split("r=")[1].split(",")[0])
        m, n = (int(x) for x in shape.split("x"))
        times = [r["real_time"] * unit[r.get("time_unit", "ns")] for r in runs]
        cpus = [r["cpu_time"] * unit[r.get("time_unit", "ns")] for r in runs]
        out.setdefault((m, n, rank), []).append(dict(
            name=name, label=label, time_median_s=statistics.median(times), cpu_s=statistics.median(cpus), reps=len(times),
            rel_err=runs[0]["rel_err"], err_ratio=runs[0]["err_ratio"], exact_solver=name.startswith("BM_LoraExact")))
    return out


def wproj_choice(rows):
    """wproj's configuration for a shape and rank: the fastest extractLora run (solver by cost)
    within ERROR_TARGET x the optimal error."""
    ok = [r for r in rows if not r["exact_solver"] and r["err_ratio"] <= ERROR_TARGET]
    return min(ok, key=lambda r: r["time_median_s"]) if ok else None


def lora(repeats, wproj=None, skip_exact=False, max_niter=12):
    import torch
    rows = []
    paths = w.lora_data(w.lora_data_folder())
    for (m, n), (tau_path, sigma_path) in paths.items():
        tau = torch.from_numpy(np.load(tau_path))
        sigma = np.load(sigma_path)
        norm_sq = float(np.sum(tau.numpy().astype(np.float64) ** 2))
        base = dict(workload="lora", shape=f"{m}x{n}")
        if not skip_exact:
            rmax = max(w.LORA_RANKS)

            def exact():
                u, s, vh = torch.linalg.svd(tau, full_matrices=False)
                return u[:, :rmax] * s[:rmax], vh[:rmax]
            best, med, reps, (b, a) = w.best_time(exact, min(repeats, 3))
            cpu = w.LAST_CPU
            for r in w.LORA_RANKS:
                err = relative_error(tau, b[:, :r], a[:r], norm_sq)
                opt = optimal_error(sigma, norm_sq, r)
                rows.append(dict(base, impl="torch.linalg.svd", params=f"r={r},full_matrices=False (mergekit)", rank=r,
                                 time_s=best, time_median_s=med, reps=reps, cpu_s=cpu, rel_error=err, opt_error=opt,
                                 error_ratio=err / opt))
            del b, a
        for r in w.LORA_RANKS:
            opt = optimal_error(sigma, norm_sq, r)
            q = r + OVERSAMPLING

            def lowrank(niter):
                def run():
                    torch.manual_seed(0)
                    u, s, v = torch.svd_lowrank(tau, q=q, niter=niter)
                    return u[:, :r] * s[:r], v[:, :r].T
                return run
            choice = wproj_choice(wproj.get((m, n, r), [])) if wproj else None
            # wproj's error (not below 1.001x optimal: an exact wproj run sits at the optimum itself).
            target = max(choice["rel_err"], 1.001 * opt) if choice else ERROR_TARGET * opt

            def row(niter, timing, err, matched):
                best, med, reps = timing
                return dict(base, impl="torch.svd_lowrank", params=f"r={r},q={q},niter={niter}", rank=r, niter=niter,
                            time_s=best, time_median_s=med, reps=reps, cpu_s=w.LAST_CPU, rel_error=err, opt_error=opt,
                            error_ratio=err / opt, target_error=target, matched=matched)
            # The default niter=2, timed.
            best, med, reps, (b, a) = w.best_time(lowrank(2), repeats)
            err2 = relative_error(tau, b, a, norm_sq)
            rows.append(row(2, (best, med, reps), err2, False))
            # The smallest niter whose error reaches wproj's (probed once, then timed).
            order = range(0, 3) if err2 <= target else range(3, max_niter + 1)
            for niter in order:
                if niter == 2:
                    rows[-1]["matched"] = True
                    break
                _, _, _, (b, a) = w.best_time(lowrank(niter), 1)
                err = relative_error(tau, b, a, norm_sq)
                if err <= target:
                    best, med, reps, _ = w.best_time(lowrank(niter), repeats)
                    rows.append(row(niter, (best, med, reps), err, True))
                    break
            del b, a
        del tau
    return rows


def summarize(rows, wproj):
    """Prints, per shape and rank, wproj's time and error against the two torch baselines."""
    print("\nLoRA extraction (median times; errors relative to the optimum):")
    print(f"  {'shape':<11} {'r':>4}  {'wproj':>24}  {'linalg.svd':>17}  {'speedup':>7}  "
          f"{'svd_lowrank niter=2':>24}  {'svd_lowrank matched':>28}  {'time ratio':>10}")
    for key in sorted({(r['shape'], r['rank']) for r in rows}, key=lambda k: (-int(k[0].split('x')[0]) * int(k[0].split('x')[1]), k[1])):
        shape, rank = key
        m, n = (int(x) for x in shape.split("x"))
        choice = wproj_choice(wproj.get((m, n, rank), [])) if wproj else None
        ex = [r for r in rows if (r["shape"], r["rank"]) == key and r["impl"] == "torch.linalg.svd"]
        lr = [r for r in rows if (r["shape"], r["rank"]) == key and r["impl"] == "torch.svd_lowrank"]
        d2 = [r for r in lr if r["niter"] == 2]
        mt = [r for r in lr if r.get("matched")]
        cw = f"{choice['time_median_s']:7.3f} s {choice['err_ratio']:.4f}x" if choice else "-"
        ce = f"{ex[0]['time_median_s']:7.2f} s {ex[0]['error_ratio']:.3f}x" if ex else "-"
        sp = f"{ex[0]['time_median_s'] / choice['time_median_s']:6.1f}x" if ex and choice else "-"
        c2 = f"{d2[0]['time_median_s']:7.3f} s {d2[0]['error_ratio']:.4f}x" if d2 else "-"
        cm = (f"niter={mt[0]['niter']:<2} {mt[0]['time_median_s']:7.3f} s {mt[0]['error_ratio']:.4f}x" if mt else "-")
        tr = f"{choice['time_median_s'] / mt[0]['time_median_s']:.2f}" if mt and choice else "-"
        print(f"  {shape:<11} {rank:>4}  {cw:>24}  {ce:>17}  {sp:>7}  {c2:>24}  {cm:>28}  {tr:>10}")
        if choice:
            cpu = [f"wproj run: {choice['label']}; process CPU s: wproj {choice['cpu_s']:.3f}"]
            if ex and ex[0].get("cpu_s"):
                cpu.append(f"linalg.svd {ex[0]['cpu_s']:.2f} (speedup {ex[0]['cpu_s'] / choice['cpu_s']:.1f}x)")
            if mt and mt[0].get("cpu_s"):
                cpu.append(f"matched svd_lowrank {mt[0]['cpu_s']:.3f} (ratio {choice['cpu_s'] / mt[0]['cpu_s']:.2f})")
            print(f"  {'':<11} {'':>4}  " + ", ".join(cpu))
    print("  targets: 4096x11008 r=64: speedup >= 10x over linalg.svd at <= 1.01x its optimal error; "
          "time ratio (wproj / matched svd_lowrank) <= 0.5.\n  Process CPU times (all threads) show how many cores each side kept busy, and vary less with other load than wall times.")


def tensor_index(folder):
    """{tensor name: (shard path, header entry)} of a safetensors checkpoint folder (its
    model.safetensors.index.json, else every *.safetensors file in it)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    else:
        shards = sorted(x for x in os.listdir(folder) if x.endswith(".safetensors"))
    out = {}
    for shard in shards:
        path = os.path.join(folder, shard)
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        for name, info in header.items():
            if name != "__metadata__":
                out[name] = (path, dict(info, data_start=8 + size))
    return out


def load_tensor(path, info):
    """One tensor of a safetensors file as a torch tensor (F32, F16 or BF16), read from disk (no
    mapping of the whole shard: the way safetensors' lazy loader reads one tensor)."""
    import torch
    begin, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(info["data_start"] + begin)
        raw = bytearray(f.read(end - begin))
    dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[info["dtype"]]
    return torch.frombuffer(raw, dtype=dtype).reshape(info["shape"])


def model_loop(base, model, rank, out_dir=None):
    """mergekit's extraction loop over a sharded safetensors checkpoint pair: each changed 2-D
    weight pair (embeddings aside, as `wproj extract-lora` by default) is loaded, tau = ft - base,
    torch.linalg.svd(tau), truncated to rank r; the factors are kept and written at the end
    (OUT/adapter_model.safetensors, float32) like mergekit's adapter."""
    import torch
    idx_b, idx_f = tensor_index(base), tensor_index(model)
    out, t0, total_sq, err_sq = {}, time.perf_counter(), 0.0, 0.0
    for name, (path_f, info_f) in idx_f.items():
        if len(info_f["shape"]) != 2 or not name.endswith(".weight") or name not in idx_b or "embed_tokens" in name:
            continue
        ft = load_tensor(path_f, info_f).float()
        b = load_tensor(*idx_b[name]).float()
        if torch.equal(ft, b):
            continue
        tau = ft - b
        del ft, b
        u, s, vh = torch.linalg.svd(tau, full_matrices=False)
        module = name[: -len(".weight")]
        out[module + ".lora_B.weight"] = (u[:, :rank] * s[:rank]).contiguous()
        out[module + ".lora_A.weight"] = vh[:rank].contiguous()
        total_sq += float(torch.sum(s.double() ** 2))
        err_sq += float(torch.sum(s[rank:].double() ** 2))
        del tau, u, s, vh
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        header, offset = {}, 0
        for k, v in out.items():
            header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + 4 * v.numel()]}
            offset += 4 * v.numel()
        raw = json.dumps(header).encode()
        raw += b" " * ((8 - len(raw) % 8) % 8)
        with open(os.path.join(out_dir, "adapter_model.safetensors"), "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            for v in out.values():
                f.write(v.numpy().tobytes())
    print(f"torch loop: {len(out) // 2} tensors, rank {rank}, {time.perf_counter() - t0:.1f} s, "
          f"relative error {np.sqrt(err_sq / total_sq):.4f}", flush=True)


def main():
    if "--prepare" in sys.argv:
        t0 = time.perf_counter()
        paths = w.lora_data(w.lora_data_folder())
        print(f"LoRA workloads in {w.lora_data_folder()} ({time.perf_counter() - t0:.1f} s): "
              + ", ".join(f"{m}x{n}" for m, n in paths))
        return
    if "--model-loop" in sys.argv:
        arg = lambda k: sys.argv[sys.argv.index(k) + 1]  # noqa: E731
        import torch
        torch.set_num_threads(w.threads())
        model_loop(arg("--base"), arg("--model"), int(arg("--rank")), arg("-o") if "-o" in sys.argv else None)
        return
    import torch
    torch.set_num_threads(w.threads())
    out = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "peer_lora.json"
    wproj = load_wproj(sys.argv[sys.argv.index("--wproj") + 1]) if "--wproj" in sys.argv else None
    repeats = 1 if "--quick" in sys.argv else 3
    print(f"peer_lora: torch {torch.__version__} ({torch.get_num_threads()} threads), data in {w.lora_data_folder()}",
          flush=True)
    rows = lora(repeats, wproj, skip_exact="--skip-exact" in sys.argv)
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    for r in rows:
        print(f"  {r['shape']:<11} {r['impl']:<18} {r['params']:<40} {r['time_median_s']:9.3f} s  "
              f"error_ratio={r['error_ratio']:.4f}", flush=True)
    summarize(rows, wproj or {})


if __name__ == "__main__":
    main()
