"""The FZooS paper's federated Ackley and Levy (``paper-ackley``, ``paper-levy``).

f_i(x) = g(c1_i ⊙ (z − c2_i)), z = 20x − 10, c1_ij = 0.1 + C (p_ij − 1/N) and
c2_ij = C (q_ij − 1/N) with one Dirichlet(1/N) vector over the clients per coordinate
for each; checked against a loop-by-loop transcription of the formulas, exact gradients
against finite differences, and the scale of F at the start point.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedzoo import RunConfig, run_federation
from fedzoo.objectives import PROBLEMS, CountingObjective, make_problem

NAMES = ("paper-ackley", "paper-levy")


def ackley_loop(u: np.ndarray) -> float:
    d = len(u)
    norm = math.sqrt(sum(v * v for v in u))
    cos_mean = sum(math.cos(math.pi * v) for v in u) / d
    return -20 * math.exp(-0.2 * norm / math.sqrt(d)) - math.exp(cos_mean) + 20 + math.e


def levy_loop(u: np.ndarray) -> float:
    w = [1 + (v - 1) / 4 for v in u]
    d = len(w)
    total = math.sin(math.pi * w[0]) ** 2
    for j in range(1, d - 1):  # the paper code's middle sum: from the second coordinate
        total += (w[j] - 1) ** 2 * (1 + 10 * math.sin(math.pi * w[j] + 1) ** 2)
    return total + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)


LOOPS = {"paper-ackley": ackley_loop, "paper-levy": levy_loop}


def test_registered_with_unknown_optimum_and_uniform_weights():
    for name in NAMES:
        assert name in PROBLEMS
        p = make_problem(name, dim=6, clients=4, heterogeneity=0.5, seed=1)
        assert p.name == name and p.optimum_value is None and p.optimum_x is None
        assert p.is_synthetic and p.num_clients == 4 and p.dim == 6
        np.testing.assert_array_equal(p.weights, np.full(4, 0.25))
        assert p.info == {"dim": 6, "clients": 4, "heterogeneity": 0.5, "seed": 1}
        assert np.all((p.x0 >= 0) & (p.x0 <= 1))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("heterogeneity", [0.0, 0.5, 5.0])
def test_values_follow_the_formulas_at_many_points_at_once(name, heterogeneity):
    N, d = 3, 7
    p = make_problem(name, dim=d, clients=N, heterogeneity=heterogeneity, seed=2)
    c1 = np.stack([f.scale for f in p.objectives])
    c2 = np.stack([f.shift for f in p.objectives])
    # per coordinate the client averages are exactly 0.1 and 0 (Dirichlet components sum to 1)
    np.testing.assert_allclose(c1.mean(axis=0), 0.1, atol=1e-15)
    np.testing.assert_allclose(c2.mean(axis=0), 0.0, atol=1e-15)
    assert np.all(c1 >= 0.1 - heterogeneity / N - 1e-15) and np.all(c2 >= -heterogeneity / N - 1e-15)
    if heterogeneity == 0:
        np.testing.assert_array_equal(c1, 0.1)
        np.testing.assert_array_equal(c2, 0.0)
    X = np.random.default_rng(0).uniform(size=(5, d))
    for i, f in enumerate(p.objectives):
        want = [LOOPS[name](c1[i] * (20 * x - 10 - c2[i])) for x in X]
        np.testing.assert_allclose(f.value(X), want, rtol=1e-12)
        np.testing.assert_allclose(f(X), want, rtol=1e-12)  # the counted call, same values
    F = [np.mean([LOOPS[name](c1[i] * (20 * x - 10 - c2[i])) for i in range(N)]) for x in X]
    np.testing.assert_allclose([p.global_value(x) for x in X], F, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [1, 2, 8])
def test_exact_gradients_match_finite_differences(name, dim):
    p = make_problem(name, dim=dim, clients=4, heterogeneity=5.0, seed=3)
    X = np.random.default_rng(1).uniform(0.05, 0.95, size=(4, dim))
    h = 1e-6
    for f in p.objectives:
        G = f.gradient(X)
        assert G.shape == X.shape
        for k, x in enumerate(X):
            fd = np.array([(f.value((x + h * e)[None]) - f.value((x - h * e)[None]))[0] / (2 * h)
                           for e in np.eye(dim)])
            np.testing.assert_allclose(G[k], fd, rtol=1e-5, atol=1e-6)
    x = X[0]
    np.testing.assert_allclose(p.global_gradient(x), np.mean([f.gradient(x[None])[0] for f in p.objectives], 0))


def test_ackley_gradient_is_finite_where_the_argument_is_zero():
    p = make_problem("paper-ackley", dim=3, clients=2, heterogeneity=0.0, seed=0)
    x = np.full(3, 0.5)  # z = 0 and c2 = 0 at C = 0: u = 0, the minimum of every client
    np.testing.assert_array_equal(p.objectives[0].gradient(x[None]), 0.0)
    assert p.global_value(x) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("name", "low", "high"), [("paper-ackley", 4.3, 4.8), ("paper-levy", 130, 220)])
def test_scale_at_the_start_point_as_in_the_paper_setting(name, low, high):
    """d = 300, N = 5, C = 0.5: F(x0) is about 4.53 (Ackley) and 157 (Levy); seeds 0-2
    give 4.670, 4.448, 4.483 and 202.5, 144.4, 155.5."""
    values = [make_problem(name, dim=300, clients=5, heterogeneity=0.5, seed=s) for s in range(3)]
    values = [p.global_value(p.x0) for p in values]
    assert all(low < v < high for v in values)
    assert abs(np.median(values) - {"paper-ackley": 4.53, "paper-levy": 157}[name]) < 0.05 * np.median(values)


def test_same_seed_same_problem_and_another_seed_differs():
    for name in NAMES:
        a, b, c = (make_problem(name, dim=5, clients=3, seed=s) for s in (1, 1, 2))
        assert np.array_equal(a.x0, b.x0) and not np.array_equal(a.x0, c.x0)
        assert np.array_equal(a.objectives[1].scale, b.objectives[1].scale)
        assert not np.array_equal(a.objectives[1].shift, c.objectives[1].shift)


@pytest.mark.parametrize("name", NAMES)
def test_a_run_reports_F_without_an_optimum_and_counts_every_query(name, tmp_path):
    p = make_problem(name, dim=6, clients=3, heterogeneity=0.5, seed=0)
    p.objectives = [CountingObjective(o) for o in p.objectives]
    cfg = RunConfig.from_mapping({"method": "fedzo", "rounds": 2, "local-steps": 2, "rgf-directions": 3})
    res = run_federation(p, cfg, out_dir=tmp_path, workers=1)
    assert res.num_queries == sum(o.points_seen for o in p.objectives)
    assert res.summary["problem"]["optimum_value"] is None
    assert res.history[0]["value"] == pytest.approx(p.global_value(p.x0), rel=1e-12)
    assert all(r["reported_value"] == pytest.approx(r["value"], rel=1e-12) for r in res.history)
