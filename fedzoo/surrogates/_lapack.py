"""LAPACK's ``dpotri`` and ``dpotrs`` called without holding the GIL.

scipy's f2py wrappers (``scipy.linalg.lapack.dpotri``, ``cho_solve``) hold the GIL for
the whole LAPACK call, so the engine's client threads serialise on every GP inverse and
solve (measured: two threads inverting 300 x 300 matrices ran 0.9x as fast as one). The
same routines of the same library (scipy's bundled LAPACK, exported for Cython as
``scipy.linalg.cython_lapack``) called through :mod:`ctypes`, which releases the GIL
during a foreign call, give bit-identical results: the arguments are laid out exactly as
f2py lays them out (a Fortran-ordered copy of the input, ``uplo = 'L'``).

Where the capsules cannot be read (another scipy build), the scipy wrappers are used.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
from scipy import linalg

_INT = ctypes.POINTER(ctypes.c_int)
_DBL = ctypes.POINTER(ctypes.c_double)
_CHAR = ctypes.c_char_p
_SIGNATURES = {
    # dpotri(uplo, n, a, lda, info)
    "dpotri": (b"void (char *, int *, __pyx_t_5scipy_6linalg_13cython_lapack_d *, int *, int *)",
               (_CHAR, _INT, _DBL, _INT, _INT)),
    # dpotrs(uplo, n, nrhs, a, lda, b, ldb, info)
    "dpotrs": (b"void (char *, int *, int *, __pyx_t_5scipy_6linalg_13cython_lapack_d *, int *, "
               b"__pyx_t_5scipy_6linalg_13cython_lapack_d *, int *, int *)",
               (_CHAR, _INT, _INT, _DBL, _INT, _DBL, _INT, _INT)),
}


def _load(name: str) -> Callable[..., None] | None:
    """The C function pointer behind ``scipy.linalg.cython_lapack``'s ``name``, as a
    ctypes function (None when this scipy does not export it with the known signature)."""
    try:
        from scipy.linalg import cython_lapack

        capsule = cython_lapack.__pyx_capi__[name]
        get_name = ctypes.pythonapi.PyCapsule_GetName
        get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        signature, argtypes = _SIGNATURES[name]
        if get_name(capsule) != signature:
            return None
        pointer = get_pointer(capsule, signature)
    except (ImportError, AttributeError, KeyError, ValueError):
        return None
    return ctypes.CFUNCTYPE(None, *argtypes)(pointer) if pointer else None


_DPOTRI = _load("dpotri")
_DPOTRS = _load("dpotrs")
_LOWER = b"L"


def _ref(value: int) -> ctypes.c_int:
    return ctypes.c_int(int(value))


def potri_lower(c: np.ndarray) -> np.ndarray:
    """``dpotri`` with ``uplo = 'L'`` on the lower Cholesky factor ``c`` (n x n): the lower
    triangle of (c c^T)^{-1} in a new Fortran-ordered array (upper triangle: c's).

    Raises:
        numpy.linalg.LinAlgError: LAPACK's info != 0.
    """
    if _DPOTRI is None:
        inv, info = linalg.lapack.dpotri(c, lower=1)
    else:
        inv = np.array(c, dtype=np.float64, order="F", copy=True)
        n, info_ref = inv.shape[0], ctypes.c_int(0)
        _DPOTRI(_LOWER, ctypes.byref(_ref(n)), inv.ctypes.data_as(_DBL), ctypes.byref(_ref(max(n, 1))),
                ctypes.byref(info_ref))
        info = info_ref.value
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed with info={info}.")
    return inv


def cho_solve_lower(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``scipy.linalg.cho_solve((c, True), b)`` (``dpotrs``, lower factor) for a vector or
    an n x k matrix ``b``; returns a new array shaped like ``b``.

    Raises:
        numpy.linalg.LinAlgError: LAPACK's info != 0.
    """
    if _DPOTRS is None:
        return linalg.cho_solve((c, True), b, check_finite=False)
    a = np.asarray(c, dtype=np.float64, order="F")
    x = np.array(b, dtype=np.float64, order="F", copy=True)
    n = a.shape[0]
    if x.shape[0] != n:
        raise ValueError(f"Expected b with {n} rows, got shape {x.shape}.")
    nrhs = 1 if x.ndim == 1 else x.shape[1]
    info_ref = ctypes.c_int(0)
    _DPOTRS(_LOWER, ctypes.byref(_ref(n)), ctypes.byref(_ref(nrhs)), a.ctypes.data_as(_DBL),
            ctypes.byref(_ref(max(n, 1))), x.ctypes.data_as(_DBL), ctypes.byref(_ref(max(n, 1))),
            ctypes.byref(info_ref))
    if info_ref.value != 0:
        raise np.linalg.LinAlgError(f"potrs failed with info={info_ref.value}.")
    return x
