"""wproj — weight-matrix projection methods (Python package over the C++ headers).

Decompositions (randomized / truncated / incremental SVD, orthonormalisation, DCT), subspaces and
null spaces, LEACE concept erasure, weight editing (``wproj.editing``: DeTox, AlphaEdit, DAMA,
INLP, ThinkEdit, WeightEditor), model merging (``wproj.merging``, every method of the registry;
``wproj.merge`` runs a mergekit YAML file), LoRA factors from weights (``wproj.lowrank``),
safetensors files (``wproj.io``) and GaLore-style optimizers for PyTorch (``wproj.torch``, imported
on demand), computed by the same C++ code as the library, on NumPy arrays.

Arrays: float32 and float64 matrices that are C- or F-contiguous are read in place (no copy);
float16 is converted once to float32, integers and bool once to float64, other strides once to
C order; complex and object arrays raise ``TypeError``. Results are float32 when every input is
float32, float64 otherwise. The GIL is released while the C++ code runs.

Errors: invalid arguments raise ``ValueError`` (``TypeError`` for unsupported dtypes), numerical
failures raise :class:`wproj.NumericalError` (an ``ArithmeticError``), file errors ``OSError``;
the message is the C++ one, naming the argument, its value and what was expected.
"""

from __future__ import annotations

import numpy as _np

from . import _core
from ._core import NumericalError

__version__ = _core.__version__

__all__ = [
    "NumericalError", "randomized_svd", "truncated_svd", "IncrementalSVD", "orthonormalize",
    "dct_matrix", "dct", "idct", "Subspace", "null_space", "LeaceEraser", "LeaceFitter",
    "AlphaEdit", "detox_subspace", "editing", "merging", "lowrank", "io", "merge",
]


def randomized_svd(A, rank, *, oversampling=10, power_iterations=2, seed=0, method="power",
                   normalization="auto", tol=None, krylov_block_size=None, return_error=False):
    """Randomized truncated SVD ``A ≈ U @ diag(S) @ Vt`` (Halko–Martinsson–Tropp).

    Parameters
    ----------
    A : (m, n) array_like, float32 or float64 (read in place when C- or F-contiguous).
    rank : int >= 1, the number k of singular triplets (a cap when ``tol`` is given).
    oversampling : int >= 0, extra sketch columns p (sketch size k + p). Default 10.
    power_iterations : int >= 0, or -1 for automatic. Default 2.
    seed : int, the seed of wproj's counter-based generator: same seed, same bits.
    method : ``'power'`` (subspace iteration) or ``'krylov'`` (block Krylov).
    normalization : ``'auto'``, ``'lu'``, ``'orthonormalize'`` or ``'none'``: how power iterates
        are re-normalised.
    tol : float in (0, 1) or None: fixed-accuracy mode, ``‖A − USVt‖_F ≤ tol·‖A‖_F``.
    krylov_block_size : int or None: block size of ``method='krylov'`` (default k + p).
    return_error : also return the a-posteriori estimate of ``‖A − USVt‖_F / ‖A‖_F``.

    Returns
    -------
    U : (m, k), S : (k,) descending, Vt : (k, n) — NumPy's orientation, in A's dtype
    (float32 or float64); k = min(rank, m, n). Signs: the largest-magnitude entry of each
    column of U is positive. With ``return_error=True``, a 4th item: the error estimate.

    Raises
    ------
    ValueError: rank < 1, oversampling < 0, non-finite entries in A, unknown method…
    NumericalError: the small SVD did not converge, or ``tol`` was not reached within ``rank``.
    """
    U, S, Vt, err = _core.randomized_svd(
        A, int(rank), int(oversampling), int(power_iterations), int(seed), str(method),
        str(normalization), -1.0 if tol is None else float(tol),
        -1 if krylov_block_size is None else int(krylov_block_size))
    return (U, S, Vt, err) if return_error else (U, S, Vt)


def truncated_svd(A, rank=None, *, method="auto"):
    """Deterministic truncated SVD: the top ``rank`` singular triplets of A (all when None).

    ``method``: ``'auto'`` (Gram route for tall/wide or small matrices, else divide and conquer),
    ``'bdc'`` (Eigen's BDCSVD) or ``'gram'`` (eigendecomposition of the smaller Gram matrix,
    accumulated in float64). Returns ``(U, S, Vt)`` as :func:`randomized_svd`.
    Raises ValueError (rank < 1, non-finite entries, empty A) or NumericalError (no convergence).
    """
    return _core.truncated_svd(A, -1 if rank is None else int(rank), str(method))


def orthonormalize(X, *, method="auto"):
    """An orthonormal basis Q (m×k) of the columns of X (m×k, m ≥ k), Q R = X.

    ``method``: ``'auto'`` (CholeskyQR2 when well conditioned, then shifted CholeskyQR3, then
    Householder), ``'householder'``, ``'cholesky-qr2'``, ``'shifted-cholesky-qr3'``.
    Raises ValueError for m < k or non-finite entries.
    """
    return _core.orthonormalize(X, str(method))


def dct_matrix(n, dtype=_np.float64):
    """The orthonormal DCT-II matrix C (n×n): ``C[k, j] = a_k cos(π(2j+1)k / 2n)``, so that
    ``C @ x == scipy.fft.dct(x, norm='ortho')``. ``dtype``: float32 or float64. ValueError for n < 1."""
    dt = _np.dtype(dtype)
    if dt not in (_np.float32, _np.float64):
        raise TypeError(f"dct_matrix: dtype {dt} is not supported; expected float32 or float64")
    return _core.dct_matrix(int(n), dt == _np.float32)


def dct(X, axis=-1):
    """Orthonormal DCT-II of the 2-D array X along ``axis`` (0 or 1, -1 = 1):
    ``scipy.fft.dct(X, axis=axis, norm='ortho')``, computed with wproj's fast batched DCT."""
    axis = int(axis)
    if axis < 0:
        axis += 2
    return _core.dct(X, axis, False)


def idct(X, axis=-1):
    """Inverse of :func:`dct` (orthonormal DCT-III): ``scipy.fft.idct(X, axis=axis, norm='ortho')``."""
    axis = int(axis)
    if axis < 0:
        axis += 2
    return _core.dct(X, axis, True)


def _kind_of(*arrays):
    """float32 when every array is float32 (or float16), float64 otherwise."""
    for a in arrays:
        dt = _np.asarray(a).dtype if not hasattr(a, "dtype") else a.dtype
        if dt not in (_np.float32, _np.float16):
            return _np.float64
    return _np.float32


class IncrementalSVD:
    """A thin SVD ``X = U diag(S) Vᵀ`` kept up to date under low-rank changes (Brand).

    ``update(A, B)`` for ``X += A @ B.T``, ``append_columns(C)`` for ``X = [X C]``,
    ``append_rows(R)`` for ``X = [X; R]``. U and V are re-orthonormalised every
    ``reorthonormalization_period`` updates (default 10).

    Parameters: ``max_rank`` (keep at most this many triplets, None = no limit), ``tol`` (drop
    singular values below tol·σ_max), ``dtype`` (float32 or float64).
    Start with ``initialize(A)`` (exact SVD of A) or ``initialize_zero(rows, cols)``.
    """

    def __init__(self, max_rank=None, *, tol=None, reorthonormalization_period=None, dtype=_np.float64):
        dt = _np.dtype(dtype)
        if dt not in (_np.float32, _np.float64):
            raise TypeError(f"IncrementalSVD: dtype {dt} is not supported; expected float32 or float64")
        self.dtype = dt
        self._t = _core.IncrementalSVD32() if dt == _np.float32 else _core.IncrementalSVD64()
        if max_rank is not None:
            self._t.set_max_rank(int(max_rank))
        if tol is not None:
            self._t.set_tolerance(float(tol))
        if reorthonormalization_period is not None:
            self._t.set_period(int(reorthonormalization_period))

    def _cast(self, a):
        return _np.asarray(a, dtype=self.dtype)

    def initialize(self, A):
        """Starts from the exact (truncated) SVD of A. Returns self."""
        self._t.initialize(self._cast(A))
        return self

    def initialize_zero(self, rows, cols):
        """Starts from X = 0 of shape rows×cols (rank 0). Returns self."""
        self._t.initialize_zero(int(rows), int(cols))
        return self

    def update(self, A, B):
        """X ← X + A Bᵀ with A (m×c), B (n×c). Returns self."""
        self._t.update(self._cast(A), self._cast(B))
        return self

    def append_columns(self, C):
        """X ← [X C] with C (m×c). Returns self."""
        self._t.append_columns(self._cast(C))
        return self

    def append_rows(self, R):
        """X ← [X; R] with R (c×n). Returns self."""
        self._t.append_rows(self._cast(R))
        return self

    def reorthonormalize(self):
        """Re-orthonormalises U and V now without changing X. Returns self."""
        self._t.reorthonormalize()
        return self

    @property
    def U(self):
        """m×r left singular vectors."""
        return self._t.U()

    @property
    def S(self):
        """The r singular values, descending."""
        return self._t.S()

    @property
    def Vt(self):
        """r×n right singular vectors (rows)."""
        return self._t.V().T

    @property
    def rank(self):
        return self._t.rank()

    @property
    def shape(self):
        return (self._t.rows(), self._t.cols())

    @property
    def orthogonality_error(self):
        """max(‖UᵀU − I‖_F, ‖VᵀV − I‖_F) of the current factors."""
        return self._t.orthogonality_error()

    def reconstruct(self):
        """U diag(S) Vt."""
        return (self.U * self.S) @ self.Vt


def _side(side):
    if side not in ("left", "right"):
        raise ValueError(f"argument 'side' = {side!r}; expected 'left' or 'right'")
    return side


class Subspace:
    """A linear subspace of Rⁿ held as an orthonormal basis Q (n×k).

    Projections never form the n×n projector: ``project(X, side='left')`` is ``Q (Qᵀ X)``,
    ``side='right'`` is ``(X Q) Qᵀ``; ``project_out`` is ``X − project(X)``.
    Build with :meth:`from_columns`, :meth:`from_rows` or :meth:`from_orthonormal`.
    """

    def __init__(self, core):
        self._s = core

    @property
    def dtype(self):
        return _np.dtype(_np.float32) if isinstance(self._s, _core.Subspace32) else _np.dtype(_np.float64)

    @classmethod
    def _make(cls, dtype):
        return _core.Subspace32 if dtype == _np.float32 else _core.Subspace64

    @classmethod
    def from_columns(cls, K, tol=None):
        """The span of the columns of K (n×m): left singular vectors with σ > tol·σ_max
        (default ``eps·max(n, m)``, SciPy's ``orth`` rule). float32 in, float32 subspace."""
        core = cls._make(_kind_of(K))
        return cls(core.from_columns(K, -1.0 if tol is None else float(tol)))

    @classmethod
    def from_rows(cls, A, tol=None):
        """The row space of A (m×n), a subspace of Rⁿ (same rank rule)."""
        return cls.from_columns(_np.asarray(A).T, tol)

    @classmethod
    def from_orthonormal(cls, Q):
        """The span of Q's columns, which must already be orthonormal (checked; ValueError)."""
        core = cls._make(_kind_of(Q))
        return cls(core.from_orthonormal(Q))

    @property
    def basis(self):
        """The orthonormal basis Q (n×k)."""
        return self._s.basis()

    @property
    def dim(self):
        """k, the dimension of the subspace."""
        return self._s.dim()

    @property
    def ambient_dim(self):
        """n, the dimension of the surrounding space."""
        return self._s.ambient_dim()

    def project(self, X, side="left"):
        """Orthogonal projection onto the subspace: ``Q Qᵀ X`` (left; X has n rows) or
        ``X Q Qᵀ`` (right; X has n columns). ValueError on a shape mismatch."""
        return self._s.project(X, _side(side))

    def project_out(self, X, side="left"):
        """Projection onto the orthogonal complement: ``X − Q Qᵀ X`` (left) or ``X − X Q Qᵀ`` (right)."""
        return self._s.project_out(X, _side(side))

    def _other(self, other):
        if not isinstance(other, Subspace):
            raise TypeError("expected a wproj.Subspace")
        if type(other._s) is not type(self._s):
            raise TypeError(f"subspaces of different dtypes ({self.dtype} and {other.dtype})")
        return other._s

    def complement(self):
        """The orthogonal complement (dimension n − k)."""
        return Subspace(self._s.complement())

    def sum(self, other, tol=None):
        """span(Q₁) + span(Q₂)."""
        return Subspace(self._s.sum(self._other(other), -1.0 if tol is None else float(tol)))

    def intersection(self, other, tol=None):
        """span(Q₁) ∩ span(Q₂) (principal vectors with sin θ ≤ tol, default √eps)."""
        return Subspace(self._s.intersection(self._other(other), -1.0 if tol is None else float(tol)))

    def principal_angles(self, other):
        """The min(k₁, k₂) principal angles to ``other``, in radians, ascending
        (``scipy.linalg.subspace_angles`` sorted ascending)."""
        return self._s.principal_angles(self._other(other))

    def overlap(self, other):
        """‖Q₁ᵀQ₂‖²_F / max(1, min(k₁, k₂)) in [0, 1]: 1 when one contains the other, 0 when orthogonal."""
        return self._s.overlap(self._other(other))

    def __repr__(self):
        return f"Subspace(dim={self.dim}, ambient_dim={self.ambient_dim}, dtype={self.dtype})"


def null_space(A, rtol=None):
    """An orthonormal basis (n×k) of the null space of A (m×n): the right singular vectors whose
    singular values are ≤ rtol·σ_max (default ``eps·max(m, n)``), as ``scipy.linalg.null_space``."""
    return _core.null_space(A, -1.0 if rtol is None else float(rtol))


class LeaceEraser:
    """A fitted LEACE concept eraser (concept-erasure's ``LeaceEraser``):
    ``eraser(X) = X − ((X − bias) @ proj_right.T) @ proj_left.T`` applied to the rows of X.

    ``proj_left`` (d×k) = W⁺U, ``proj_right`` (k×d) = (WU)ᵀ, ``bias`` (d,) the mean of x, or None
    for a linear eraser.
    """

    def __init__(self, proj_left, proj_right, bias=None):
        dt = _kind_of(proj_left, proj_right)
        affine = bias is not None
        b = _np.zeros(_np.shape(proj_left)[0], dt) if bias is None else bias
        core = _core.LeaceEraser32 if dt == _np.float32 else _core.LeaceEraser64
        self._e = core(proj_left, _np.asarray(proj_right), b, affine)

    @classmethod
    def _wrap(cls, core):
        self = cls.__new__(cls)
        self._e = core
        return self

    @classmethod
    def fit(cls, X, Z, **kwargs):
        """Fits an eraser on X (n×d) and concept Z: integer class labels (n,) or values (n,)/(n, z).
        Keyword arguments are those of :class:`LeaceFitter`."""
        Z = _np.asarray(Z)
        if Z.dtype.kind in "iub" and Z.ndim == 1:
            z_dim = int(Z.max()) + 1 if Z.size else 1
        else:
            z_dim = 1 if Z.ndim == 1 else Z.shape[1]
        X = X if hasattr(X, "shape") else _np.asarray(X)
        kwargs.setdefault("dtype", _kind_of(X))
        return LeaceFitter(X.shape[1], z_dim, **kwargs).update(X, Z).eraser

    def __call__(self, X):
        """Erases the concept from the rows of X (n×d)."""
        return self._e.erase(X)

    @property
    def proj_left(self):
        return self._e.left()

    @property
    def proj_right(self):
        return self._e.right().T

    @property
    def bias(self):
        return self._e.bias() if self._e.affine() else None

    @property
    def P(self):
        """The d×d (oblique) projection I − proj_left @ proj_right."""
        return self._e.projector()


class LeaceFitter:
    """Streaming LEACE fit (concept-erasure's ``LeaceFitter``): ``update(X, Z)`` adds a batch,
    ``.eraser`` builds the eraser from everything seen so far.

    Parameters: ``x_dim``, ``z_dim`` (number of classes for integer labels), ``method``
    (``'leace'`` or ``'orth'``), ``affine`` (keep the mean, default True), ``constrain_cov_trace``
    (default True), ``shrinkage`` (default True), ``svd_tol`` (default 0.01), ``dtype``.
    """

    def __init__(self, x_dim, z_dim, method="leace", *, affine=True, constrain_cov_trace=True,
                 shrinkage=True, svd_tol=0.01, dtype=_np.float64):
        dt = _np.dtype(dtype)
        if dt not in (_np.float32, _np.float64):
            raise TypeError(f"LeaceFitter: dtype {dt} is not supported; expected float32 or float64")
        core = _core.LeaceFitter32 if dt == _np.float32 else _core.LeaceFitter64
        self.dtype = dt
        self.x_dim, self.z_dim = int(x_dim), int(z_dim)
        self._f = core(self.x_dim, self.z_dim, str(method), bool(affine), bool(shrinkage),
                       bool(constrain_cov_trace), float(svd_tol))

    def update(self, X, Z):
        """Adds a batch: X (n×x_dim), Z integer labels (n,) in [0, z_dim) or values (n, z_dim)."""
        Z = _np.asarray(Z)
        if Z.dtype.kind in "iub" and Z.ndim == 1:
            self._f.update(X, Z.astype(_np.int64, copy=False), True)
        else:
            if Z.ndim == 1:
                Z = Z.reshape(-1, 1)
            self._f.update(X, Z, False)
        return self

    @property
    def eraser(self):
        """The :class:`LeaceEraser` for the samples seen so far."""
        return LeaceEraser._wrap(self._f.eraser())

    @property
    def sigma_xx(self):
        """Σxx as the eraser uses it (shrunk, or Bessel-corrected)."""
        return self._f.sigma_xx()

    @property
    def n(self):
        """Number of samples seen."""
        return self._f.count()


from . import editing, io, lowrank, merging  # noqa: E402  (after the core names they use)
from .editing import AlphaEdit, detox_subspace  # noqa: E402


def merge(config_path, out, *, threads=None, memory_budget=None, dry_run=False):
    """Runs a merge YAML file (mergekit's format) exactly as ``wproj merge CONFIG -o OUT`` does.

    ``out``: the output ``.safetensors`` file or folder; ``threads``: tensors merged at once
    (None: the hardware threads); ``memory_budget``: e.g. ``"8GB"`` or a number of bytes (None:
    half the RAM); ``dry_run``: validate and plan only, write nothing.

    Returns the JSON report as a dict (with ``dry_run=True``: ``{"dry_run": True, "plan": text}``).
    Raises ValueError with the command's message for a bad configuration or input (nothing is
    written then), and RuntimeError when this build lacks the command-line tool's dependencies
    (yaml-cpp, nlohmann-json, CLI11).
    """
    import json
    import os
    import tempfile

    if threads is not None and (int(threads) != threads or threads < 1):
        raise ValueError(f"argument 'threads' = {threads!r}; expected an integer >= 1 or None")
    budget = "" if memory_budget is None else str(memory_budget)
    fd, report = tempfile.mkstemp(prefix="wproj-merge-", suffix=".json")
    os.close(fd)
    try:
        _, text = _core.merge_config(os.fspath(config_path), os.fspath(out), 0 if threads is None else int(threads),
                                     budget, bool(dry_run), "" if dry_run else report)
    finally:
        os.unlink(report)
    if dry_run:
        return {"dry_run": True, "plan": text}
    return json.loads(text)


def __getattr__(name):
    # `wproj.torch` is imported on first use, so that `import wproj` works without torch.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'wproj' has no attribute {name!r}")
