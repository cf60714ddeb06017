"""A query budget is a hard limit: no method spends past it, every query counted.

The round driver starts a round only if the methods' declared per-exchange bounds
(:meth:`fedzoo.methods.base.Method.query_bound`) keep the queries within the budget
(:mod:`fedzoo.budget`); these tests check the bounds hold for every registered method
and that runs at several budgets end within them.
"""

from __future__ import annotations

import pytest

from fedzoo.budget import exchange_bound
from fedzoo.config import RunConfig
from fedzoo.engine import run_federation
from fedzoo.methods import get_method, method_names
from fedzoo.objectives import make_problem
from fedzoo.results import client_queries_of
from tests.settings import LIGHT

DIM, CLIENTS = 8, 3


def problem():
    return make_problem("quadratic", dim=DIM, clients=CLIENTS, heterogeneity=0.5, seed=0)


def cfg(method: str, **extra) -> RunConfig:
    return RunConfig.from_mapping({"method": method, "rounds": 4, **LIGHT, "init-points": 4,
                                   "popsize": 6, "square-candidates": 3, **extra})


@pytest.mark.parametrize("method", method_names())
def test_every_method_declares_a_bound_that_holds(method: str) -> None:
    config = cfg(method, fraction=0.67)
    run = run_federation(problem(), config, workers=1, final_evaluation=False)
    has_sync = get_method(method).has_sync
    seen: set[int] = set()
    for row in run.history[1:]:
        for cid, n in client_queries_of(row).items():
            bound = exchange_bound(config, DIM, "train", cid not in seen)
            if has_sync:
                bound += exchange_bound(config, DIM, "sync", False)
            assert 0 < n <= bound, (method, row["round"], cid, n, bound)
            seen.add(cid)


@pytest.mark.parametrize("method", method_names())
@pytest.mark.parametrize("budget", [1, 40, 97, 250])
def test_no_run_passes_its_budget(method: str, budget: int) -> None:
    config = cfg(method, rounds=30)
    prob = problem()
    run = run_federation(prob, config, workers=1, query_budget=budget)
    spent = sum(o.num_queries for o in prob.objectives)  # what the black boxes saw
    assert run.num_queries <= budget
    assert method == "fo" or run.num_queries == spent  # fo's exact gradients are charged apart
    assert all(row["queries"] <= budget for row in run.history)
    # it stopped because the next round's worst case (plus the evaluation) could not fit
    rounds = len(run.history) - 1
    if rounds < config.rounds:
        nxt = CLIENTS * exchange_bound(config, DIM, "train", rounds == 0)
        if get_method(method).has_sync:
            nxt += CLIENTS * exchange_bound(config, DIM, "sync", False)
        assert run.num_queries + nxt + CLIENTS > budget

def test_a_method_without_a_bound_cannot_run_with_a_budget(monkeypatch) -> None:
    from fedzoo.errors import ConfigError

    method = get_method("fedzo")
    monkeypatch.setattr(type(method), "query_bound", lambda self, *a: None)
    with pytest.raises(ConfigError, match="query bound"):
        run_federation(problem(), cfg("fedzo"), workers=1, query_budget=100)
    run_federation(problem(), cfg("fedzo", rounds=1), workers=1)  # without a budget: fine
