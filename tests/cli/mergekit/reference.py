#!/usr/bin/python3
"""Independent NumPy reference (float64) of mergekit's merge methods and of its config
evaluation, used to check `wproj merge` as a drop-in for `mergekit-yaml`.

Written from mergekit's documented math (docs/merge_methods.md, merge_methods/*.py,
sparsify.py, config.py evaluate_setting, plan.py): parameters and defaults as mergekit has
them, gradient lists over the layers of a slice (t = i / (n - 1); t = 0 for the embeddings,
the final norm and lm_head), filter lists (first entry whose filter is a substring of the
tensor name, or has no filter / '*'), lookup order source > slice > global, slices with
layer renumbering, and a safetensors reader (F32, F16, BF16 -> float64).

Usage:
    reference.py check CONFIG.yml OUT [--label NAME]
        merges with the reference, reads OUT (a folder or .safetensors), compares every tensor
        and the folder's structure; prints one line; exit status 0 = pass, 1 = mismatch.

Known mergekit behaviours reproduced on purpose (a drop-in must match them):
  * breadcrumbs: when int(gamma * numel) == 0 and density < 1, mergekit's mask slice
    `indices[n_bot:-0]` is empty, so the whole task vector of that tensor is dropped.
  * dare/della rescale with the L1 norm ratio ||d||_1 / ||m * d||_1 (RescaleNorm.l1),
    not 1 / density.
"""
import json
import math
import os
import re
import struct
import sys

import numpy as np

# ---------------------------------------------------------------- safetensors reading

def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path):
    """name -> (float64 array, dtype string)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = body[a:b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F64":
            arr = np.frombuffer(raw, dtype="<f8")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dt == "BF16":
            arr = bf16_to_f32(np.frombuffer(raw, dtype="<u2"))
        else:
            raise ValueError("%s: tensor %s has dtype %s (expected F32, F16, BF16 or F64)" % (path, name, dt))
        out[name] = (arr.astype(np.float64).reshape(info["shape"]), dt)
    return out


def read_model(path):
    """A folder (model.safetensors or model.safetensors.index.json) or a .safetensors file."""
    if os.path.isfile(path):
        return read_safetensors(path)
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            part = read_safetensors(os.path.join(path, shard))
            for k, v in part.items():
                if wm.get(k) != shard:
                    raise ValueError("%s: tensor %s is in %s but the index names %s" % (path, k, shard, wm.get(k)))
                out[k] = v
        missing = set(wm) - set(out)
        if missing:
            raise ValueError("%s: index names tensors absent from the shards: %s" % (path, sorted(missing)[:3]))
        return out
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    raise ValueError("%s: no model.safetensors or model.safetensors.index.json" % path)


_model_cache = {}


def load(path):
    if path not in _model_cache:
        _model_cache[path] = read_model(path)
    return _model_cache[path]


def num_layers(path):
    with open(os.path.join(path, "config.json")) as f:
        return int(json.load(f)["num_hidden_layers"])


# ---------------------------------------------------------------- architecture (LLaMA)

PRE_WEIGHTS = ["model.embed_tokens.weight"]
LAYER_WEIGHTS = ["input_layernorm.weight", "mlp.up_proj.weight", "mlp.gate_proj.weight",
                 "mlp.down_proj.weight", "post_attention_layernorm.weight",
                 "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                 "self_attn.o_proj.weight"]
POST_WEIGHTS = ["model.norm.weight", "lm_head.weight"]
EMBED_WEIGHTS = {"model.embed_tokens.weight", "lm_head.weight"}


def layer_name(i, suffix):
    return "model.layers.%d.%s" % (i, suffix)


# ---------------------------------------------------------------- parameter evaluation

def is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def evaluate_setting(tensor_name, setting, t=0.0):
    """mergekit.config.evaluate_setting: scalars as they are; a list of numbers is a gradient
    (piecewise linear in t over equally spaced anchors); a list of other scalars is a step
    list; a list of {filter, value} picks the first entry whose filter is None, '*' or a
    substring of the tensor name (None when none matches)."""
    if isinstance(setting, (bool, int, float, str)):
        return setting
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, list):
        if all(is_num(e) for e in setting):
            scaled = t * (len(setting) - 1)
            i0 = int(scaled)
            i1 = min(len(setting) - 1, i0 + 1)
            frac = scaled - i0
            return (1 - frac) * setting[i0] + frac * setting[i1]
        if all(isinstance(e, (bool, int, float, str)) for e in setting):
            return setting[int(t * (len(setting) - 1))]
        for cond in setting:
            flt = cond.get("filter")
            if flt is None or flt == "*" or (tensor_name and flt in tensor_name):
                return evaluate_setting(tensor_name, cond["value"], t)
        return None
    raise ValueError("unexpected setting value: %r" % (setting,))


def lookup(cfg, slice_def, name, tensor_name, t, model=None, default=None, required=False):
    """ConfigReader.parameter: the source's parameters (for `model`), then the slice's, then
    the global `parameters`, each only when it evaluates to something."""
    if slice_def is not None:
        if model is not None:
            for s in slice_def["sources"]:
                if s["model"] == model and s.get("parameters") and name in s["parameters"]:
                    v = evaluate_setting(tensor_name, s["parameters"][name], t)
                    if v is not None:
                        return v
        if slice_def.get("parameters") and name in slice_def["parameters"]:
            v = evaluate_setting(tensor_name, slice_def["parameters"][name], t)
            if v is not None:
                return v
    if cfg.get("parameters") and name in cfg["parameters"]:
        v = evaluate_setting(tensor_name, cfg["parameters"][name], t)
        if v is not None:
            return v
    if required:
        raise KeyError("missing required parameter %s for %s %s" % (name, model or "", tensor_name))
    return default


# ---------------------------------------------------------------- method table

REQ = object()

GTA = {
    # name: (consensus, sparsification, default normalize, default rescale)
    "task_arithmetic": (None, None, False, False),
    "ties": ("sum", "magnitude", True, False),
    "dare_ties": ("sum", "random", False, True),
    "dare_linear": (None, "random", False, True),
    "breadcrumbs": (None, "magnitude_outliers", False, False),
    "breadcrumbs_ties": ("sum", "magnitude_outliers", False, False),
    "della": ("sum", "della_magprune", True, True),
    "della_linear": (None, "della_magprune", False, True),
}


def method_params(method):
    """(global parameters, per-model parameters), name -> default (REQ = required)."""
    if method in GTA:
        _, sp, dn, dr = GTA[method]
        g = {"int8_mask": False, "normalize": dn, "rescale": dr, "lambda": 1.0}
        m = {"weight": REQ, "density": 1.0}
        if sp == "magnitude_outliers":
            m["gamma"] = 0.01
        if sp == "della_magprune":
            m["epsilon"] = 0.15
        return g, m
    table = {
        "linear": ({"normalize": True}, {"weight": REQ}),
        "slerp": ({"t": REQ}, {}),
        "nuslerp": ({"nuslerp_row_wise": False, "nuslerp_flatten": True}, {"weight": REQ}),
        "multislerp": ({"normalize_weights": True, "eps": 1e-8}, {"weight": REQ}),
        "karcher": ({"max_iter": 10, "tol": 1e-5}, {}),
        "model_stock": ({"filter_wise": False}, {}),
        "sce": ({"int8_mask": False, "select_topk": 1.0}, {}),
        "ram": ({"epsilon": 1e-5}, {}),
        "ramplus_tl": ({"epsilon": 1e-5, "r": 0.1, "alpha": 0.2}, {}),
        "nearswap": ({"t": REQ}, {}),
        "arcee_fusion": ({}, {}),
        "passthrough": ({}, {"scale": None}),
    }
    if method not in table:
        raise KeyError("unknown merge method %s" % method)
    return table[method]


# ---------------------------------------------------------------- sparsification (sparsify.py)

def l1_rescale(x, mask):
    masked = x * mask
    before = np.abs(x).sum()
    after = np.abs(masked).sum()
    if before < 1e-7 or after < 1e-7:
        return masked
    return masked * (before / after)


def magnitude_mask(x, density):
    k = int(density * x.size)
    if k <= 0:
        raise ValueError("ties: density %g keeps no entry of a tensor of %d" % (density, x.size))
    order = np.argsort(-np.abs(x).ravel(), kind="stable")
    mask = np.zeros(x.size)
    mask[order[:k]] = 1
    return mask.reshape(x.shape)


def outlier_mask(x, density, gamma):
    n = x.size
    target = int(density * n)
    n_top = int(gamma * n)
    n_bot = n - target - n_top
    if n_bot < 0:
        n_top += n_bot
        n_bot = 0
    order = np.argsort(np.abs(x).ravel(), kind="stable")
    mask = np.zeros(n)
    # mergekit: mask[indices[n_bot:-n_top]] = 1, an empty slice when n_top == 0
    if n_top > 0:
        mask[order[n_bot:n - n_top]] = 1
    return mask.reshape(x.shape)


def della_keep_prob(x, density, epsilon):
    """Per-entry keep probability of della_magprune: ranks of |x| within each row mapped
    linearly to [density - epsilon, density + epsilon] (a 1-D tensor is one row)."""
    if density + epsilon >= 1 or density - epsilon <= 0:
        raise ValueError("della: density +/- epsilon must lie in (0, 1): %g, %g" % (density, epsilon))
    m = np.abs(x if x.ndim >= 2 else x[None, :])
    m = m.reshape(m.shape[0], -1)
    ranks = np.argsort(np.argsort(m, axis=1, kind="stable"), axis=1, kind="stable") + 1.0
    lo = ranks.min(axis=1, keepdims=True)
    hi = ranks.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.clip((ranks - lo) / (hi - lo), 0, 1)
    norm = np.nan_to_num(norm, nan=0.0)
    return ((density - epsilon) + norm * 2 * epsilon).reshape(x.shape)


class RandomSpec:
    """A randomized method's tensor: what is needed to check it without its random draws."""

    def __init__(self, method, base, tvs, glob):
        self.method, self.base, self.tvs, self.glob = method, base, tvs, glob

    def keep_probs(self):
        out = []
        for tv in self.tvs:
            d = tv["delta"]
            if tv["density"] >= 1:
                out.append(np.ones_like(d))
            elif GTA[self.method][1] == "random":
                out.append(np.full_like(d, tv["density"]))
            else:
                out.append(della_keep_prob(d, tv["density"], tv["epsilon"]))
        return out

    def with_masks(self, masks):
        return gta_combine(self.method, self.base, self.tvs, self.glob, masks)


def sparsify_det(method, tv, rescale):
    d = tv["delta"]
    sp = GTA[method][1]
    if sp is None or tv["density"] >= 1:
        return d
    if sp == "magnitude":
        mask = magnitude_mask(d, tv["density"])
    else:
        mask = outlier_mask(d, tv["density"], tv["gamma"])
    return l1_rescale(d, mask) if rescale else d * mask


def gta_combine(method, base, tvs, glob, masks=None):
    """generalized_task_arithmetic.GTATask.execute; `masks` = the random methods' draws."""
    consensus = GTA[method][0]
    sp = GTA[method][1]
    if not tvs:
        return base
    deltas = []
    for i, tv in enumerate(tvs):
        if sp in ("random", "della_magprune"):
            if tv["density"] >= 1:
                deltas.append(tv["delta"])
            elif tv["density"] <= 0 and sp == "della_magprune":
                deltas.append(np.zeros_like(tv["delta"]))
            else:
                m = masks[i]
                deltas.append(l1_rescale(tv["delta"], m) if glob["rescale"] else tv["delta"] * m)
        else:
            deltas.append(sparsify_det(method, tv, glob["rescale"]))
    deltas = np.stack(deltas)
    w = np.array([tv["weight"] for tv in tvs], dtype=np.float64).reshape((-1,) + (1,) * base.ndim)
    wd = deltas * w
    if consensus:
        mask = sign_mask(wd)
        mixed = (wd * mask).sum(0)
        div = (w * mask).sum(0)
        div[div == 0] = 1
    else:
        mixed = wd.sum(0)
        div = np.broadcast_to(w.sum(0), mixed.shape).copy()
        div[np.abs(div) < 1e-8] = 1
    if glob["normalize"]:
        mixed = mixed / div
    if glob["lambda"] != 1:
        mixed = mixed * glob["lambda"]
    return base + mixed


def sign_mask(stacked):
    """get_mask(method='sum'): majority sign from the sum (>= 0 -> +1); an entry takes part
    when its sign equals the majority sign (zeros never do)."""
    sign = np.sign(stacked)
    majority = np.where(stacked.sum(0) >= 0, 1.0, -1.0)
    return (sign == majority).astype(np.float64)


# ---------------------------------------------------------------- the other methods

def slerp(t, v0, v1, dot_threshold=0.9995, eps=1e-8):
    def nrm(v):
        n = np.linalg.norm(v)
        return v / n if n > eps else v
    a, b = nrm(v0), nrm(v1)
    dot = float(np.sum(a * b))
    if abs(dot) > dot_threshold:
        return (1 - t) * v0 + t * v1
    th = math.acos(dot)
    s = math.sin(th)
    return math.sin(th - th * t) / s * v0 + math.sin(th * t) / s * v1


def nuslerp(t, v0, v1, row_wise, flatten, eps=1e-8):
    shape = v0.shape
    if flatten:
        a, b = v0.reshape(1, -1), v1.reshape(1, -1)
    else:
        a = v0 if v0.ndim >= 2 else v0[None, :]
        b = v1 if v1.ndim >= 2 else v1[None, :]
        if not row_wise:
            pass  # dim = -1: vectors along the last axis (the rows of the matrix)
        else:
            a, b = a.T, b.T  # dim = 0: the columns become the vectors
    if v0.ndim == 1 and not flatten and row_wise:
        # transpose(0, -1) of a 1-D tensor is itself: one vector
        a, b = v0[None, :], v1[None, :]

    def un(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-7)
    cos = np.sum(un(a) * un(b), axis=-1, keepdims=True)
    th = np.arccos(np.clip(cos, -1, 1))
    s = np.sin(th)
    col = np.abs(s) < eps
    with np.errstate(invalid="ignore", divide="ignore"):
        res = (np.sin((1 - t) * th) * a + np.sin(t * th) * b) / s
    lin = (1 - t) * a + t * b
    res = np.where(col, lin, res)
    if row_wise and not flatten and v0.ndim >= 2:
        res = res.T
    return res.reshape(shape)


def multislerp(tensors, weights, base, normalize_weights, eps):
    if len(tensors) == 1:
        return tensors[0]
    x = np.stack(tensors)
    if base is not None:
        x = x - base
    flat = x.reshape(x.shape[0], -1)
    w = np.array(weights, dtype=np.float64)
    if normalize_weights:
        w = w / w.sum()
    norms = np.linalg.norm(flat, axis=-1, keepdims=True)
    unit = flat / (norms + eps)
    mean = (unit * w[:, None]).sum(0)
    mn = np.linalg.norm(mean)
    if mn < eps:
        if x.shape[0] == 2:
            res = x[0] * w[0] + x[1] * w[1]
            return res + base if base is not None else res
        raise ValueError("multislerp: the weighted sum of the unit tensors is zero")
    mean = mean / mn
    dots = (unit * mean).sum(-1, keepdims=True)
    tang = unit - dots * mean
    tr = (tang * w[:, None]).sum(0)
    tn = np.linalg.norm(tr) + eps
    res = mean * np.cos(tn) + tr * (np.sin(tn) / tn)
    res = res * (norms[:, 0] * w).sum()
    res = res.reshape(x.shape[1:])
    return res + base if base is not None else res


def karcher(tensors, max_iter, tol):
    if len(tensors) == 1:
        return tensors[0]
    alphas = [1.0 / len(tensors)] * len(tensors)
    norms, units = [], []
    for x in tensors:
        n = float(np.linalg.norm(x))
        norms.append(n)
        units.append(np.zeros_like(x) if n == 0 else x / n)
    valid = [i for i, n in enumerate(norms) if n > tol]
    if not valid:
        return np.zeros_like(tensors[0])
    va = [alphas[i] for i in valid]
    s = sum(va)
    na = [a / s for a in va]
    vu = [units[i] for i in valid]
    u = sum(a * x for a, x in zip(na, vu))
    nu = float(np.linalg.norm(u))
    u = vu[0].copy() if nu < tol else u / nu
    for _ in range(int(max_iter)):
        T = np.zeros_like(u)
        for a, x in zip(na, vu):
            dot = float(np.clip(np.sum(u * x), -1, 1))
            th = math.acos(dot)
            if th < tol:
                continue
            T += a * (th / math.sin(th)) * (x - dot * u)
        nT = float(np.linalg.norm(T))
        if nT < tol:
            break
        u = math.cos(nT) * u + math.sin(nT) * (T / nT)
        un = float(np.linalg.norm(u))
        if un > tol:
            u = u / un
    return sum(a * n for a, n in zip(alphas, norms)) * u


def model_stock(w0, ws, filter_wise):
    shape = w0.shape
    if filter_wise:
        if w0.ndim == 1:
            w0 = w0[None, :]
            ws = [w[None, :] for w in ws]
    else:
        w0 = w0.reshape(-1)
        ws = [w.reshape(-1) for w in ws]
    off = [w - w0 for w in ws]
    cos = []
    for i in range(len(off)):
        for j in range(i + 1, len(off)):
            npd = np.linalg.norm(off[i], axis=-1) * np.linalg.norm(off[j], axis=-1)
            c = np.clip((off[i] * off[j]).sum(-1) / np.maximum(npd, 1e-6), -1, 1)
            cos.append(c)
    c = np.mean(np.stack(cos), axis=0)[..., None] if filter_wise else np.mean(cos)
    n = len(ws)
    t = n * c / (1 + (n - 1) * c)
    avg = sum(ws) / n
    return (t * avg + (1 - t) * w0).reshape(shape)


def sce(tensors, base, select_topk):
    if not tensors:
        return base
    tvs = np.stack([x - base for x in tensors])
    if select_topk < 1:
        if select_topk <= 0:
            mask = np.zeros(base.shape)
        else:
            var = np.var(tvs, axis=0)
            k = int(np.count_nonzero(var) * select_topk)
            mask = np.zeros(base.size)
            if k > 0:
                mask[np.argsort(-np.abs(var).ravel(), kind="stable")[:k]] = 1
            mask = mask.reshape(base.shape)
        tvs = tvs * mask[None]
    erase = sign_mask(tvs)
    wts = np.mean(tvs.reshape(tvs.shape[0], -1) ** 2, axis=1)
    ws = wts.sum()
    wts = np.full_like(wts, 1.0 / len(wts)) if abs(ws) < 1e-6 else wts / ws
    ew = wts.reshape((-1,) + (1,) * base.ndim) * erase
    merged = (tvs * ew).sum(0)
    return base + merged / np.maximum(ew.sum(0), 1e-6)


def ram(base, others, glob, plus):
    """mergekit's ram / ramplus_tl: entries changed (|tv| > epsilon) by one model kept whole (times
    that model's lambda for ramplus_tl), by several averaged over them."""
    eps = glob["epsilon"]
    tv = np.stack([x - base for x in others]).reshape(len(others), -1)
    nz = np.abs(tv) > eps
    c = nz.sum(0, keepdims=True)
    overlap, unique = c > 1, c == 1
    lam = np.ones((len(others), 1))
    if plus:
        shared = (nz & overlap).sum(1)
        uniq = (nz & unique).sum(1)
        rho = shared / np.maximum(uniq, eps)
        lam = (1 + glob["r"] * np.clip(rho, 0, glob["alpha"]))[:, None]
    tvz = tv * nz
    merged = (tvz * unique * lam + tvz * overlap / np.maximum(c, 1)).sum(0)
    return base + merged.reshape(base.shape)


def nearswap(base, other, t):
    w = np.clip(t / np.maximum(np.abs(base - other), 1e-6), 0, 1)
    return w * other + (1 - w) * base


def arcee_fusion(base, other):
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    diff = np.abs(other - base)
    p = softmax(other) + 1e-8
    q = softmax(base) + 1e-8
    kl = np.sum(p * np.log(p / q), axis=-1)
    imp = diff * (kl[..., None] if base.ndim >= 1 and np.ndim(kl) else kl)
    flat = np.sort(imp.ravel())
    def quant(qv):
        return flat[int(qv * (flat.size - 1))]
    thr = quant(0.5) + 1.5 * (quant(0.75) - quant(0.25))
    return base + (other - base) * (imp >= thr)


# ---------------------------------------------------------------- planning (plan.py)

def normalize_config(cfg, resolve):
    """models -> one slice whose sources are the models over all their layers, plus the base
    when it is not listed. Returns the list of slices."""
    base = cfg.get("base_model")
    if cfg.get("models"):
        srcs, has_base = [], False
        for m in cfg["models"]:
            if base and m["model"] == base:
                has_base = True
            srcs.append({"model": m["model"], "layer_range": [0, num_layers(resolve(m["model"]))],
                         "parameters": m.get("parameters")})
        if base and not has_base:
            srcs.append({"model": base, "layer_range": [0, num_layers(resolve(base))], "parameters": None})
        return [{"sources": srcs}]
    return cfg["slices"]


def plan(cfg, resolve):
    """Yields (output name, slice, t, [(model, input name)])."""
    slices = normalize_config(cfg, resolve)
    out = []
    first = slices[0]
    for w in PRE_WEIGHTS:
        out.append((w, first, 0.0, [(s["model"], w) for s in first["sources"]]))
    k = 0
    for sl in slices:
        lens = [s["layer_range"][1] - s["layer_range"][0] for s in sl["sources"]]
        if len(set(lens)) != 1:
            raise ValueError("all inputs to a slice must contain the same number of layers")
        n = lens[0]
        for idx in range(n):
            t = idx / (n - 1) if n > 1 else 1.0
            for suf in LAYER_WEIGHTS:
                ins = [(s["model"], layer_name(s["layer_range"][0] + idx, suf)) for s in sl["sources"]]
                out.append((layer_name(k, suf), sl, t, ins))
            k += 1
    last = slices[-1]
    for w in POST_WEIGHTS:
        out.append((w, last, 0.0, [(s["model"], w) for s in last["sources"]]))
    return out, k


def merge_tensor(cfg, method, out_name, sl, t, inputs, resolve):
    gdef, mdef = method_params(method)
    base = sl.get("base_model") or cfg.get("base_model")
    glob = {}
    for p, d in gdef.items():
        glob[p] = lookup(cfg, sl, p, out_name, t, None, None if d is REQ else d, d is REQ)
    tensors, params = {}, {}
    for model, in_name in inputs:
        tensors[model] = load(resolve(model))[in_name][0]
        params[model] = {}
        for p, d in mdef.items():
            params[model][p] = lookup(cfg, sl, p, in_name, t, model, None if d is REQ else d,
                                      d is REQ and model != base)
    models = [m for m, _ in inputs]
    others = [m for m in models if m != base]

    if method in GTA:
        b = tensors[base]
        tvs = []
        for m in others:
            tv = dict(params[m])
            tv["delta"] = tensors[m] - b
            tvs.append(tv)
        if GTA[method][1] in ("random", "della_magprune") and any(tv["density"] < 1 for tv in tvs):
            return RandomSpec(method, b, tvs, glob)
        return gta_combine(method, b, tvs, glob)
    if method == "linear":
        xs = np.stack([tensors[m] for m in models])
        w = np.array([params[m]["weight"] for m in models], dtype=np.float64).reshape((-1,) + (1,) * (xs.ndim - 1))
        res = (w * xs).sum(0)
        return res / w.sum(0) if glob["normalize"] else res
    if method == "slerp":
        if len(models) == 1:
            return tensors[models[0]]
        return slerp(glob["t"], tensors[base], tensors[others[0]])
    if method == "nuslerp":
        ws = [params[m]["weight"] for m in others]
        tt = 0.5 if abs(sum(ws)) < 1e-6 else ws[1] / sum(ws)
        a, b2 = tensors[others[0]], tensors[others[1]]
        if base is not None:
            bt = tensors[base]
            return bt + nuslerp(tt, a - bt, b2 - bt, glob["nuslerp_row_wise"], glob["nuslerp_flatten"])
        return nuslerp(tt, a, b2, glob["nuslerp_row_wise"], glob["nuslerp_flatten"])
    if method == "multislerp":
        return multislerp([tensors[m] for m in others], [params[m]["weight"] for m in others],
                          tensors[base] if base else None, glob["normalize_weights"], glob["eps"])
    if method == "karcher":
        return karcher([tensors[m] for m in models], glob["max_iter"], glob["tol"])
    if method == "model_stock":
        return model_stock(tensors[base], [tensors[m] for m in others], glob["filter_wise"])
    if method == "sce":
        return sce([tensors[m] for m in others], tensors[base], glob["select_topk"])
    if method in ("ram", "ramplus_tl"):
        return ram(tensors[base], [tensors[m] for m in others], glob, method == "ramplus_tl")
    if method == "nearswap":
        return nearswap(tensors[base], tensors[others[0]], glob["t"])
    if method == "arcee_fusion":
        return arcee_fusion(tensors[base], tensors[others[0]])
    if method == "passthrough":
        if len(models) != 1:
            raise ValueError("passthrough takes exactly one model per slice")
        x = tensors[models[0]]
        sc = params[models[0]]["scale"]
        return x * sc if sc is not None else x
    raise KeyError(method)


def reference_merge(cfg, resolve):
    """name -> array or RandomSpec, and the number of output layers."""
    method = cfg["merge_method"]
    items, n_layers = plan(cfg, resolve)
    out = {}
    for name, sl, t, ins in items:
        out[name] = merge_tensor(cfg, method, name, sl, t, ins, resolve)
    return out, n_layers


# ---------------------------------------------------------------- checking an output

BF16_TOL_NOTE = ("bf16 bound: |out - ref| <= 2^-6 |ref| + 2^-8 max|ref| per entry, two bf16 ulps: "
                 "the final rounding costs half an ulp (2^-8 relative) and mergekit, which computes in "
                 "bfloat16 when dtype is bfloat16 or the inputs are, rounds the converted inputs, the "
                 "products and the sum at 2^-8 each (measured: linear and model_stock in torch bfloat16 "
                 "reach 0.6 of this bound, float32 arithmetic rounded once 0.2); the max|ref| floor covers "
                 "entries produced by cancellation (base + delta near zero), whose error follows the "
                 "operands' scale")


def err_ratio(out, ref, out_dtype):
    """Achieved error over the allowed one (<= 1 passes) and the plain relative error."""
    scale = max(np.max(np.abs(ref)), 1e-30)
    diff = np.abs(out - ref)
    rel = float(np.max(diff) / scale)
    if out_dtype == "BF16":
        tol = 2.0 ** -6 * np.abs(ref) + 2.0 ** -8 * scale
    elif out_dtype == "F16":
        tol = 2.0 ** -9 * np.abs(ref) + 2.0 ** -11 * scale
    else:
        tol = 1e-6 * scale + 0 * ref
    return float(np.max(diff / tol)), rel


def expected_dtype(cfg, base_cfg_dtype):
    return cfg.get("out_dtype") or cfg.get("dtype") or base_cfg_dtype


ST_NAME = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64"}


def check_random(spec, out, out_dtype, problems, stats, name):
    """Randomized methods: with one model the mask is read off the output (entries that
    differ from the base) and the tensor recomputed exactly from it; keep counts against the
    keep probabilities (binomial, 5 sigma); for the linear variants the regression slope of
    out - base on the expected delta must be 1."""
    probs = spec.keep_probs()
    base = spec.base
    changed = np.abs(out - base) > 0
    # an entry is unchanged when every model's entry was dropped (or its delta is zero)
    q_unchanged = np.ones(base.shape)
    for p, tv in zip(probs, spec.tvs):
        q_unchanged *= np.where(tv["delta"] == 0, 1.0, 1.0 - p)
    stats["unchanged_obs"] += float((~changed).sum())
    stats["unchanged_exp"] += float(q_unchanged.sum())
    stats["unchanged_var"] += float((q_unchanged * (1 - q_unchanged)).sum())
    if len(spec.tvs) == 1:
        masks = [changed.astype(np.float64)]
        ref = spec.with_masks(masks)
        r, rel = err_ratio(out, ref, out_dtype)
        stats["exact_ratio"] = max(stats.get("exact_ratio", 0.0), r)
        stats["exact_rel"] = max(stats.get("exact_rel", 0.0), rel)
        if r > 1:
            problems.append("%s: recomputed from its own mask, error %.3g x the allowed one" % (name, r))
    if GTA[spec.method][0] is None:
        # E[mask * d] = p * d; the L1 rescale multiplies by about ||d||_1 / sum(p |d|)
        lam = spec.glob["lambda"]
        e = np.zeros(base.shape)
        var = np.zeros(base.shape)
        for tv, p in zip(spec.tvs, probs):
            d = tv["delta"]
            c = 1.0
            if spec.glob["rescale"] and np.sum(p * np.abs(d)) > 0:
                c = np.sum(np.abs(d)) / np.sum(p * np.abs(d))
            e += lam * tv["weight"] * c * p * d
            var += (lam * tv["weight"] * c * d) ** 2 * p * (1 - p)
        if spec.glob["normalize"]:
            div = sum(tv["weight"] for tv in spec.tvs)
            div = div if abs(div) >= 1e-8 else 1
            e, var = e / div, var / div ** 2
        stats["xy"] += float(np.sum((out - base) * e))
        stats["xx"] += float(np.sum(e * e))
        stats["var"] += float(np.sum(e * e * var))


def check(cfg_path, out_path, label):
    import yaml
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f)
    cfg_dir = os.path.dirname(os.path.abspath(cfg_path))

    def resolve(p):
        return p if os.path.isabs(p) else os.path.join(cfg_dir, p)
    problems = []
    ref, n_layers = reference_merge(cfg, resolve)
    try:
        got = read_model(out_path)
    except Exception as e:  # noqa: BLE001 - report any unreadable output as a failure
        print("FAIL %-28s output unreadable: %s" % (label, e))
        return 1
    donor = cfg.get("base_model") or (cfg.get("models") or [{}])[0].get("model") or \
        cfg["slices"][0]["sources"][0]["model"]
    donor = resolve(donor)
    with open(os.path.join(donor, "config.json")) as f:
        donor_cfg = json.load(f)
    want_dtype = expected_dtype(cfg, donor_cfg.get("torch_dtype"))
    # structure of a folder output
    if os.path.isdir(out_path):
        cj = os.path.join(out_path, "config.json")
        if not os.path.exists(cj):
            problems.append("config.json missing")
        else:
            with open(cj) as f:
                oc = json.load(f)
            if oc.get("num_hidden_layers") != n_layers:
                problems.append("config.json num_hidden_layers %s, expected %d" % (oc.get("num_hidden_layers"), n_layers))
            if oc.get("torch_dtype", oc.get("dtype")) != want_dtype:
                problems.append("config.json torch_dtype %s, expected %s" % (oc.get("torch_dtype"), want_dtype))
            if oc.get("architectures") != ["LlamaForCausalLM"]:
                problems.append("config.json architectures %s" % oc.get("architectures"))
        for tf in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            p = os.path.join(out_path, tf)
            if not os.path.exists(p):
                problems.append("%s not copied" % tf)
            else:
                with open(p, "rb") as a, open(os.path.join(donor, tf), "rb") as b:
                    if a.read() != b.read():
                        problems.append("%s differs from the donor's" % tf)
        if not os.path.exists(os.path.join(out_path, "README.md")):
            problems.append("README.md missing")
        idx = os.path.join(out_path, "model.safetensors.index.json")
        shards = sorted(f for f in os.listdir(out_path) if f.endswith(".safetensors"))
        if os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f)["weight_map"]
            n = len(shards)
            want = ["model-%05d-of-%05d.safetensors" % (i + 1, n) for i in range(n)]
            if shards != want:
                problems.append("shard names %s, expected %s" % (shards, want))
            if sorted(set(wm.values())) != shards:
                problems.append("index names shards %s, folder has %s" % (sorted(set(wm.values())), shards))
            if cfg.get("max_shard_size") and n < 2:
                problems.append("max_shard_size %s gave one shard" % cfg.get("max_shard_size"))
        elif shards != ["model.safetensors"]:
            problems.append("single-file output named %s, expected model.safetensors" % shards)
        elif cfg.get("max_shard_size"):
            problems.append("max_shard_size %s: not sharded" % cfg.get("max_shard_size"))
    extra = sorted(set(got) - set(ref))
    missing = sorted(set(ref) - set(got))
    if extra:
        problems.append("unexpected tensors %s" % extra[:3])
    if missing:
        problems.append("missing tensors %s" % missing[:3])
    worst, worst_rel, worst_name = 0.0, 0.0, ""
    stats = {"unchanged_obs": 0.0, "unchanged_exp": 0.0, "unchanged_var": 0.0, "xy": 0.0, "xx": 0.0, "var": 0.0}
    n_random = 0
    dtypes = set()
    wrong_dtype = []
    bad = []
    for name in sorted(set(ref) & set(got)):
        out, odt = got[name]
        dtypes.add(odt)
        if odt != ST_NAME.get(want_dtype, want_dtype):
            wrong_dtype.append(name)
        r = ref[name]
        if isinstance(r, RandomSpec):
            n_random += 1
            if out.shape != r.base.shape:
                problems.append("%s: shape %s, expected %s" % (name, list(out.shape), list(r.base.shape)))
                continue
            check_random(r, out, odt, problems, stats, name)
            continue
        if out.shape != r.shape:
            problems.append("%s: shape %s, expected %s" % (name, list(out.shape), list(r.shape)))
            continue
        ratio, rel = err_ratio(out, r, odt)
        if ratio > 1:
            bad.append(name)
        if ratio > worst:
            worst, worst_name = ratio, name
        worst_rel = max(worst_rel, rel)
    if wrong_dtype:
        problems.append("%d tensors stored as %s, expected %s (out_dtype, else dtype, else the base's "
                        "torch_dtype), e.g. %s" % (len(wrong_dtype), ",".join(sorted(dtypes)),
                                                   ST_NAME.get(want_dtype, want_dtype), wrong_dtype[0]))
    msg = []
    if n_random:
        obs, exp, var = stats["unchanged_obs"], stats["unchanged_exp"], stats["unchanged_var"]
        z = (obs - exp) / math.sqrt(max(var, 1e-12))
        msg.append("unchanged entries %d vs expected %.1f (z=%.2f)" % (obs, exp, z))
        if abs(z) > 5:
            problems.append("keep rate off: %d entries unchanged, expected %.1f +- %.1f" % (obs, exp, math.sqrt(var)))
        if stats["xx"] > 0:
            slope = stats["xy"] / stats["xx"]
            sd = math.sqrt(stats["var"]) / stats["xx"]
            msg.append("mean slope %.4f (sd %.4f)" % (slope, sd))
            if abs(slope - 1) > 4 * sd + 0.01:
                problems.append("mean of the merged delta off: slope %.4f, expected 1 +- %.4f" % (slope, 4 * sd + 0.01))
        if "exact_ratio" in stats:
            msg.append("given its mask: rel err %.2e (%.2f of allowed)" % (stats["exact_rel"], stats["exact_ratio"]))
    if len(ref) - n_random:
        msg.insert(0, "rel err %.2e (%.2f of allowed, worst %s)" % (worst_rel, worst, worst_name or "-"))
        if worst > 1:
            problems.append("error up to %.3g x the allowed one (in %s); %d tensors over: %s" % (
                worst, worst_name, len(bad), ", ".join(bad[:4]) + (", ..." if len(bad) > 4 else "")))
    status = "PASS" if not problems else "FAIL"
    print("%s %-28s %s [%s]" % (status, label, "; ".join(msg), ",".join(sorted(dtypes))))
    for p in problems[:8]:
        print("     - " + p)
    if len(problems) > 8:
        print("     - ... %d more" % (len(problems) - 8))
    return 0 if not problems else 1


def main(argv):
    if len(argv) >= 3 and argv[0] == "check":
        label = argv[argv.index("--label") + 1] if "--label" in argv else os.path.basename(argv[1])
        return check(argv[1], argv[2], label)
    if len(argv) >= 1 and argv[0] == "note":
        print(BF16_TOL_NOTE)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
