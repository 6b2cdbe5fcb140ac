"""Weight-editing estimators: DeTox / ProFS and AlphaEdit (LEACE is in the top-level package)."""

from __future__ import annotations

import numpy as _np

from . import _core

__all__ = ["detox_subspace", "AlphaEdit"]


def _dtype(*arrays):
    for a in arrays:
        if _np.asarray(a).dtype not in (_np.float32, _np.float16):
            return _np.float64
    return _np.float32


def detox_subspace(preferred, toxic, rank=2, *, centering=True, return_details=False):
    """The DeTox (ProFS) "toxic" subspace from paired embeddings (Uppaal et al.).

    ``preferred`` and ``toxic`` are N×D embeddings whose row i describes the same pair.
    T = (preferred − toxic)/2; with ``centering`` the top right singular vector v₀ of
    ``preferred`` is projected out of T first; the subspace is spanned by the top ``rank`` right
    singular vectors of T. Edit a weight with ``sub.project_out(W, side='left')`` (the MLP output
    matrix, ``W ← (I − P) W``).

    Returns a :class:`wproj.Subspace` of R^D, or with ``return_details=True`` the tuple
    ``(subspace, singular_values, v0)``. ValueError for mismatched shapes or a rank above
    min(N, D − centering).
    """
    from . import Subspace

    core, s, v0 = _core.detox(preferred, toxic, int(rank), bool(centering), _dtype(preferred, toxic) == _np.float32)
    sub = Subspace(core)
    return (sub, s, v0) if return_details else sub


class AlphaEdit:
    """Null-space constrained key→value edits of a linear layer W (m×d, y = W k) (Fang et al. 2025).

    ``AlphaEdit(preserved_keys)`` with K₀ (d×n₀, keys as columns): P projects onto the eigenvectors
    of K₀K₀ᵀ/n₀ with eigenvalue < ``threshold`` (default 2e-2, as the official code).
    ``update(K, R)`` with new keys K (d×u) and residuals R = V_target − W K (m×u) returns
    Δ (m×d) solving Δᵀ = (P(KKᵀ + C) + λI)⁻¹ P K Rᵀ (λ = ``lam``, default 10), then adds KKᵀ
    to C so that later edits protect these keys too. Apply with ``W += Δ``; Δ K₀ ≈ 0.
    """

    def __init__(self, preserved_keys=None, *, threshold=2e-2, lam=10.0, second_moment=None, dtype=None):
        src = preserved_keys if preserved_keys is not None else second_moment
        if src is None:
            raise ValueError("AlphaEdit: pass preserved_keys (d×n₀) or second_moment (d×d)")
        dt = _np.dtype(dtype) if dtype is not None else _dtype(src)
        self.dtype = dt
        self._a = (_core.AlphaEdit32 if dt == _np.float32 else _core.AlphaEdit64)(float(threshold), float(lam))
        if preserved_keys is not None:
            self._a.set_preserved_keys(preserved_keys)
        else:
            self._a.set_preserved_second_moment(second_moment)

    def update(self, K, R):
        """Δ (m×d) for keys K (d×u) and residuals R (m×u); then C += K Kᵀ."""
        return self._a.update(K, R, True)

    def compute_update(self, K, R):
        """Δ as :meth:`update`, without changing C."""
        return self._a.update(K, R, False)

    @property
    def null_space(self):
        """The :class:`wproj.Subspace` P projects onto (the null space of the preserved keys)."""
        from . import Subspace

        return Subspace(self._a.null_space())

    @property
    def cache(self):
        """C, the running K Kᵀ of the keys edited so far (d×d)."""
        return self._a.cache()
