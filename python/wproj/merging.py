"""Model merging on arrays: one function per method of ``wproj/merging/``.

Every function takes the base weights ``base`` (2-D array θ₀) and a sequence of fine-tuned
weights ``models`` (θ_i, same shape), forms the task vectors τ_i = θ_i − θ₀ and returns
θ₀ + Δ where Δ is the method's merged task vector. float32 in, float32 out (float64 when any
input is float64). Shape mismatches and invalid parameters raise ``ValueError``.
"""

from __future__ import annotations

from . import _core

__all__ = ["task_arithmetic", "ties", "dare", "slerp", "model_stock", "iso_c", "iso_cts", "tsv", "opcm", "METHODS"]


def task_arithmetic(base, models, *, scale=1.0):
    """Task arithmetic (Ilharco et al. 2023): Δ = scale · Σ τ_i."""
    return _core.merge_task_arithmetic(base, list(models), float(scale))


def ties(base, models, *, density=0.2, scale=1.0):
    """TIES-merging (Yadav et al. 2023): keep the ``density`` fraction of largest-magnitude entries
    of each τ_i, elect each entry's sign from the sum of the trimmed τ_i, average the entries that
    agree with the elected sign (disjoint mean); Δ = scale · that mean."""
    return _core.merge_ties(base, list(models), float(density), float(scale))


def dare(base, models, *, drop_rate=0.5, scale=1.0, seed=0):
    """DARE (Yu et al. 2024): drop each entry of each τ_i with probability ``drop_rate`` (seeded,
    counter-based: the same seed gives the same mask), rescale the kept ones by 1/(1 − p), and sum;
    Δ = scale · Σ dropped-and-rescaled τ_i."""
    return _core.merge_dare(base, list(models), float(drop_rate), float(scale), int(seed))


def slerp(base, models, *, t=0.5, lerp_threshold=0.9995):
    """SLERP of exactly two task vectors viewed as flat vectors; falls back to linear interpolation
    when |cos Ω| > ``lerp_threshold`` or either vector is zero."""
    return _core.merge_slerp(base, list(models), float(t), float(lerp_threshold))


def model_stock(base, models):
    """Model Stock (Jang et al. 2024): Δ = r · mean(τ_i) with r = N·c / (1 + (N − 1)·c), c the mean
    pairwise cosine of the task vectors."""
    return _core.merge_model_stock(base, list(models))


def iso_c(base, models, *, scale=1.0):
    """Iso-C (Marczak et al. 2025): the sum of the task vectors with its singular values flattened
    to their mean, times ``scale``."""
    return _core.merge_iso_c(base, list(models), float(scale))


def iso_cts(base, models, *, scale=1.0, common_fraction=0.8):
    """Iso-CTS (Marczak et al. 2025): a common subspace (``common_fraction`` of the directions)
    plus task-specific directions, orthogonalised, with isotropic singular values."""
    return _core.merge_iso_cts(base, list(models), float(scale), float(common_fraction))


def tsv(base, models, *, scale=1.0):
    """TSV-Merge (Gargiulo et al. 2025): per-task low-rank SVD factors, decorrelated by
    orthogonalising the stacked singular vectors, times ``scale``."""
    return _core.merge_tsv(base, list(models), float(scale))


def opcm(base, models, *, alpha=0.5):
    """OPCM continual merging (Tang et al. 2025): models are merged one at a time, each new task
    vector projected off the subspace the merged ones already occupy (``alpha``: fraction of Σσ
    that defines the protected block). Constant memory in the number of models."""
    return _core.merge_opcm(base, list(models), float(alpha))


#: Name → function, for every merge method.
METHODS = {
    "task_arithmetic": task_arithmetic, "ties": ties, "dare": dare, "slerp": slerp,
    "model_stock": model_stock, "iso_c": iso_c, "iso_cts": iso_cts, "tsv": tsv, "opcm": opcm,
}
