"""``fedngopt``: nevergrad's NGOpt on the server, the clients evaluating its batches.

Registered with its option, every query counted and a query budget respected, the same
seed giving the same history (another seed another), checkpoint and resume giving the
uninterrupted history (the optimiser rebuilt from plain arrays), too few replies telling
nothing. Over Flower it is covered, like every registered method, by
``tests/flower/test_parity.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nevergrad")

from fedzoo import protocol  # noqa: E402
from fedzoo.config import METHODS, RunConfig  # noqa: E402
from fedzoo.engine import run_federation  # noqa: E402
from fedzoo.methods import get_method  # noqa: E402
from fedzoo.methods.ngopt import NGOptServerState, batch_size  # noqa: E402
from fedzoo.objectives import CountingObjective, make_problem  # noqa: E402
from fedzoo.results import client_queries_of  # noqa: E402
from fedzoo.state import ServerState  # noqa: E402

B = 6  # a small batch keeps the tests fast


def cfg(**extra: object) -> RunConfig:
    return RunConfig.from_mapping({"method": "fedngopt", "rounds": 5, "ng-batch": B, **extra})


def problem(counting: bool = True, clients: int = 3, dim: int = 6, seed: int = 1):
    p = make_problem("quadratic", dim=dim, clients=clients, heterogeneity=5.0, seed=seed)
    if counting:
        p.objectives = [CountingObjective(o) for o in p.objectives]
    return p


def strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_registered_with_its_option_and_batch_default():
    assert "fedngopt" in METHODS
    m = get_method("fedngopt")
    assert m.has_sync is False and set(m.options) == {"ng-batch"}
    default = RunConfig.from_mapping({"method": "fedngopt"})
    assert default.ng_batch == 0
    assert batch_size(default, 300) == 51 and batch_size(cfg(), 300) == B


def test_every_query_is_counted_and_the_budget_holds():
    p = problem()
    res = run_federation(p, cfg(rounds=50), workers=1, query_budget=100)
    seen = [o.points_seen for o in p.objectives]
    assert res.num_queries == sum(seen) <= 100
    # a round costs at most B + 2 per client: the run stops before one that could pass 100
    assert res.num_queries > 100 - 3 * (B + 2) - 3
    # round 1: f_i(x0), the B candidates and the recommendation
    assert client_queries_of(res.history[1]) == {c: B + 2 for c in range(3)}
    values = [r["value"] for r in res.history]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:]))  # only better reported points
    assert values[-1] < values[0]


def test_same_seed_same_history_another_seed_another():
    a = run_federation(problem(False), cfg(), workers=1)
    b = run_federation(problem(False), cfg(), workers=2)
    assert strip(a.history) == strip(b.history) and np.array_equal(a.x, b.x)
    c = run_federation(problem(False), cfg(seed=1), workers=1)
    assert strip(c.history) != strip(a.history)


def test_client_evaluates_the_batch_and_the_recommendation_in_one_counted_batch():
    config = cfg()
    p = problem()
    state = protocol.server_init(config, p.x0)
    msg = protocol.train_message(config, state)
    assert msg["ng-candidates"].shape == (B * 6,) and msg["ng-recommendation"].shape == (6,)
    assert 0.0 <= msg["ng-candidates"].min() and msg["ng-candidates"].max() <= 1.0
    cstate = protocol.new_client_state(config, 6)
    cstate, reply = protocol.client_train(config, p.objectives[0], cstate, msg, 0)
    X = msg["ng-candidates"].reshape(B, 6)
    np.testing.assert_allclose(reply["ng-values"], p.objectives[0].inner.value(X), rtol=1e-13)
    assert reply["num-queries"] == B + 2 == p.objectives[0].points_seen


def test_checkpoint_and_resume_give_the_uninterrupted_history(tmp_path):
    config = cfg(rounds=4)
    full = run_federation(problem(False), config, workers=1)
    run_federation(problem(False), config.replace(rounds=2), checkpoint_dir=tmp_path, workers=1)
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as z:
        assert z["server/ng-told"].shape == (2, B)
    resumed = run_federation(problem(False), config, checkpoint_dir=tmp_path, resume=True, workers=1)
    assert strip(resumed.history) == strip(full.history)


def test_state_round_trips_and_the_replay_asks_the_same_candidates():
    config = cfg()
    state = protocol.server_init(config, np.full(4, 0.5))
    rng = np.random.default_rng(0)
    for _ in range(3):
        msg = protocol.train_message(config, state)
        replies = {c: {"x": msg["x"], "value-start": 9.0, "num-queries": 1, "total-queries": 1,
                       "ng-values": rng.uniform(size=B), "ng-recommendation-value": rng.uniform()}
                   for c in (0, 1)}
        state, _ = protocol.aggregate_train(config, state, replies, {0: 0.5, 1: 0.5})
    back = ServerState.from_arrays(state.to_arrays(), config)
    assert isinstance(back, NGOptServerState) and not back.cache
    a, b = protocol.train_message(config, state), protocol.train_message(config, back)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_too_few_replies_tell_nothing_and_the_same_candidates_are_sent_again():
    config = cfg(**{"min-replies": 2})
    state = protocol.server_init(config, np.full(4, 0.5))
    before = protocol.train_message(config, state)
    reply = {"x": np.full(4, 0.5), "value-start": 5.0, "num-queries": 1, "total-queries": 1,
             "ng-values": np.zeros(B), "ng-recommendation-value": 5.0}
    new, agg = protocol.aggregate_train(config, state, {0: reply}, {0: 0.5, 1: 0.5})
    assert len(agg.replies) == 1 and new.ng_told.shape == (0, B)
    again = protocol.train_message(config, new)
    assert np.array_equal(again["ng-candidates"], before["ng-candidates"])


def test_runs_on_a_bbob_problem():
    pytest.importorskip("cocoex")
    p = make_problem("bbob:f1", dim=4, clients=3, seed=0)
    res = run_federation(p, cfg(rounds=4), workers=1)
    assert res.history[-1]["value"] < res.history[0]["value"]
