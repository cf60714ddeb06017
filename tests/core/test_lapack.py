"""The GIL-free LAPACK calls give scipy's results bit for bit, on either path."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from fedzoo.surrogates import _lapack


def spd(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("n", [1, 7, 300, 301])
def test_potri_and_potrs_equal_scipys_wrappers_bit_for_bit(monkeypatch, fast, n):
    if not fast:  # the fallback: scipy's own wrappers
        monkeypatch.setattr(_lapack, "_DPOTRI", None)
        monkeypatch.setattr(_lapack, "_DPOTRS", None)
    c = np.linalg.cholesky(spd(n, n))
    want, info = linalg.lapack.dpotri(c, lower=1)
    assert info == 0
    got = _lapack.potri_lower(c)
    assert np.array_equal(np.tril(got), np.tril(want))
    assert np.allclose(np.tril(got), np.tril(np.linalg.inv(c @ c.T)), rtol=1e-8, atol=1e-12)
    rng = np.random.default_rng(0)
    for b in (rng.standard_normal(n), rng.standard_normal((n, 3))):
        x = _lapack.cho_solve_lower(c, b)
        assert x.shape == b.shape
        assert np.array_equal(x, linalg.cho_solve((c, True), b, check_finite=False))
        assert np.allclose(c @ (c.T @ x), b)


def test_the_inputs_are_not_changed_and_failures_raise():
    c = np.linalg.cholesky(spd(5, 1))
    before = c.copy()
    b = np.ones(5)
    _lapack.potri_lower(c)
    _lapack.cho_solve_lower(c, b)
    assert np.array_equal(c, before) and np.array_equal(b, np.ones(5))
    singular = np.zeros((3, 3))  # a zero diagonal: potri reports info > 0
    with pytest.raises(np.linalg.LinAlgError, match="potri"):
        _lapack.potri_lower(singular)
    with pytest.raises(ValueError):  # a right-hand side of the wrong length
        _lapack.cho_solve_lower(c, np.ones(4))
