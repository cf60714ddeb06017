"""The example method of docs/development.md, ``fedzo-gauss``: registered by its module alone, its
estimator checked against the math and its queries counted. Over Flower it is covered, like every
registered method, by ``tests/flower/test_parity.py`` (same seed, same history).
"""

from __future__ import annotations

import numpy as np

from fedzoo.config import METHODS, RunConfig
from fedzoo.engine import run_federation
from fedzoo.methods import get_method
from fedzoo.methods.fedzo_gauss import gaussian_smoothing_gradient
from fedzoo.objectives.problems import make_problem


def test_it_is_registered_by_its_module_alone():
    assert "fedzo-gauss" in METHODS
    assert get_method("fedzo-gauss").has_sync is False
    assert RunConfig.from_mapping({"method": "fedzo-gauss"}).method == "fedzo-gauss"


def test_the_estimate_averages_to_the_gradient_of_a_linear_function():
    a = np.linspace(-1.0, 1.0, 8)
    f = lambda X: X @ a  # the smoothed linear function is itself: E ĝ = a exactly
    x = np.full(8, 0.5)
    rng = np.random.default_rng(0)
    est = np.mean([gaussian_smoothing_gradient(f, x, f(x[None])[0], rng, 10, 1e-3)
                   for _ in range(3000)], axis=0)
    np.testing.assert_allclose(est, a, atol=0.05)  # 30 000 directions: error ~ |a| / sqrt(n)


def test_points_outside_the_box_are_mirrored_and_every_point_is_queried_once():
    seen = []

    def f(X):
        assert np.all((X >= 0) & (X <= 1))
        seen.append(len(X))
        return X.sum(axis=1)

    x = np.zeros(5)  # on a corner: about every forward point leaves the box
    g = gaussian_smoothing_gradient(f, x, 0.0, np.random.default_rng(1), 7, 0.01)
    assert seen == [7] and np.all(np.isfinite(g))


def test_runs_in_process_with_every_query_counted():
    p = make_problem("quadratic", dim=10, clients=3, heterogeneity=1.0, seed=0)
    cfg = RunConfig.from_mapping({"method": "fedzo-gauss", "rounds": 4, "local-steps": 3, "rgf-directions": 4})
    res = run_federation(p, cfg, workers=1)
    T, Q, N = 3, 4, 3
    per_round = N * (1 + T * Q + (T - 1))  # f(x_{r-1}), Q per step, the iterates but the last
    assert res.history[1]["queries"] == per_round
    assert res.num_queries == 4 * per_round + N  # and f_i(x_R) at the end (no sync exchange)
    assert res.history[-1]["value"] < res.history[0]["value"]
