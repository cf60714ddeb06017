"""BLAS thread control.

The linear algebra here is many small (n <= a few hundred) factorisations, for which a
multi-threaded BLAS is slower than one thread, and catastrophically slower (100x measured
on a 2-core box) when several processes or threads compete for the cores. Engines run
clients in parallel threads with one BLAS thread each instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas_env() -> None:
    """Ask for one BLAS thread through the environment (before numpy is imported).

    Respects values the user has set.
    """
    for key in BLAS_ENV:
        os.environ.setdefault(key, "1")


@contextlib.contextmanager
def blas_threads(limit: int = 1) -> Iterator[None]:
    """Limit BLAS threads inside the block when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variable route still applies
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield
