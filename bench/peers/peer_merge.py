#!/usr/bin/python3
"""PyTorch peer of `wproj merge`: mergekit's per-tensor algorithm in one process on the CPU.

For every tensor name of the base checkpoint: load the tensor from the base and from every model
(mergekit's lazy loader reads one tensor of every input at a time), merge it in float32 with
torch, and collect the result in the output shard until the shard reaches the shard size (mergekit's
TensorWriter keeps the current shard in memory; its default shard size is 5e9 bytes), then write the
shard. The methods follow mergekit's documented math (docs/merge_methods.md, sparsify.py):

  linear          sum_i w_i theta_i / sum_i w_i
  ties            tau_i = theta_i - theta_0, top-k by magnitude (k = int(density * n)), weighted by w_i,
                  sign elected from the sum (zero sum counts as +), disjoint mean divided by the sum
                  of the agreeing weights (|divisor| < 1e-8 -> 1), theta_0 + lambda * mean
  dare_ties       as ties with Bernoulli(density) masks rescaled by 1/density instead of top-k
  task_arithmetic theta_0 + lambda * sum_i w_i tau_i

Usage (the same checkpoints `wproj merge` reads; folders with model.safetensors.index.json or
*.safetensors files):
  /usr/bin/python3 bench/peers/peer_merge.py --method ties --base DIR --models DIR [DIR ...]
      [--density 0.2] [--weight 1.0] [--lambda 1.0] [--seed 0] [-o OUT.safetensors] [--threads N]
Prints one line with the wall time and the input bytes read per second; run it under
`/usr/bin/time -v` for the peak resident memory.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2)}


def tensor_index(folder):
    """{tensor name: (shard path, header entry with data_start)} of a safetensors checkpoint."""
    if os.path.isfile(folder):
        shards = [folder]
    else:
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                names = sorted(set(json.load(f)["weight_map"].values()))
        else:
            names = sorted(x for x in os.listdir(folder) if x.endswith(".safetensors"))
        shards = [os.path.join(folder, x) for x in names]
    out = {}
    for path in shards:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        for name, info in header.items():
            if name != "__metadata__":
                out[name] = (path, dict(info, data_start=8 + size))
    return out


def load(path, info, torch):
    """One tensor as float32 torch tensor from a memory map of its shard (safe_open's way)."""
    np_dtype, width = DTYPES[info["dtype"]]
    begin, end = info["data_offsets"]
    count = (end - begin) // width
    arr = np.memmap(path, dtype=np_dtype, mode="r", offset=info["data_start"] + begin, shape=(count,))
    if info["dtype"] == "BF16":
        t = torch.from_numpy((arr.astype(np.uint32) << 16).view(np.float32))
    else:
        t = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    return t.reshape(info["shape"])


def magnitude(tau, density, torch):
    if density >= 1:
        return tau
    k = int(density * tau.numel())
    mask = torch.zeros_like(tau)
    top = torch.argsort(tau.abs().view(-1), descending=True)[:k]
    mask.view(-1)[top] = 1
    return tau * mask


def bernoulli(tau, density, torch):
    if density >= 1:
        return tau
    mask = torch.bernoulli(torch.full_like(tau, density))
    return tau * mask / density


def merge_tensor(method, base, models, args, torch):
    w = args.weight
    if method == "linear":
        tensors = torch.stack(models, dim=0)
        weights = torch.tensor([w] * len(models), dtype=tensors.dtype).view(-1, *([1] * base.dim()))
        return (tensors * weights).sum(dim=0) / weights.sum(dim=0)
    taus = [m - base for m in models]
    if method == "task_arithmetic":
        return base + args.lam * sum(w * t for t in taus)
    sparse = [(magnitude if method == "ties" else bernoulli)(t, args.density, torch) for t in taus]
    deltas = torch.stack(sparse, dim=0)
    weights = torch.tensor([w] * len(models), dtype=deltas.dtype).view(-1, *([1] * base.dim()))
    weighted = deltas * weights
    sign = (weighted.sum(dim=0) >= 0).to(deltas.dtype) * 2 - 1
    mask = weighted.sign() == sign
    mixed = (weighted * mask).sum(dim=0)
    divisor = (weights * mask).sum(dim=0)
    divisor[divisor.abs() < 1e-8] = 1
    return base + args.lam * mixed / divisor


def write_shard(path, tensors):
    header, offset = {}, 0
    for k, v in tensors.items():
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + 4 * v.numel()]}
        offset += 4 * v.numel()
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for v in tensors.values():
            f.write(v.contiguous().numpy().tobytes())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, choices=["linear", "ties", "dare_ties", "task_arithmetic"])
    ap.add_argument("--base", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--weight", type=float, default=1.0)
    ap.add_argument("--lambda", dest="lam", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--shard-size", type=float, default=5e9)
    ap.add_argument("-o", "--out")
    args = ap.parse_args()
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base_idx = tensor_index(args.base)
    model_idx = [tensor_index(m) for m in args.models]
    t0 = time.perf_counter()
    read = 0
    shard, shard_bytes, shards = {}, 0, 0
    for name, (path, info) in base_idx.items():
        base = load(path, info, torch)
        models = [load(*idx[name], torch) for idx in model_idx]
        read += (base.numel() + sum(m.numel() for m in models)) * DTYPES[info["dtype"]][1]
        out = merge_tensor(args.method, base, models, args, torch) if base.is_floating_point() else base
        del models
        shard[name] = out
        shard_bytes += out.numel() * 4
        if shard_bytes >= args.shard_size and args.out:
            shards += 1
            write_shard(f"{args.out}.{shards}", shard)
            shard, shard_bytes = {}, 0
    if args.out and shard:
        write_shard(args.out if shards == 0 else f"{args.out}.{shards + 1}", shard)
    wall = time.perf_counter() - t0
    print(f"torch peer {args.method}: {len(base_idx)} tensors, {len(args.models)} models, {wall:.2f} s, "
          f"{read / wall / 1e9:.2f} GB/s read", flush=True)


if __name__ == "__main__":
    sys.exit(main())
