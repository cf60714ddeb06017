"""The black-box interface: validation, counting, budgets; synthetic problems' math."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo.errors import (
    BudgetExceededError,
    ConfigError,
    DomainError,
    NonFiniteError,
    ObjectiveError,
    ShapeError,
    UnknownNameError,
)
from fedzoo.objectives import PROBLEMS, CallableObjective, CountingObjective, make_problem


def test_callable_objective_counts_every_point_and_accepts_a_single_point():
    f = CallableObjective(lambda X: X.sum(1), dim=3)
    assert f(np.zeros((4, 3))).shape == (4,)
    assert f(np.full(3, 0.5))[0] == pytest.approx(1.5)
    assert f.num_queries == 5


@pytest.mark.parametrize(
    ("X", "error", "words"),
    [
        (np.zeros((2, 4)), ShapeError, "d=3"),
        (np.zeros((0, 3)), ShapeError, "at least one"),
        (np.array([[0.1, np.nan, 0.2]]), NonFiniteError, "finite"),
        (np.array([[0.1, 1.5, 0.2]]), DomainError, "unit box"),
        (np.zeros((2, 3, 1)), ShapeError, "n x d"),
    ],
)
def test_bad_points_are_rejected_before_evaluation_with_a_clear_message(X, error, words):
    seen = []
    f = CallableObjective(lambda X: seen.append(X) or X.sum(1), dim=3)
    with pytest.raises(error, match=words):
        f(X)
    assert not seen and f.num_queries == 0


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (lambda X: np.full(X.shape[0], np.nan), "non-finite"),
        (lambda X: np.zeros(X.shape[0] + 1), "must return"),
        (lambda X: ["a"] * X.shape[0], "not numbers"),
        (lambda X: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_bad_outputs_raise_a_clear_error(fn, words):
    f = CallableObjective(fn, dim=2, name="user-f")
    with pytest.raises((NonFiniteError, ObjectiveError), match=words):
        f(np.zeros((2, 2)))


def test_budget_is_charged_before_evaluating_and_all_or_nothing():
    seen = []
    f = CallableObjective(lambda X: seen.append(len(X)) or X.sum(1), dim=2, budget=5)
    f(np.zeros((3, 2)))
    with pytest.raises(BudgetExceededError, match="3 of 5 used, 2 left"):
        f(np.zeros((3, 2)))
    assert seen == [3] and f.num_queries == 3 and f.remaining == 2
    f(np.zeros((2, 2)))
    assert f.remaining == 0


def test_counting_wrapper_counts_what_reaches_the_inner_objective():
    inner = CallableObjective(lambda X: X.sum(1), dim=2)
    f = CountingObjective(inner)
    f(np.zeros((3, 2)))
    assert f.points_seen == 3 and inner.num_queries == 3


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_synthetic_problems_know_their_optimum_and_gradient(name):
    p = make_problem(name, dim=8, clients=4, heterogeneity=5.0, seed=3)
    assert p.is_synthetic and p.num_clients == 4 and p.dim == 8
    rng = np.random.default_rng(0)
    if p.optimum_value is not None:  # the paper's Ackley and Levy: F* unknown
        assert p.global_value(p.optimum_x) == pytest.approx(p.optimum_value, abs=1e-12)
        for _ in range(20):  # no random point beats the optimum
            assert p.global_value(rng.uniform(size=8)) >= p.optimum_value - 1e-12
    x = rng.uniform(0.1, 0.9, size=8)
    for f in p.objectives:
        h = 1e-6
        fd = np.array([(f.value((x + h * e)[None]) - f.value((x - h * e)[None]))[0] / (2 * h) for e in np.eye(8)])
        np.testing.assert_allclose(f.gradient(x[None])[0], fd, rtol=1e-5, atol=1e-7)


def test_quadratic_matches_the_paper_formula_and_heterogeneity_averages_out():
    p = make_problem("quadratic", dim=300, clients=5, heterogeneity=0.5, seed=0)
    assert p.optimum_value == pytest.approx(-0.025 + 1 / 3000)
    z = 20 * p.x0 - 10
    assert p.global_value(p.x0) == pytest.approx((np.sum(z * z + z) + 1) / 3000)
    a = np.stack([f.a for f in p.objectives])
    np.testing.assert_allclose(a.mean(0), 1.0)
    assert np.ptp(a) > 0.1  # the clients do differ
    np.testing.assert_allclose(p.global_gradient(p.optimum_x), 0.0, atol=1e-12)


def test_same_seed_same_problem_and_different_seed_differs():
    a = make_problem("levy", dim=5, clients=3, seed=1)
    b = make_problem("levy", dim=5, clients=3, seed=1)
    c = make_problem("levy", dim=5, clients=3, seed=2)
    assert np.array_equal(a.x0, b.x0) and not np.array_equal(a.x0, c.x0)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"name": "rosenbrock"}, UnknownNameError, "expected one of"),
        ({"name": "quadratic", "dim": 0}, ConfigError, "dim"),
        ({"name": "quadratic", "clients": -1}, ConfigError, "clients"),
        ({"name": "quadratic", "heterogeneity": float("nan")}, ConfigError, "heterogeneity"),
    ],
)
def test_bad_problem_arguments_give_clear_errors(kwargs, error, words):
    with pytest.raises(error, match=words):
        make_problem(**kwargs)
