r"""Local optimisers as pure (init, update) pairs over flat float64 vectors.

``state = opt.init(x)``; ``step, state = opt.update(g, state)``; the caller applies
``x <- Pi_box(x - step)``. States are NamedTuples and are never mutated.

SGD: ``step = lr g``.
Adam (Kingma & Ba): ``m_t = b1 m + (1-b1) g``, ``v_t = b2 v + (1-b2) g^2``,
``step = lr (m_t/(1-b1^t)) / (sqrt(v_t/(1-b2^t)) + eps)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from fedzoo.errors import UnknownNameError


class SGDState(NamedTuple):
    count: int


class AdamState(NamedTuple):
    count: int
    mu: np.ndarray
    nu: np.ndarray


class Optimizer(NamedTuple):
    init: Callable[[np.ndarray], NamedTuple]
    update: Callable[[np.ndarray, NamedTuple], tuple[np.ndarray, NamedTuple]]


def sgd(lr: float) -> Optimizer:
    """Plain gradient descent with learning rate ``lr``."""

    def init(x: np.ndarray) -> SGDState:
        return SGDState(0)

    def update(g: np.ndarray, state: NamedTuple) -> tuple[np.ndarray, SGDState]:
        return lr * g, SGDState(state.count + 1)  # type: ignore[attr-defined]

    return Optimizer(init, update)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam with learning rate ``lr`` (``b1``, ``b2``: moment decays; ``eps``: floor)."""

    def init(x: np.ndarray) -> AdamState:
        return AdamState(0, np.zeros_like(x), np.zeros_like(x))

    def update(g: np.ndarray, state: NamedTuple) -> tuple[np.ndarray, AdamState]:
        count = state.count + 1  # type: ignore[attr-defined]
        mu = b1 * state.mu + (1 - b1) * g  # type: ignore[attr-defined]
        nu = b2 * state.nu + (1 - b2) * g * g  # type: ignore[attr-defined]
        step = lr * (mu / (1 - b1**count)) / (np.sqrt(nu / (1 - b2**count)) + eps)
        return step, AdamState(count, mu, nu)

    return Optimizer(init, update)


OPTIMIZERS = {"sgd": sgd, "adam": adam}


def make_optimizer(name: str, lr: float) -> Optimizer:
    try:
        return OPTIMIZERS[name](lr)
    except KeyError:
        raise UnknownNameError(f"Unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}.") from None
