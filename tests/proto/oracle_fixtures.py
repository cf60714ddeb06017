"""Black-box callables served by the oracle tests (``tests.proto.oracle_fixtures:NAME``)."""

from __future__ import annotations

import os
import time

import numpy as np


def total(X: np.ndarray) -> np.ndarray:
    """Sum of coordinates (a well-behaved black box)."""
    return X.sum(axis=1)


def raises(X: np.ndarray) -> np.ndarray:
    """Always fails, like a broken instrument."""
    raise RuntimeError("sensor offline")


def nan_first(X: np.ndarray) -> np.ndarray:
    """Returns NaN for the first point."""
    y = X.sum(axis=1)
    y[0] = np.nan
    return y


def wrong_length(X: np.ndarray) -> np.ndarray:
    """Returns one value too many."""
    return np.zeros(X.shape[0] + 1)


def sleepy(X: np.ndarray) -> np.ndarray:
    """Sleeps FEDZOO_TEST_SLEEP_S seconds (default 1), then returns the coordinate sums."""
    time.sleep(float(os.environ.get("FEDZOO_TEST_SLEEP_S", "1")))
    return X.sum(axis=1)
