"""Black boxes for the Flower tests (``tests.flower.fixtures:NAME`` in a node config)."""

from __future__ import annotations

import numpy as np


def sphere(X: np.ndarray) -> np.ndarray:
    """sum_j (x_j - 0.3)^2."""
    return ((X - 0.3) ** 2).sum(axis=1)


def broken(X: np.ndarray) -> np.ndarray:
    """Always fails, like an instrument that went offline."""
    raise RuntimeError("instrument offline")


NOT_CALLABLE = 42
