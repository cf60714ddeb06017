"""Black boxes for the Flower tests (``tests.flower.fixtures:NAME`` in a node config)."""

from __future__ import annotations

import numpy as np


def sphere(X: np.ndarray) -> np.ndarray:
    """sum_j (x_j - 0.3)^2."""
    return ((X - 0.3) ** 2).sum(axis=1)


def broken(X: np.ndarray) -> np.ndarray:
    """Always fails, like an instrument that went offline."""
    raise RuntimeError("instrument offline")


def shifted_sphere(*, partition_id: int, num_clients: int, shift: float = 0.3):
    """An objective factory (run-config ``objective-factory``): client i's black box is
    the sphere centred at shift + 0.1 i / N."""
    centre = shift + 0.1 * partition_id / num_clients
    return lambda X: ((X - centre) ** 2).sum(axis=1)


NOT_CALLABLE = 42
