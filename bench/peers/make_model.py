#!/usr/bin/python3
"""Writes a synthetic decoder checkpoint pair (base and fine-tuned) for whole-model LoRA extraction
benchmarks: Llama-shaped tensor names and shapes, sharded safetensors with
model.safetensors.index.json, in fp32 or bf16.

The base weights are Gaussian (std 0.02). The fine-tuned model differs from the base in every
linear weight (attention q/k/v/o, MLP gate/up/down, lm_head) by a task vector built like
workloads.lora_tau: sum_i i^-0.7 u_i v_i^T over 256 directions plus dense noise holding ~30% of its
norm, scaled to an entry RMS of 1e-3. Embeddings and norms are left unchanged (bit-identical).
Each tensor is generated, written to both checkpoints and dropped, so memory stays at a few
tensors whatever the model size. Deterministic: same arguments, same bytes.

Usage: /usr/bin/python3 bench/peers/make_model.py OUT_DIR [--layers 4] [--hidden 2048]
           [--intermediate 5632] [--vocab 32000] [--dtype f32|bf16] [--shard-mb 500]
Writes OUT_DIR/base and OUT_DIR/finetuned (default sizes, fp32: 1.35 GB each).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import workloads as w  # noqa: E402


def tensor_plan(layers, hidden, intermediate, vocab):
    """(name, shape, kind) in checkpoint order; kind: 'linear' (changed by fine-tuning) or 'fixed'."""
    plan = [("model.embed_tokens.weight", (vocab, hidden), "fixed")]
    for i in range(layers):
        p = f"model.layers.{i}."
        plan += [(p + "input_layernorm.weight", (hidden,), "fixed")]
        plan += [(p + f"self_attn.{x}_proj.weight", (hidden, hidden), "linear") for x in "qkvo"]
        plan += [(p + "post_attention_layernorm.weight", (hidden,), "fixed")]
        plan += [(p + "mlp.gate_proj.weight", (intermediate, hidden), "linear"),
                 (p + "mlp.up_proj.weight", (intermediate, hidden), "linear"),
                 (p + "mlp.down_proj.weight", (hidden, intermediate), "linear")]
    plan += [("model.norm.weight", (hidden,), "fixed"), ("lm_head.weight", (vocab, hidden), "linear")]
    return plan


def to_bytes(x, dtype):
    """float32 array as little-endian F32 or BF16 bytes (bf16: round to nearest even)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.tobytes()
    bits = x.view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return rounded.astype(np.uint16).tobytes()


def shard_plan(plan, item, shard_bytes):
    shards, current, size = [], [], 0
    for entry in plan:
        nbytes = int(np.prod(entry[1])) * item
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(entry)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def header_bytes(entries, dtype, item):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in entries:
        nbytes = int(np.prod(shape)) * item
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return len(raw).to_bytes(8, "little") + raw


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    ap.add_argument("--shard-mb", type=float, default=500)
    args = ap.parse_args()

    dtype = {"f32": "F32", "bf16": "BF16"}[args.dtype]
    item = 4 if dtype == "F32" else 2
    plan = tensor_plan(args.layers, args.hidden, args.intermediate, args.vocab)
    shards = shard_plan(plan, item, int(args.shard_mb * 1e6))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": args.hidden,
              "intermediate_size": args.intermediate, "num_hidden_layers": args.layers,
              "num_attention_heads": args.hidden // 128, "num_key_value_heads": args.hidden // 128,
              "vocab_size": args.vocab, "rms_norm_eps": 1e-5,
              "torch_dtype": "float32" if dtype == "F32" else "bfloat16"}
    dirs = {k: os.path.join(args.out, k) for k in ("base", "finetuned")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
    t0 = time.perf_counter()
    total = 0
    weight_map = {}
    for s, entries in enumerate(shards):
        fname = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        head = header_bytes(entries, dtype, item)
        files = {k: open(os.path.join(d, fname + ".tmp"), "wb") for k, d in dirs.items()}
        for f in files.values():
            f.write(head)
        for name, shape, kind in entries:
            index = [p[0] for p in plan].index(name)
            rng = np.random.default_rng(1000 + index)
            if len(shape) == 1:
                base = np.ones(shape, dtype=np.float32)
            else:
                base = rng.standard_normal(shape, dtype=np.float32)
                base *= np.float32(0.02)
            raw = to_bytes(base, dtype)
            files["base"].write(raw)
            if kind == "linear":
                base += w.lora_tau(shape[0], shape[1], seed=5000 + index)
                raw = to_bytes(base, dtype)
            files["finetuned"].write(raw)
            weight_map[name] = fname
            total += len(raw)
            del base, raw
        for k, f in files.items():
            f.close()
            os.replace(os.path.join(dirs[k], fname + ".tmp"), os.path.join(dirs[k], fname))
        print(f"  {fname}: {len(entries)} tensors ({time.perf_counter() - t0:.0f} s)", flush=True)
    for d in dirs.values():
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    print(f"wrote {dirs['base']} and {dirs['finetuned']}: {len(plan)} tensors, {total / 2**30:.2f} GiB each, "
          f"{len(shards)} shards, {args.dtype} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
