"""Gradient estimators: finite differences (RGF, coordinate-wise) and the GP surrogate."""

from fedzoo.estimators.finite_difference import (
    coordinate_gradient,
    orthonormal_directions,
    rgf_gradient,
)
from fedzoo.estimators.surrogate import TrajectorySurrogate, box_points

__all__ = [
    "TrajectorySurrogate",
    "box_points",
    "coordinate_gradient",
    "orthonormal_directions",
    "rgf_gradient",
]
