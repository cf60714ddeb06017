"""How the server combines the clients' correction vectors (``aggregation``).

Each rule takes the vectors by client id, the clients' weights (renormalised over the
valid replies, summing to 1) and the run configuration:

* ``mean``: Σ_i p_i v_i.
* ``median``: the coordinate-wise median (unweighted).
* ``clip``: each v_i scaled down to at most ``clip-factor`` x the median norm of the
  replies, then the weighted mean — one hostile client moves the result by at most
  p_i x clip-factor x median norm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def weighted_mean(vectors: Mapping[int, Any], weights: Mapping[int, float], clip_factor: float) -> Any:
    return sum(weights[c] * vectors[c] for c in vectors)


def coordinate_median(vectors: Mapping[int, Any], weights: Mapping[int, float], clip_factor: float) -> Any:
    return np.median(np.stack([vectors[c] for c in vectors]), axis=0)


def clipped_mean(vectors: Mapping[int, Any], weights: Mapping[int, float], clip_factor: float) -> Any:
    norms = {c: float(np.linalg.norm(vectors[c])) for c in vectors}
    cap = clip_factor * float(np.median(list(norms.values())))
    return sum(
        weights[c] * vectors[c] * (min(1.0, cap / norms[c]) if norms[c] > 0 else 1.0)
        for c in vectors
    )


AGGREGATORS: dict[str, Callable[[Mapping[int, Any], Mapping[int, float], float], Any]] = {
    "mean": weighted_mean, "median": coordinate_median, "clip": clipped_mean,
}
