"""Weight-editing estimators: DeTox / ProFS and AlphaEdit (LEACE is in the top-level package)."""

from __future__ import annotations

import numpy as _np

from . import _core

__all__ = ["detox_subspace", "AlphaEdit", "Dama", "Inlp", "ThinkEdit", "WeightEditor", "EditReport"]


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


def _typed(name, dtype):
    return getattr(_core, name + ("32" if dtype == _np.float32 else "64"))


class Dama:
    """DAMA's projection subspace (Limisiewicz et al., ICLR 2024) from inputs X (n×d) and target
    deltas Y (n×t): optional whitening X ← X(λC + XᵀX)⁻¹, then PLS2 (NIPALS, centred) with
    ``rank`` components; the subspace is the span of the PLS x-weights B (d×r), and the edit is
    W ← (I − QQᵀ)W ("after" mode, output side) or W(I − QQᵀ) ("before" mode, input side).

    Parameters: ``rank`` (PLS components, ≤ min(n − 1, d)), ``whitening`` (the d×d second moment
    C, or None), ``lam`` (λ, default 2e4), ``max_iter`` / ``tol`` (NIPALS, defaults 500, 1e-6).
    After :meth:`fit`: ``subspace`` (a :class:`wproj.Subspace`), ``x_weights`` (B),
    ``projector`` (I − QQᵀ, d×d). ValueError for bad shapes or parameters.
    """

    def __init__(self, rank=128, *, whitening=None, lam=2e4, max_iter=500, tol=1e-6):
        self.rank, self.whitening, self.lam, self.max_iter, self.tol = int(rank), whitening, float(lam), int(max_iter), float(tol)
        self.subspace = None
        self.x_weights = None

    def fit(self, X, Y):
        """Fits on X (n×d) and Y (n×t). Returns self."""
        from . import Subspace

        dt = _dtype(X, Y)
        core, self.x_weights = _typed("dama_fit", dt)(X, Y, self.rank, self.whitening, self.lam, self.max_iter, self.tol)
        self.subspace = Subspace(core)
        return self

    @property
    def projector(self):
        """M = I − QQᵀ (d×d), the DAMA projection (idempotent, symmetric)."""
        Q = self.subspace.basis
        return _np.eye(Q.shape[0], dtype=Q.dtype) - Q @ Q.T


class Inlp:
    """Iterative Nullspace Projection (Ravfogel et al., ACL 2020): trains a linear classifier of
    the labels, removes its weight directions from the data, and repeats ``iterations`` times (or
    until the probe accuracy falls to ``min_accuracy``).

    ``classifier``: ``'svm'`` (squared-hinge linear SVM, as LinearSVC) or ``'logistic'``
    (logistic regression); ``C``, ``fit_intercept``, ``balanced`` are the classifier's settings.
    After :meth:`fit`: ``subspace`` (the removed directions, a :class:`wproj.Subspace`),
    ``null_space`` (its complement), ``projector`` (P, d×d: the projection onto the null space),
    ``accuracies`` (probe accuracy of each iteration, before its projection), ``majority`` (the
    majority-class rate), ``weights`` (the classifiers' weight rows). :meth:`transform` applies P
    to the rows of X.
    """

    def __init__(self, iterations=10, *, classifier="svm", min_accuracy=0.0, C=1.0, fit_intercept=True,
                 balanced=False):
        self.iterations, self.classifier, self.min_accuracy = int(iterations), str(classifier), float(min_accuracy)
        self.C, self.fit_intercept, self.balanced = float(C), bool(fit_intercept), bool(balanced)

    def fit(self, X, y):
        """Fits on X (n×d) and integer labels y (n,). Returns self."""
        from . import Subspace

        d = _typed("inlp_fit", _dtype(X))(X, _np.asarray(y), self.classifier, self.iterations, self.min_accuracy,
                                          self.C, self.fit_intercept, self.balanced)
        self.subspace, self.null_space = Subspace(d["subspace"]), Subspace(d["null_space"])
        self.accuracies, self.majority, self.weights = list(d["accuracies"]), float(d["majority"]), list(d["weights"])
        return self

    @property
    def projector(self):
        """P = Q_null Q_nullᵀ (d×d), the projection onto the null space of the probes."""
        Q = self.null_space.basis
        return Q @ Q.T

    def transform(self, X):
        """The rows of X with the removed directions projected out: X Pᵀ = X P."""
        return self.subspace.project_out(_np.asarray(X), side="right")


class ThinkEdit:
    """ThinkEdit's direction (Sun et al. 2025), also the difference-in-means steering direction:
    v = (mean(A) − mean(B)) / ‖mean(A) − mean(B)‖ from activations A (n₁×d) and B (n₂×d).

    After :meth:`fit`: ``direction`` (v, (d,)), ``gap`` (‖mean(A) − mean(B)‖) and ``subspace``
    (span{v}). Edit the chosen heads' o_proj column blocks with :class:`WeightEditor`
    (``input_range=(h·d_head, d_head)``, output side).
    """

    def fit(self, A, B):
        """Fits the direction from the rows of A and B. Returns self."""
        from . import Subspace

        self.direction, self.gap = _typed("mean_difference_fit", _dtype(A, B))(A, B)
        self.subspace = Subspace.from_orthonormal(self.direction.reshape(-1, 1))
        return self


class EditReport(dict):
    """What :meth:`WeightEditor.apply` did: ``delta_norm`` (‖W' − W‖_F over the edited block),
    ``weight_norm`` (‖W‖_F before), ``norm_before`` / ``norm_after`` (per removed direction q_i:
    ‖q_iᵀW‖ on the output side, ‖Wq_i‖ on the input side) and ``storage_side``."""

    __getattr__ = dict.__getitem__


class WeightEditor:
    """Applies a removal subspace (orthonormal Q) to a weight W of y = Wx + b stored as (out, in):
    W ← (I − αQQᵀ)W on the ``'output'`` side, W(I − αQQᵀ) on the ``'input'`` side.

    ``transposed=True``: W is stored (in, out) (GPT-2 Conv1D); ``strength`` α in [0, 1];
    ``output_range`` / ``input_range``: ``(start, count)`` of the block to edit, in logical
    coordinates (count None: to the end); ``accumulate_in_double``: edit float32 weights in
    float64 and round once. :meth:`apply` returns ``(edited copy, EditReport)``.
    """

    def __init__(self, side="output", *, transposed=False, strength=1.0, output_range=None, input_range=None,
                 accumulate_in_double=False):
        if side not in ("output", "input"):
            raise ValueError(f"argument 'side' = {side!r}; expected 'output' or 'input'")
        self.side, self.transposed, self.strength = side, bool(transposed), float(strength)
        self.output_range, self.input_range = output_range, input_range
        self.accumulate_in_double = bool(accumulate_in_double)

    @staticmethod
    def _range(r, name):
        if r is None:
            return -1, -1
        if len(r) != 2:
            raise ValueError(f"argument '{name}' = {r!r}; expected (start, count)")
        return int(r[0]), -1 if r[1] is None else int(r[1])

    def apply(self, W, subspace):
        """The edited copy of W and an :class:`EditReport`. ``subspace``: a :class:`wproj.Subspace`
        or an orthonormal basis Q (k columns). W is never modified."""
        from . import Subspace

        if not isinstance(subspace, Subspace):
            subspace = Subspace.from_orthonormal(subspace)
        W = _np.asarray(W) if not hasattr(W, "dtype") else W
        dt = _np.float32 if W.dtype in (_np.float32, _np.float16) else _np.float64
        if subspace.dtype != dt:
            subspace = Subspace.from_orthonormal(subspace.basis.astype(dt))
        o0, oc = self._range(self.output_range, "output_range")
        i0, ic = self._range(self.input_range, "input_range")
        out, rep = _typed("weight_edit", dt)(W, subspace._s, self.side, self.transposed, self.strength, o0, oc, i0, ic,
                                              self.accumulate_in_double)
        return out, EditReport(rep)
