"""Surrogates: exact GP with analytic gradients and uncertainty; RFF features."""

from fedzoo.surrogates.gp import GaussianProcess, GPHyper, fit_hyperparameters, nearest_indices
from fedzoo.surrogates.kernels import KERNELS, get_kernel, squared_distances
from fedzoo.surrogates.rff import RandomFourierFeatures, fit_rff_weights

__all__ = [
    "KERNELS",
    "GPHyper",
    "GaussianProcess",
    "RandomFourierFeatures",
    "fit_hyperparameters",
    "fit_rff_weights",
    "get_kernel",
    "nearest_indices",
    "squared_distances",
]
