"""LoRA adapters from weights: the C++ ``wproj/lowrank/lora.hpp`` on NumPy arrays.

A task vector τ = W_ft − W_base (2-D, PyTorch's ``nn.Linear.weight`` layout (out, in)) becomes
LoRA factors B (out, r) and A (r, in) with ``scale * B @ A`` the best rank-r approximation of τ
(PEFT's convention: ΔW = (lora_alpha / r)·B·A). See docs/lora.md for the rank rules, the solver
choice and the budget allocator.
"""

from __future__ import annotations

from . import _core
from ._core import LoraFactors

__all__ = ["LoraFactors", "extract", "apply", "remove", "spectrum", "allocate_budget"]


def extract(fine_tuned, base=None, *, rank=None, energy=None, rel_error=None, sv_epsilon=None,
            max_rank=None, scale=1.0, split="balanced", solver="auto", seed=0, oversampling=10,
            power_iterations=-1):
    """LoRA factors of τ = ``fine_tuned − base`` (or of ``fine_tuned`` itself when ``base`` is None).

    Parameters
    ----------
    fine_tuned, base : (out, in) arrays, float32 or float64 (read in place; never modified).
    rank : int >= 1, a fixed rank (clamped to min(out, in)). Default when no rule is given: 16.
    energy : float in (0, 1], the smallest rank keeping that fraction of ‖τ‖²_F.
    rel_error : float in (0, 1), the smallest rank with ‖τ − scale·B·A‖_F ≤ rel_error·‖τ‖_F.
    sv_epsilon : float >= 0, keep the singular values > sv_epsilon (mergekit's ``--sv-epsilon``).
        At most one of rank / energy / rel_error / sv_epsilon.
    max_rank : int >= 1 or None, a cap on any rule.
    scale : float > 0, PEFT's lora_alpha / r the factors are stored for: ``scale * B @ A ≈ τ``.
    split : ``'balanced'`` (B = U√Σ, A = √ΣVᵀ, mergekit's), ``'b'`` (B = UΣ) or ``'a'`` (A = ΣVᵀ).
    solver : ``'auto'`` (by cost), ``'exact'`` or ``'randomized'``.
    seed, oversampling, power_iterations : the randomized solver's settings (-1: automatic q).

    Returns
    -------
    LoraFactors with ``B``, ``A``, ``sigma``, ``scale``, ``rank``, ``relative_error``,
    ``norm_sq``, ``error_sq`` (measured ‖τ − scale·B·A‖²_F) and ``randomized``. Directions below
    τ's numerical rank are dropped, so a rank-deficient τ gets a smaller rank and τ = 0 rank 0.

    Raises
    ------
    ValueError: shapes differ, non-finite entries, two rules given, a rule outside its range.
    """
    return _core.lora_extract(fine_tuned, base, rank=rank, energy=energy, rel_error=rel_error,
                              sv_epsilon=sv_epsilon, max_rank=max_rank, scale=float(scale), split=split,
                              solver=solver, seed=int(seed), oversampling=int(oversampling),
                              power_iterations=int(power_iterations))


def apply(W, B, A, scale=1.0, *, transposed=False):
    """A new array ``W + scale * B @ A`` (W is not modified). With ``transposed=True`` W is
    (in, out) and gets ``(B @ A).T`` — PEFT's embedding layout (lora_embedding_B, lora_embedding_A).
    Raises ValueError on shape mismatches (naming W, B or A)."""
    return _core.lora_apply(W, B, A, float(scale), subtract=False, transposed=bool(transposed))


def remove(W, B, A, scale=1.0, *, transposed=False):
    """A new array ``W − scale * B @ A``: the inverse of :func:`apply`."""
    return _core.lora_apply(W, B, A, float(scale), subtract=True, transposed=bool(transposed))


def spectrum(tau, cap, *, seed=0):
    """``(sigma, norm_sq)``: the leading ``cap`` singular values of τ (float64, descending) and
    ‖τ‖²_F — the input of :func:`allocate_budget`."""
    return _core.lora_spectrum(tau, int(cap), seed=int(seed))


def allocate_budget(spectra, bytes_per_rank, budget, *, min_rank=1, force_greedy=False):
    """Every tensor's rank under a byte budget, minimising the summed squared error.

    ``spectra`` is a list of ``(sigma, norm_sq)`` (from :func:`spectrum`), ``bytes_per_rank`` the
    cost of one unit of rank per tensor ((out + in) × bytes per element), ``budget`` in bytes.
    Returns a dict: ``ranks``, ``bytes``, ``error_sq`` (predicted), ``gap_bound`` (the greedy
    allocation is within it of the optimum; 0 when solved exactly) and ``exact``.
    Raises ValueError when the budget is below ``min_rank`` for every tensor.
    """
    return _core.lora_allocate_budget([(s, float(n)) for s, n in spectra], [int(b) for b in bytes_per_rank],
                                      int(budget), min_rank=int(min_rank), force_greedy=bool(force_greedy))
