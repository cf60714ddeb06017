"""Benchmark: do the hot operations of a FZooS step overlap in two client threads?

The engine runs clients in threads (one BLAS thread each), so a call that holds the GIL
serialises them. For each operation: the time to run it 2 x n times in one thread, and n
times in each of two threads at once; speed-up = the ratio (2 = perfect overlap, 1 = fully
serialised, < 1 = worse than serial).

    python simulations/benchmarks/gil.py [--repeats 300]

Operations (d = 300, M = 10 000, n = 300 GP points, the engine's sizes):
``s @ V`` and ``np.dot(s, V)`` (the RFF correction's vector-matrix product, float32),
scipy's ``dpotri`` wrapper and :func:`fedzoo.surrogates._lapack.potri_lower`, scipy's
``cho_solve`` and :func:`fedzoo.surrogates._lapack.cho_solve_lower`, numpy's Cholesky.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
from scipy import linalg  # noqa: E402

from fedzoo.surrogates import _lapack  # noqa: E402


def speedup(op: Callable[[], object], n: int) -> tuple[float, float]:
    """(seconds for 2n calls in one thread, seconds for n calls in each of two threads)."""
    def loop() -> None:
        for _ in range(n):
            op()

    loop()  # warm-up
    t0 = time.perf_counter()
    loop()
    loop()
    serial = time.perf_counter() - t0
    threads = [threading.Thread(target=loop) for _ in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return serial, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    V = rng.standard_normal((10_000, 300)).astype(np.float32)
    s = rng.standard_normal(10_000).astype(np.float32)
    A = rng.standard_normal((300, 300))
    K = A @ A.T + 300 * np.eye(300)
    c = np.linalg.cholesky(K)
    y = rng.standard_normal(300)
    ops: dict[str, Callable[[], object]] = {
        "s @ V (matmul, float32)": lambda: s @ V,
        "np.dot(s, V)": lambda: np.dot(s, V),
        "scipy.linalg.lapack.dpotri": lambda: linalg.lapack.dpotri(c, lower=1),
        "_lapack.potri_lower (ctypes)": lambda: _lapack.potri_lower(c),
        "scipy.linalg.cho_solve": lambda: linalg.cho_solve((c, True), y, check_finite=False),
        "_lapack.cho_solve_lower (ctypes)": lambda: _lapack.cho_solve_lower(c, y),
        "np.linalg.cholesky": lambda: np.linalg.cholesky(K),
    }
    print("| operation | 2n calls, one thread (s) | n calls in each of two threads (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, op in ops.items():
        serial, parallel = speedup(op, args.repeats)
        print(f"| {name} | {serial:.3f} | {parallel:.3f} | {serial / parallel:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
