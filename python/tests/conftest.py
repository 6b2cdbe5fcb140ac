import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def decaying(m, n, rng, dtype=np.float64, decay=lambda i: 1.0 / (i + 1)):
    """A random m×n matrix with singular values decay(i) and its exact factors."""
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s = np.array([decay(i) for i in range(k)])
    return ((u * s) @ v.T).astype(dtype), s
