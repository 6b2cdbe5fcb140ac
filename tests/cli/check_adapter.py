"""Checker for tests/cli/lora.sh: writes small decoder-like checkpoints and verifies the PEFT LoRA
adapters of `wproj extract-lora` and the checkpoints of `wproj apply-lora` against NumPy's SVD.
Uses only json, struct, sys and NumPy (its own safetensors reader and writer).
Exits 0 when the check holds, 1 with a message otherwise."""
import json
import struct
import sys

import numpy as np

PREFIX = "base_model.model."
DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
          "I64": np.dtype("<i8")}
SIZES = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8}


def fail(msg):
    print("check_adapter: FAILED: " + msg, file=sys.stderr)
    sys.exit(1)


def read_st(path):
    """{name: (dtype, float64 or int array)} of a safetensors file, and its raw bytes per tensor."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out, raw = {}, {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        buf = data[8 + n + b:8 + n + e]
        a = np.frombuffer(buf, dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = (t["dtype"], a.astype(np.float64) if t["dtype"] != "I64" else a)
        raw[name] = buf
    return out, raw


def to_bf16(x):
    """Round float32 values to bfloat16 bits (nearest, ties to even)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_st(path, tensors):
    """tensors: {name: (dtype, array)} with dtype F32, BF16 or I64."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        dt, a = tensors[name]
        b = to_bf16(a).tobytes() if dt == "BF16" else np.ascontiguousarray(a, dtype=DTYPES[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def gen(d):
    """base/ft pairs in F32 and BF16: a low-rank + noise fine-tuning delta on the projections."""
    rng = np.random.default_rng(7)
    hid, kv, inter, vocab = 48, 24, 96, 64
    shapes = {"model.embed_tokens.weight": (vocab, hid), "lm_head.weight": (vocab, hid), "model.norm.weight": (hid,),
              "model.position_ids": (1, 16)}
    for i in range(2):
        p = "model.layers.%d." % i
        shapes.update({p + "self_attn.q_proj.weight": (hid, hid), p + "self_attn.q_proj.bias": (hid,),
                       p + "self_attn.k_proj.weight": (kv, hid), p + "self_attn.v_proj.weight": (kv, hid),
                       p + "self_attn.o_proj.weight": (hid, hid), p + "mlp.gate_proj.weight": (inter, hid),
                       p + "mlp.up_proj.weight": (inter, hid), p + "mlp.down_proj.weight": (hid, inter),
                       p + "input_layernorm.weight": (hid,)})
    unchanged = {"model.norm.weight", "model.position_ids", "model.layers.1.self_attn.k_proj.weight",
                 "model.layers.1.self_attn.q_proj.bias", "model.layers.1.input_layernorm.weight"}
    base, ft = {}, {}
    for name in sorted(shapes):
        s = shapes[name]
        if name == "model.position_ids":
            base[name] = ft[name] = np.arange(16, dtype=np.int64).reshape(s)
            continue
        w = (rng.standard_normal(s) * 0.1).astype(np.float32) if len(s) == 2 else np.ones(s, np.float32)
        base[name] = w
        if name in unchanged:
            ft[name] = w.copy()
        elif len(s) == 2:
            r = 4
            low = rng.standard_normal((s[0], r)) @ rng.standard_normal((r, s[1])) * 0.02
            ft[name] = (w + low + rng.standard_normal(s) * 0.002).astype(np.float32)
        else:
            ft[name] = (w + rng.standard_normal(s) * 0.01).astype(np.float32)
    for tag, dt in (("f32", "F32"), ("bf16", "BF16")):
        def typed(m):
            return {k: ("I64" if v.dtype == np.int64 else dt, v) for k, v in m.items()}
        write_st("%s/base_%s.safetensors" % (d, tag), typed(base))
        write_st("%s/ft_%s.safetensors" % (d, tag), typed(ft))
    # Bad inputs: an extra tensor, a different shape.
    extra = dict(ft)
    extra["model.extra.weight"] = np.zeros((4, 4), np.float32)
    write_st(d + "/ft_extra.safetensors", {k: ("I64" if v.dtype == np.int64 else "F32", v) for k, v in extra.items()})
    shape = dict(ft)
    shape["lm_head.weight"] = np.zeros((65, hid), np.float32)
    write_st(d + "/ft_shape.safetensors", {k: ("I64" if v.dtype == np.int64 else "F32", v) for k, v in shape.items()})


def rank_for(rule, s, m, n):
    kind, _, val = rule.partition(":")
    if kind == "fixed":
        return min(int(val), m, n)
    if kind == "energy":
        c = np.cumsum(s ** 2) / np.sum(s ** 2)
        return int(np.searchsorted(c, float(val) - 1e-12) + 1)
    if kind == "sv":
        return int(np.sum(s > float(val)))
    return None  # budget: any rank


def check(argv):
    """check BASE FT ADAPTER_DIR REPORT RULE [embeddings] [alpha=A] [dtype=D] [budget=N]"""
    base, _ = read_st(argv[0])
    ft, _ = read_st(argv[1])
    adir, report, rule = argv[2], json.load(open(argv[3])), argv[4]
    opts = dict(a.split("=") if "=" in a else (a, "1") for a in argv[5:])
    cfg = json.load(open(adir + "/adapter_config.json"))
    ad, _ = read_st(adir + "/adapter_model.safetensors")
    want = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "fan_in_fan_out": False, "use_rslora": False,
            "use_dora": False, "lora_dropout": 0, "inference_mode": True, "init_lora_weights": True,
            "base_model_name_or_path": argv[0]}
    for k, v in want.items():
        if cfg.get(k) != v:
            fail("config %s = %r, expected %r" % (k, cfg.get(k), v))
    for k in ad:
        if not k.startswith(PREFIX):
            fail("key %s lacks the prefix %s" % (k, PREFIX))
    emb = "embeddings" in opts
    adtype = opts.get("dtype", "BF16" if "bf16" in argv[1] else "F32")
    tol = {"BF16": 2e-2, "F16": 5e-3}.get(adtype, 2e-4)
    per = {t["name"]: t for t in report["tensors"]}
    modules, ranks, total_bytes = set(), [], 0
    adapted = {n2.rsplit(".", 1)[0] for n2, (dt, v) in ft.items()
               if dt != "I64" and v.ndim == 2 and n2.endswith(".weight") and (emb or "embed_tokens" not in n2)
               and np.any(v != base[n2][1])}
    for name in sorted(ft):
        if ft[name][0] == "I64":
            continue
        tau = ft[name][1] - base[name][1]
        mod = name.rsplit(".", 1)[0]
        changed = bool(np.any(tau != 0))
        lora = tau.ndim == 2 and name.endswith(".weight") and (emb or "embed_tokens" not in name)
        ka, kb = (PREFIX + mod + ".lora_embedding_A", PREFIX + mod + ".lora_embedding_B") if "embed_tokens" in name else \
            (PREFIX + mod + ".lora_A.weight", PREFIX + mod + ".lora_B.weight")
        if lora and changed:
            if ka not in ad or kb not in ad:
                fail("%s changed but %s/%s are missing" % (name, ka, kb))
            (da, a), (db, b) = ad[ka], ad[kb]
            if da != adtype or db != adtype:
                fail("%s: dtype %s/%s, expected %s" % (name, da, db, adtype))
            t = tau.T if "embed_tokens" in name else tau
            m, n = t.shape
            r = a.shape[0]
            if a.shape != (r, n) or b.shape != (m, r):
                fail("%s: A %s B %s for tau %s" % (name, a.shape, b.shape, t.shape))
            rk = cfg["rank_pattern"].get(mod, cfg["r"])
            alpha = cfg["alpha_pattern"].get(mod, cfg["lora_alpha"])
            if rk != r:
                fail("%s: rank %d but config says %d" % (name, r, rk))
            if "alpha" in opts:
                if cfg["lora_alpha"] != float(opts["alpha"]) or cfg["alpha_pattern"]:
                    fail("--alpha: lora_alpha %r alpha_pattern %r" % (cfg["lora_alpha"], cfg["alpha_pattern"]))
            elif alpha != r:
                fail("%s: alpha %r, expected the rank %d" % (name, alpha, r))
            u, s, vt = np.linalg.svd(t, full_matrices=False)
            k = rank_for(rule, s, m, n)
            if k is not None and k != r:
                fail("%s: rank %d, NumPy's rule %s gives %d (s=%s)" % (name, r, rule, k, s[max(0, k - 2):k + 2]))
            trunc = (u[:, :r] * s[:r]) @ vt[:r]
            delta = (alpha / r) * (b @ a)
            err = np.linalg.norm(delta - trunc) / np.linalg.norm(t)
            if err > tol:
                fail("%s: |scale B A - truncated SVD| / |tau| = %.3g > %.3g" % (name, err, tol))
            rel = np.linalg.norm(t - trunc) / np.linalg.norm(t)
            got = per[name]["relative_error"]
            if abs(got - rel) > 1e-3 + 1e-3 * rel:
                fail("%s: reported relative error %.6g, NumPy %.6g" % (name, got, rel))
            if "clamped" in opts and rule.startswith("fixed") and int(rule[6:]) > min(m, n) \
                    and per[name].get("clamped_from") != int(rule[6:]):
                fail("%s: clamping not reported" % name)
            modules.add(mod)
            ranks.append(r)
            total_bytes += a.nbytes // a.itemsize * SIZES[adtype] + b.nbytes // b.itemsize * SIZES[adtype]
        elif lora:
            if ka in ad or kb in ad:
                fail("%s is unchanged but has factors" % name)
        elif name.endswith(".bias") and mod in adapted:
            pass  # biases of adapted modules: checked below with the config's "bias"
        elif changed:
            if PREFIX + name not in ad:
                fail("%s changed and is not decomposable but is not saved whole" % name)
            if mod not in (cfg["modules_to_save"] or []):
                fail("%s saved whole but %s is not in modules_to_save" % (name, mod))
            if np.max(np.abs(ad[PREFIX + name][1] - ft[name][1])) > (1e-2 if adtype != "F32" else 0):
                fail("%s saved whole with other values" % name)
            total_bytes += ft[name][1].size * SIZES[adtype]
        elif PREFIX + name in ad:
            fail("%s is unchanged but in the adapter" % name)
    if sorted(modules) != sorted(cfg["target_modules"]):
        fail("target_modules %r, expected %r" % (cfg["target_modules"], sorted(modules)))
    common = max(set(ranks), key=lambda x: (ranks.count(x), -x))
    if cfg["r"] != common:
        fail("r = %r, the most common rank is %r" % (cfg["r"], common))
    if any(cfg["rank_pattern"].get(m) == cfg["r"] for m in cfg["rank_pattern"]):
        fail("rank_pattern lists modules of rank r")
    bias_keys = [k for k in ad if k.endswith(".bias")]
    if bias_keys:
        if cfg["bias"] != "lora_only":
            fail("bias tensors saved but bias = %r" % cfg["bias"])
        for k in bias_keys:
            if k[len(PREFIX):].rsplit(".", 1)[0] not in modules:
                fail("bias %s of a module that is not adapted" % k)
            total_bytes += ad[k][1].size * SIZES[adtype]
        want_bias = [PREFIX + n2 for n2 in ft if n2.endswith(".bias") and n2.rsplit(".", 1)[0] in modules]
        if sorted(want_bias) != sorted(bias_keys):
            fail("biases %r, expected %r" % (sorted(bias_keys), sorted(want_bias)))
    elif cfg["bias"] != "none":
        fail("bias = %r without bias tensors" % cfg["bias"])
    if "budget" in opts and total_bytes > int(opts["budget"]):
        fail("adapter holds %d bytes > budget %s" % (total_bytes, opts["budget"]))
    if total_bytes != report["adapter_bytes"]:
        fail("adapter holds %d bytes, the report says %d" % (total_bytes, report["adapter_bytes"]))
    print("adapter ok: %d modules, r=%d, ranks %s, %d bytes" % (len(modules), cfg["r"], sorted(set(ranks)), total_bytes))


def applied(argv):
    """applied BASE FT MERGED REPORT: LoRA tensors reproduce FT within the reported error,
    whole tensors equal FT, everything else equals BASE bit for bit."""
    base, braw = read_st(argv[0])
    ft, _ = read_st(argv[1])
    out, oraw = read_st(argv[2])
    per = {t["name"]: t for t in json.load(open(argv[3]))["tensors"]}
    slack = float(argv[4]) if len(argv) > 4 else 1e-4
    for name in base:
        t = per[name]
        if t["action"] == "lora":
            tau = ft[name][1] - base[name][1]
            err = np.linalg.norm(out[name][1] - ft[name][1]) / np.linalg.norm(tau)
            if err > t["relative_error"] * 1.01 + slack:
                fail("%s: |merged - ft| / |tau| = %.4g > reported %.4g" % (name, err, t["relative_error"]))
        elif t["action"] in ("saved", "bias"):
            if np.max(np.abs(out[name][1] - ft[name][1])) > 0:
                fail("%s: replaced tensor differs from the fine-tuned one" % name)
        elif oraw[name] != braw[name]:
            fail("%s: not copied bit for bit" % name)
    print("apply ok")


def close(argv):
    """close A B TOL [REGEX-free substring]: every tensor whose name contains the substring agrees."""
    a, _ = read_st(argv[0])
    b, _ = read_st(argv[1])
    tol, sub = float(argv[2]), argv[3] if len(argv) > 3 else ""
    for name in a:
        if sub in name:
            d = np.max(np.abs(a[name][1] - b[name][1]))
            if d > tol:
                fail("%s: max difference %.3g > %.3g" % (name, d, tol))
    print("close ok")


def edit_config(argv):
    """edit-config ADAPTER_DIR KEY JSON_VALUE: sets one field of adapter_config.json."""
    path = argv[0] + "/adapter_config.json"
    cfg = json.load(open(path))
    cfg[argv[1]] = json.loads(argv[2])
    json.dump(cfg, open(path, "w"))


def peft_names(argv):
    """peft-names ADAPTER_DIR: rewrites the keys as PEFT names them in memory (".default" adapter
    segment, "base_layer" for the wrapped layer's own parameters); the values stay."""
    path = argv[0] + "/adapter_model.safetensors"
    ad, _ = read_st(path)
    out = {}
    for k, (dt, v) in ad.items():
        k2 = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        if k2.endswith("_proj.bias"):
            k2 = k2[:-len(".bias")] + ".base_layer.bias"
        out[k2] = ("F32", v.astype(np.float32))
    write_st(path, out)


if __name__ == "__main__":
    modes = {"gen": lambda a: gen(a[0]), "check": check, "applied": applied, "close": close, "edit-config": edit_config,
             "peft-names": peft_names}
    modes[sys.argv[1]](sys.argv[2:])
