#!/usr/bin/python3
"""Writes a small decoder-shaped model family (LLaMA tensor names) for the mergekit
compatibility test, with NumPy only:

    gen_family.py OUTDIR

OUTDIR/f32/{base,m1,m2,m3,m4} hold float32 checkpoints, OUTDIR/bf16/... the same weights
rounded to bfloat16 (round to nearest even). Each model folder has config.json
(LlamaForCausalLM), tokenizer.json, tokenizer_config.json, special_tokens_map.json and its
weights; m2 is sharded in two files with model.safetensors.index.json, the others are one
model.safetensors.

The fine-tunes are base + structured task vectors:
  m1: delta d1 (low rank plus noise, about 30 % of the base's scale, so that slerp between
      raw weights really bends: cos(base, m1) < 0.9995)
  m2: 0.6 d1 + noise (mostly agrees in sign with m1); its layer-2 v_proj equals the base
      (a zero task vector)
  m3: -0.8 d1 + noise (conflicts in sign with m1 and m2)
  m4: 2 d1 (task vector colinear with m1's); its input_layernorm weights are 1.25 x the
      base's (colinear with the base as raw vectors)
"""
import json
import os
import struct
import sys

import numpy as np

HIDDEN = 16
INTER = 40
VOCAB = 32
LAYERS = 4


def tensor_shapes():
    shapes = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        shapes += [
            (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
            (p + "self_attn.k_proj.weight", (HIDDEN, HIDDEN)),
            (p + "self_attn.v_proj.weight", (HIDDEN, HIDDEN)),
            (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, INTER)),
            (p + "input_layernorm.weight", (HIDDEN,)),
            (p + "post_attention_layernorm.weight", (HIDDEN,)),
        ]
    shapes += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return shapes


def to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even (NaN kept quiet)."""
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    rounded[nan] = ((u[nan] >> 16) | 0x40)
    return rounded.astype("<u2")


def write_safetensors(path, tensors, dtype):
    """tensors: list of (name, float32 array); dtype 'F32' or 'BF16'. Header JSON + raw LE data."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, arr in tensors:
        if dtype == "F32":
            raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        else:
            raw = to_bf16_bits(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return offset


def write_tokenizer(folder):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, VOCAB):
        vocab["tok%d" % i] = i
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
            {"id": 1, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
            {"id": 2, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok, f, indent=1)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 64}, f, indent=1)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=1)


def write_config(folder, torch_dtype):
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": VOCAB,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "hidden_act": "silu",
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": torch_dtype,
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def make_family(seed=20240611):
    rng = np.random.default_rng(seed)
    base, d1 = {}, {}
    for name, shape in tensor_shapes():
        if len(shape) == 1:
            base[name] = 1.0 + 0.1 * rng.standard_normal(shape)
            d1[name] = 0.1 * rng.standard_normal(shape)
        else:
            base[name] = 0.1 * rng.standard_normal(shape)
            r = 2
            low = rng.standard_normal((shape[0], r)) @ rng.standard_normal((r, shape[1])) / np.sqrt(r)
            d1[name] = 0.03 * low + 0.01 * rng.standard_normal(shape)
    models = {"base": base}
    m1, m2, m3, m4 = {}, {}, {}, {}
    for name, shape in tensor_shapes():
        scale = np.abs(d1[name]).mean()
        m1[name] = base[name] + d1[name]
        m2[name] = base[name] + 0.6 * d1[name] + 0.5 * scale * rng.standard_normal(shape)
        m3[name] = base[name] - 0.8 * d1[name] + 0.5 * scale * rng.standard_normal(shape)
        m4[name] = base[name] + 2.0 * d1[name]
    m2["model.layers.2.self_attn.v_proj.weight"] = base["model.layers.2.self_attn.v_proj.weight"].copy()
    for i in range(LAYERS):
        n = "model.layers.%d.input_layernorm.weight" % i
        m4[n] = 1.25 * base[n]
    models.update({"m1": m1, "m2": m2, "m3": m3, "m4": m4})
    out = {k: {n: v.astype(np.float32) for n, v in m.items()} for k, m in models.items()}
    for k in ("m1", "m2", "m3", "m4"):
        for n in out[k]:
            out[k][n] = untie(out[k][n], out["base"][n])
    return out


def untie(x, base):
    """Nudges entries of x by one float32 ulp until no two nonzero |x - base| are equal, in
    float64 or in float32 arithmetic: magnitude top-k (ties, breadcrumbs) would otherwise
    depend on the order among equal magnitudes, which mergekit leaves unspecified."""
    x = x.copy()
    for _ in range(100):
        dup = np.zeros(x.size, dtype=bool)
        for d in (np.abs(x.astype(np.float64) - base), np.abs(x - base).astype(np.float64)):
            flat = d.ravel()
            order = np.argsort(flat, kind="stable")
            same = (np.diff(flat[order]) == 0) & (flat[order][1:] > 0)
            dup[order[1:][same]] = True
        if not dup.any():
            return x
        flat = x.ravel()
        flat[dup] = np.nextafter(flat[dup], np.float32(np.inf))
        x = flat.reshape(x.shape)
    raise RuntimeError("could not separate equal task-vector magnitudes")


def write_model(folder, weights, dtype, shards):
    os.makedirs(folder, exist_ok=True)
    write_config(folder, "float32" if dtype == "F32" else "bfloat16")
    write_tokenizer(folder)
    items = [(n, weights[n]) for n, _ in tensor_shapes()]
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), items, dtype)
        return
    per = (len(items) + shards - 1) // shards
    weight_map, total = {}, 0
    for s in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = items[s * per:(s + 1) * per]
        total += write_safetensors(os.path.join(folder, fname), part, dtype)
        for n, _ in part:
            weight_map[n] = fname
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_family.py OUTDIR")
    out = sys.argv[1]
    fam = make_family()
    for sub, dtype in (("f32", "F32"), ("bf16", "BF16")):
        for name, weights in fam.items():
            write_model(os.path.join(out, sub, name), weights, dtype, 2 if name == "m2" else 1)


if __name__ == "__main__":
    main()
