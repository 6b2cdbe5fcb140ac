"""GaLore-style projected optimizers, APOLLO and Muon for PyTorch, computed by wproj's C++ optimizers.

``GaLoreAdamW`` and ``GaLoreAdafactor`` are ``torch.optim.Optimizer`` subclasses with the param
groups of galore-torch (Zhao et al., ICML 2024, ``galore_torch``): a group with ``rank`` is
optimized in a rank-``rank`` subspace of each parameter's gradient (``update_proj_gap``,
``scale``, ``proj_type`` = std | reverse_std | left | right | full), refreshed every
``update_proj_gap`` steps (steps 0, T, 2T, …); a group without ``rank`` gets the plain optimizer.
wproj's own group keys: ``basis`` (svd | randomized | dct | gaussian for AdamW; svd | randomized
for Adafactor) and ``seed`` (of the randomized and Gaussian bases).

``APOLLOAdamW`` takes the param groups of APOLLO's ``apollo_torch.APOLLOAdamW`` (Zhu et al., MLSys
2025: ``rank``, ``proj`` = random | svd, ``scale_type`` = channel | tensor, ``scale``,
``update_proj_gap``, ``proj_type``) and ``Muon`` the arguments of the reference
``SingleDeviceMuon`` (Jordan et al. 2024: ``lr``, ``weight_decay``, ``momentum``).

Each parameter's state is a C++ object (``ProjectedAdamW<Basis>``, ``ProjectedAdafactor``,
``Apollo<Basis>``, ``Muon``, ``AdamW``, ``Adafactor``) that updates the tensor's float32 storage in place (zero-copy through
``tensor.numpy()``) with the GIL released. Requirements: CPU tensors (a CUDA parameter raises
ValueError), float32 (other dtypes raise ValueError), contiguous parameters (a non-contiguous
parameter raises ValueError; a non-contiguous gradient is copied once). A rank above
min(m, n) is lowered to min(m, n), as galore-torch does. Sparse gradients are refused.

``state_dict()`` stores each C++ state as ``bytes`` (``state['wproj_state']``, wproj's checkpoint
format) next to ``state['step']``; ``load_state_dict`` restores it exactly, so training continues
bit-identically.

torch is imported when this module is imported (``import wproj`` does not import it).
"""

from __future__ import annotations

import torch as _torch

from . import _core

__all__ = ["GaLoreAdamW", "GaLoreAdafactor", "APOLLOAdamW", "Muon"]

_GALORE_DEFAULTS = {"update_proj_gap": 200, "scale": 0.25, "proj_type": "std", "basis": "svd", "seed": 0}


_APOLLO_DEFAULTS = {"update_proj_gap": 200, "scale": 1.0, "proj_type": "std", "proj": "random", "scale_type": "channel",
                    "seed": 0}


class _WprojOptimizer(_torch.optim.Optimizer):
    """The shared machinery: one C++ state per parameter, created at its first step."""

    _rule = ""
    _group_defaults = _GALORE_DEFAULTS  # the projection keys of a group with 'rank'
    _basis_key = "basis"                # the group key naming the basis

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        self._cpp = {}

    def _settings(self, group, p):
        """The ParamState arguments (rule, rank, basis, proj_type, update_proj_gap, scale, seed)."""
        if "rank" not in group or group["rank"] is None:
            return self._rule, 0, "svd", "std", 1, 1.0, 0
        rank = int(group["rank"])
        if rank < 1:
            raise ValueError(f"param group 'rank' = {rank}; expected >= 1 (or no 'rank' for the plain optimizer)")
        if p.dim() != 2:
            raise ValueError(f"param group 'rank' is set for a parameter of shape {tuple(p.shape)}; "
                             "expected 2-D parameters (Linear weights) in a group with 'rank'")
        rank = min(rank, min(p.shape))
        get = lambda k: group.get(k, self._group_defaults[k])  # noqa: E731
        return (self._rule, rank, str(get(self._basis_key)), str(get("proj_type")), int(get("update_proj_gap")),
                float(get("scale")), int(get("seed")))

    def _state_for(self, group, p):
        st = self._cpp.get(p)
        if st is None:
            st = _core.ParamState(*self._settings(group, p))
            saved = self.state[p].get("wproj_state") if p in self.state else None
            if saved is not None:
                st.load(bytes(saved))
            self._cpp[p] = st
        return st

    @staticmethod
    def _check(p):
        if p.device.type != "cpu":
            raise ValueError(f"wproj.torch optimizers need CPU tensors; got a parameter on '{p.device}' "
                             "(wproj's optimizers run on the CPU, updating the tensor's memory in place)")
        if p.dtype != _torch.float32:
            raise ValueError(f"wproj.torch optimizers update float32 parameters; got {p.dtype} "
                             "(convert the model with .float())")
        if not p.is_contiguous():
            raise ValueError("wproj.torch optimizers need contiguous parameters (updated in place); "
                             f"this one of shape {tuple(p.shape)} has strides {p.stride()}")
        if p.grad.is_sparse:
            raise ValueError("wproj.torch optimizers do not support sparse gradients")

    def _hyper(self, group):
        raise NotImplementedError

    @_torch.no_grad()
    def step(self, closure=None):
        """One optimizer step on every parameter that has a gradient. Returns the closure's loss."""
        loss = None
        if closure is not None:
            with _torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hp = self._hyper(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._check(p)
                st = self._state_for(group, p)
                g = p.grad if p.grad.is_contiguous() else p.grad.contiguous()
                if g.dtype != _torch.float32:
                    g = g.float()
                st.step(p.detach().numpy(), g.detach().numpy(), hp)
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
        return loss

    def state_dict(self):
        """torch's state dict with each parameter's C++ state as ``bytes`` in ``state['wproj_state']``."""
        for p, st in self._cpp.items():
            self.state[p]["wproj_state"] = st.save()
        return super().state_dict()

    def load_state_dict(self, state_dict):
        """Restores a :meth:`state_dict`; the C++ states are rebuilt from their bytes at the next step."""
        super().load_state_dict(state_dict)
        self._cpp = {}


class _AdamWBase(_WprojOptimizer):
    """The arguments and hyperparameters shared by the AdamW-based optimizers."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True):
        if not lr >= 0.0:
            raise ValueError(f"argument 'lr' = {lr}; expected >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"argument 'betas' = {betas}; expected two values in [0, 1)")
        if not eps > 0.0:
            raise ValueError(f"argument 'eps' = {eps}; expected > 0")
        if not weight_decay >= 0.0:
            raise ValueError(f"argument 'weight_decay' = {weight_decay}; expected >= 0")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias))

    def _hyper(self, group):
        b1, b2 = group["betas"]
        return {"lr": float(group["lr"]), "beta1": float(b1), "beta2": float(b2), "eps": float(group["eps"]),
                "weight_decay": float(group["weight_decay"]), "correct_bias": bool(group["correct_bias"])}


class GaLoreAdamW(_AdamWBase):
    """AdamW with GaLore's gradient projection (galore_torch.GaLoreAdamW, Zhao et al. 2024).

    For a parameter of a group with ``rank``: R = project(G) (rank-r, refreshed every
    ``update_proj_gap`` steps, moments kept across refreshes as galore-torch), m ← β₁m + (1−β₁)R,
    v ← β₂v + (1−β₂)R², W ← W − lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·scale·back(m / (√v + eps)), then
    W ← W − lr·weight_decay·W. Without ``rank``: the same on the full gradient (plain AdamW).

    Parameters: ``lr`` (default 1e-3), ``betas`` (default (0.9, 0.999)), ``eps`` (default 1e-6,
    galore-torch's), ``weight_decay`` (default 0), ``correct_bias`` (default True); group keys
    ``rank``, ``update_proj_gap`` (200), ``scale`` (0.25), ``proj_type`` ('std'), ``basis``
    ('svd' | 'randomized' | 'dct' | 'gaussian'), ``seed`` (0).
    """

    _rule = "adamw"


class GaLoreAdafactor(_WprojOptimizer):
    """Adafactor (transformers' ``Adafactor``, Shazeer & Stern 2018) with GaLore's gradient
    projection (galore_torch.GaLoreAdafactor): the factored second moment lives on the projected
    shape and the RMS clipping acts in the subspace; the update is projected back times ``scale``.
    Without ``rank``: plain Adafactor (a parameter of more than two dimensions is factored as
    (prod(shape[:-1]), shape[-1])).

    Parameters as transformers: ``lr`` (None: relative step), ``eps`` ((1e-30, 1e-3)),
    ``clip_threshold`` (1.0), ``decay_rate`` (-0.8), ``beta1`` (None: no first moment),
    ``weight_decay`` (0), ``scale_parameter`` (True), ``relative_step`` (True), ``warmup_init``
    (False); group keys as :class:`GaLoreAdamW` (``basis``: 'svd' or 'randomized').
    """

    _rule = "adafactor"

    def __init__(self, params, lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None,
                 weight_decay=0.0, scale_parameter=True, relative_step=True, warmup_init=False):
        if lr is not None and relative_step:
            raise ValueError("argument 'lr' is given with relative_step=True; expected one of them")
        if warmup_init and not relative_step:
            raise ValueError("argument 'warmup_init' = True needs relative_step=True")
        super().__init__(params, dict(lr=lr, eps=tuple(eps), clip_threshold=clip_threshold, decay_rate=decay_rate,
                                      beta1=beta1, weight_decay=weight_decay, scale_parameter=scale_parameter,
                                      relative_step=relative_step, warmup_init=warmup_init))

    def _hyper(self, group):
        return {"lr": 0.0 if group["lr"] is None else float(group["lr"]), "relative_step": bool(group["relative_step"]),
                "scale_parameter": bool(group["scale_parameter"]), "warmup_init": bool(group["warmup_init"]),
                "decay_rate": float(group["decay_rate"]), "clip_threshold": float(group["clip_threshold"]),
                "eps1": float(group["eps"][0]), "eps2": float(group["eps"][1]),
                "adafactor_beta1": 0.0 if group["beta1"] is None else float(group["beta1"]),
                "weight_decay": float(group["weight_decay"])}


class APOLLOAdamW(_AdamWBase):
    """APOLLO (Zhu et al., "APOLLO: SGD-like Memory, AdamW-level Performance", MLSys 2025; the
    reference ``apollo_torch.APOLLOAdamW``): for a parameter of a group with ``rank``, Adam runs on
    the projection R of the gradient onto a random rank-``rank`` subspace (``proj='random'``: a
    seeded Gaussian P, regenerated every ``update_proj_gap`` steps and never stored; ``'svd'``:
    GaLore's SVD basis), and its output only sets a scale per channel s = ‖Ñ‖/‖R‖ (``scale_type=
    'channel'``) or one for the tensor (``'tensor'``, APOLLO-Mini with rank 1 and scale 128); the
    weight moves along the raw gradient G ⊙ s, times √``scale``, through Fira's norm-growth
    limiter (γ = 1.01). A group without ``rank`` gets plain AdamW.

    Parameters: ``lr`` (1e-3), ``betas`` ((0.9, 0.999)), ``eps`` (1e-6), ``weight_decay`` (0),
    ``correct_bias`` (True); group keys ``rank``, ``proj`` ('random'), ``scale_type``
    ('channel'), ``scale`` (1), ``update_proj_gap`` (200), ``proj_type`` ('std' | 'reverse_std' |
    'left' | 'right'), ``seed`` (0), ``norm_growth_limiter`` (True). Memory per projected weight:
    the two moments of R and the limiter's norm (the Gaussian P is regenerated from its seed).
    """

    _rule = "apollo"
    _group_defaults = _APOLLO_DEFAULTS  # 'scale' is APOLLO's own (the projector's scale is not used)
    _basis_key = "proj"

    def _hyper(self, group):
        scale = float(group.get("scale", _APOLLO_DEFAULTS["scale"]))
        if not scale > 0.0:
            raise ValueError(f"param group 'scale' = {scale}; expected > 0")
        scale_type = group.get("scale_type", _APOLLO_DEFAULTS["scale_type"])
        if scale_type not in ("channel", "tensor"):
            raise ValueError(f"param group 'scale_type' = {scale_type!r}; expected 'channel' or 'tensor'")
        return dict(super()._hyper(group), apollo_scale=scale, tensor_scale=scale_type == "tensor",
                    norm_growth_limiter=bool(group.get("norm_growth_limiter", True)))


class Muon(_WprojOptimizer):
    """Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks"; the
    reference ``SingleDeviceMuon``): M ← M + (1−β)(G − M); U = (1−β)G + βM (Nesterov) or M;
    O = NS₅(U), five quintic Newton–Schulz iterations (3.4445, −4.7750, 2.0315) towards the polar
    factor of U; W ← W(1 − lr·wd) − lr·s·O with s = max(1, m/n)^½ (``scaling='shape'``, the
    reference) or 0.2·√max(m, n) (``'match_adam'``, Moonlight, so AdamW's lr and wd carry over).
    For hidden weight matrices (a convolution filter is seen as (out, in·kh·kw)); a 1-D parameter
    raises ValueError: train embeddings, the head, biases and gains with AdamW.

    Parameters: ``lr`` (0.02), ``weight_decay`` (0), ``momentum`` (0.95), ``nesterov`` (True),
    ``ns_steps`` (5), ``scaling`` ('shape').
    """

    _rule = "muon"

    def __init__(self, params, lr=0.02, weight_decay=0.0, momentum=0.95, nesterov=True, ns_steps=5, scaling="shape"):
        if not lr >= 0.0:
            raise ValueError(f"argument 'lr' = {lr}; expected >= 0")
        if not weight_decay >= 0.0:
            raise ValueError(f"argument 'weight_decay' = {weight_decay}; expected >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"argument 'momentum' = {momentum}; expected a value in [0, 1)")
        if int(ns_steps) < 1:
            raise ValueError(f"argument 'ns_steps' = {ns_steps}; expected >= 1")
        if scaling not in ("shape", "match_adam"):
            raise ValueError(f"argument 'scaling' = {scaling!r}; expected 'shape' or 'match_adam'")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_steps=int(ns_steps), scaling=scaling))

    def _settings(self, group, p):
        return self._rule, 0, "svd", "std", 1, 1.0, 0

    def _hyper(self, group):
        return {"lr": float(group["lr"]), "weight_decay": float(group["weight_decay"]),
                "momentum": float(group["momentum"]), "nesterov": bool(group["nesterov"]),
                "ns_steps": float(group["ns_steps"]), "match_adam": group["scaling"] == "match_adam"}
