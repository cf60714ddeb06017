"""The round functions and the in-process engine: honest counting, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fedzoo
from fedzoo import protocol
from fedzoo.config import METHODS, RunConfig
from fedzoo.engine import run_federation
from fedzoo.errors import ConfigError, ObjectiveError
from fedzoo.objectives import CountingObjective, FederatedProblem, make_problem

SMALL = {"rounds": 3, "local-steps": 3, "rff-features": 200, "gp-history": 60, "rff-history": 80,
         "sync-points": 8, "sync-candidates": 30, "explore-candidates": 20, "explore-points": 2,
         "rgf-directions": 5}


def small_problem(counting: bool = True, clients: int = 3, dim: int = 10) -> FederatedProblem:
    p = make_problem("quadratic", dim=dim, clients=clients, heterogeneity=5.0, seed=1)
    if counting:
        p.objectives = [CountingObjective(o) for o in p.objectives]
    return p


@pytest.mark.parametrize("method", METHODS)
def test_reported_queries_equal_the_evaluations_the_objectives_saw(method):
    p = small_problem()
    res = run_federation(p, RunConfig.from_mapping({**SMALL, "method": method}), workers=1)
    seen = sum(o.points_seen for o in p.objectives)
    assert res.num_queries == seen > 0
    assert res.history[-1]["queries"] == seen
    # cumulative and monotone; row 0 is the start point
    q = [r["queries"] for r in res.history]
    assert q[0] == 0 and all(b >= a for a, b in zip(q, q[1:]))
    # every row carries the clients' reported value sum_i p_i f_i(x_r)
    for row in res.history:
        assert math.isfinite(row["reported_value"])
        assert row["reported_value"] == pytest.approx(row["value"], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("method", ["fzoos", "fedzo", "scaffold1", "zord"])
def test_same_seed_gives_identical_history_whatever_the_threads(method):
    cfg = RunConfig.from_mapping({**SMALL, "method": method, "seed": 7})
    a = run_federation(small_problem(False), cfg, workers=1)
    b = run_federation(small_problem(False), cfg, workers=3)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    c = run_federation(small_problem(False), cfg.replace(seed=8), workers=1)
    assert strip(c.history) != strip(a.history)


def test_query_accounting_per_round_matches_the_design():
    """FZooS per client and round: T iterates + (T-1) explore + 1 + sync points; round 1
    adds x0 and the initial design. FedZO: 1 + T Q + (T - 1)."""
    T, Q, N = 3, 5, 3
    res = run_federation(small_problem(), RunConfig.from_mapping({**SMALL, "method": "fzoos"}), workers=1)
    per_round = N * (T + (T - 1) * 2 + 1 + 8)
    assert res.history[1]["queries"] == per_round + N * (1 + 10)  # round 1: x0 and the initial design
    assert res.history[2]["queries"] - res.history[1]["queries"] == per_round
    res = run_federation(small_problem(), RunConfig.from_mapping({**SMALL, "method": "fedzo"}), workers=1)
    assert res.history[2]["queries"] - res.history[1]["queries"] == N * (T * Q + T)
    # one final evaluation at x_R (N queries) for a single-exchange method; none for fzoos
    assert res.history[-1]["queries"] - res.history[-2]["queries"] == N * (T * Q + T) + N


def test_minimize_never_calls_the_black_box_beyond_what_it_counts():
    calls = []

    def make(shift):
        def f(X):
            calls.append(len(X))
            return np.sum((X - shift) ** 2, axis=1)
        return f

    fns = [make(0.3), make(0.6)]
    res = fedzoo.minimize(fns, np.full(6, 0.9), method="fzoos", rounds=4, local_steps=3, seed=0,
                          rff_features=100, gp_history=50, sync_points=5, explore_points=2)
    assert res.num_queries == sum(calls)
    assert res.x.shape == (6,)
    assert res.history[-1]["value"] == pytest.approx(res.history[-1]["reported_value"])
    assert res.history[-1]["value"] < res.history[0]["value"]  # F = mean of the two improves
    res = fedzoo.minimize(fns, np.full(6, 0.9), method="fedzo", rounds=3, local_steps=2)
    assert math.isfinite(res.history[-1]["value"])


def test_a_failing_black_box_stops_the_run_with_a_clear_error():
    def bad(X):
        return np.where(X[:, 0] > 0.5, np.nan, 0.0)

    with pytest.raises(ObjectiveError, match="client 1 .* non-finite"):
        fedzoo.minimize([lambda X: X.sum(1), bad], np.full(3, 0.7), method="fedzo", rounds=2)


def test_fo_needs_exact_gradients():
    with pytest.raises(ObjectiveError, match="exact gradients"):
        fedzoo.minimize([lambda X: X.sum(1)], np.full(3, 0.5), method="fo", rounds=1)


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="expected one of"):
        fedzoo.minimize([lambda X: X.sum(1)], np.full(3, 0.5), method="fedavg")


def test_invalid_replies_never_change_the_global_state():
    cfg = RunConfig.from_mapping({**SMALL, "method": "scaffold2"})
    state = protocol.server_init(cfg, np.full(4, 0.5))
    good = {"x": np.full(4, 0.3), "num-queries": 3, "total-queries": 3, "value-start": 1.0,
            "scaffold-ci": np.ones(4)}
    bad = [
        {**good, "x": np.array([0.3, np.nan, 0.3, 0.3])},
        {**good, "x": np.full(40, 0.3)},
        {k: v for k, v in good.items() if k != "scaffold-ci"},
        {**good, "scaffold-ci": np.full(4, np.inf)},
        {**good, "value-start": float("nan")},
    ]
    for reply in bad:
        new, agg = protocol.aggregate_train(cfg, state, {0: reply}, {0: 1.0})
        assert np.array_equal(new.x, state.x) and new.scaffold_c is None and agg.rejected
    new, agg = protocol.aggregate_train(cfg, state, {0: good, 1: bad[0]}, {0: 0.5, 1: 0.5})
    np.testing.assert_allclose(new.x, 0.3)  # the valid reply alone, weight renormalised
    assert list(agg.replies) == [0] and agg.weights == {0: 1.0}


def test_queries_behind_a_lost_or_rejected_reply_are_counted_with_the_next_one(caplog):
    cfg = RunConfig.from_mapping({**SMALL, "method": "fedzo"})
    state = protocol.server_init(cfg, np.full(4, 0.5))
    reply = {"x": np.full(4, 0.3), "value-start": 1.0}
    state, agg = protocol.aggregate_train(
        cfg, state, {0: {**reply, "num-queries": 5, "total-queries": 5}}, {0: 1.0})
    assert agg.num_queries == 5
    # round 2's reply of client 0 is lost; round 3's says 5 more of its own, 15 in all
    state, agg = protocol.aggregate_train(
        cfg, state, {0: {**reply, "num-queries": 5, "total-queries": 15}}, {0: 1.0})
    assert agg.num_queries == 10 and state.query_totals == {0: 15}
    # a total that went down: the client restarted without its state
    state, agg = protocol.aggregate_train(
        cfg, state, {0: {**reply, "num-queries": 5, "total-queries": 5}}, {0: 1.0})
    assert agg.num_queries == 5 and "restarted without its saved state" in caplog.text
    back = protocol.ServerState.from_arrays(state.to_arrays())
    assert back.query_totals == state.query_totals


def test_client_state_round_trips_through_arrays():
    cfg = RunConfig.from_mapping({**SMALL, "method": "fzoos"})
    p = small_problem(False)
    st = protocol.new_client_state(cfg, p.dim)
    srv = protocol.server_init(cfg, p.x0)
    st, reply = protocol.client_train(cfg, p.objectives[0], st, protocol.train_message(cfg, srv), 0)
    srv, _ = protocol.aggregate_train(cfg, srv, {0: reply}, {0: 1.0})
    st, _ = protocol.client_sync(cfg, p.objectives[0], st, protocol.sync_message(cfg, srv), 0)
    back = protocol.ClientState.from_arrays(st.to_arrays(), cfg)
    assert np.array_equal(back.history.X, st.history.X) and back.gp_hyper == st.gp_hyper
    assert np.array_equal(back.rff_own, st.rff_own) and back.cached_value == st.cached_value
    assert back.history.first_id == st.history.first_id and st.rff_cache is not None
    assert np.array_equal(back.rff_cache.ids, st.rff_cache.ids)
    assert np.array_equal(back.rff_cache.gram, st.rff_cache.gram)


def test_history_buffer_drops_the_oldest_points():
    from fedzoo.history import QueryHistory

    h = QueryHistory(2, capacity=5)
    for i in range(4):
        h.add(np.full((2, 2), i), np.full(2, i))
    assert len(h) == 5 and list(h.y) == [1, 2, 2, 3, 3]
    assert list(h.ids) == [3, 4, 5, 6, 7]  # serial ids count on across drops
    h.add(np.zeros((7, 2)), np.arange(7.0))  # more than the capacity at once
    assert list(h.ids) == [10, 11, 12, 13, 14] and list(h.y) == [2, 3, 4, 5, 6]
    back = QueryHistory.from_arrays(h.X, h.y, 5, h.first_id)
    assert list(back.ids) == list(h.ids)


def test_fzoos_local_gradients_beat_rgf_along_a_real_run():
    """The paper's Fig. 5 claim, measured: per-local-step cosine to the client's true
    gradient of the surrogate gradient vs RGF with Q = 20 (full values in BENCHMARKS.md
    from simulations/benchmarks/gradient_quality.py)."""
    p = make_problem("quadratic", dim=100, clients=3, heterogeneity=5.0, seed=0)
    cos = {"fzoos": [], "fedzo": []}

    def observer(method):
        def see(cid, t, x, g, g_hat):
            gi = p.objectives[cid].gradient(x[None])[0]
            cos[method].append(g @ gi / np.linalg.norm(g) / np.linalg.norm(gi))
        return see

    for method in cos:
        cfg = RunConfig.from_mapping({"method": method, "rounds": 4, "rff-features": 1000})
        run_federation(p, cfg, observer=observer(method), workers=1)
    fz = np.mean(cos["fzoos"][len(cos["fzoos"]) // 4:])  # after round 1
    rgf = np.mean(cos["fedzo"])
    assert rgf == pytest.approx(np.sqrt(20 / 100), abs=0.1)  # RGF: ~sqrt(Q/d)
    assert fz > rgf + 0.2


@pytest.mark.parametrize("method", ["fzoos", "scaffold2", "fedzo"])
def test_a_resumed_run_ends_with_the_same_history_as_an_uninterrupted_one(tmp_path, method):
    cfg = RunConfig.from_mapping({**SMALL, "method": method, "rounds": 4})
    full = run_federation(small_problem(False), cfg, workers=1)
    run_federation(small_problem(False), cfg.replace(rounds=2), checkpoint_dir=tmp_path, workers=1)
    resumed = run_federation(small_problem(False), cfg, checkpoint_dir=tmp_path, resume=True, workers=2)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert np.array_equal(resumed.x, full.x)


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    from fedzoo.errors import ConfigError

    cfg = RunConfig.from_mapping({**SMALL, "method": "fedzo", "rounds": 2})
    run_federation(small_problem(False), cfg, checkpoint_dir=tmp_path, workers=1)
    with pytest.raises(ConfigError, match="belongs to another run"):
        run_federation(small_problem(False), cfg.replace(lr=0.5, rounds=3), checkpoint_dir=tmp_path,
                       resume=True)
    with pytest.raises(ConfigError, match="does not exist"):
        run_federation(small_problem(False), cfg, checkpoint_dir=tmp_path / "nothing", resume=True)


def test_partial_participation_is_reproducible_and_counts_only_participants():
    cfg = RunConfig.from_mapping({**SMALL, "method": "fzoos", "fraction": 0.5, "rounds": 4})
    p = make_problem("quadratic", dim=10, clients=6, heterogeneity=5.0, seed=1)
    p.objectives = [CountingObjective(o) for o in p.objectives]
    res = run_federation(p, cfg, workers=1)
    assert res.num_queries == sum(o.points_seen for o in p.objectives)
    assert [r["clients"] for r in res.history[1:]] == [3, 3, 3, 3]
    picks = [protocol.sample_clients(cfg, r, list(range(6))) for r in range(1, 5)]
    assert picks == [protocol.sample_clients(cfg, r, list(range(6))) for r in range(1, 5)]
    assert len({tuple(x) for x in picks}) > 1  # different clients in different rounds
    idle = set(range(6)) - set().union(*map(set, picks))
    assert all(p.objectives[c].points_seen == 0 for c in idle)


def test_too_few_valid_replies_leave_the_global_state_unchanged():
    cfg = RunConfig.from_mapping({**SMALL, "method": "fedzo", "min-replies": 2})
    state = protocol.server_init(cfg, np.full(4, 0.5))
    good = {"x": np.full(4, 0.3), "num-queries": 3, "total-queries": 3, "value-start": 1.0}
    new, agg = protocol.aggregate_train(cfg, state, {0: good, 1: {**good, "x": np.full(4, np.nan)}}, {0: .5, 1: .5})
    assert np.array_equal(new.x, state.x) and new.round == 1 and len(agg.replies) == 1


def test_lagged_fzoos_needs_one_exchange_and_corrects_from_round_two():
    cfg = RunConfig.from_mapping({**SMALL, "method": "fzoos-lagged"})
    p = small_problem(False)
    assert not cfg.uses_sync and cfg.uses_rff
    srv = protocol.server_init(cfg, p.x0)
    states = [protocol.new_client_state(cfg, p.dim) for _ in range(3)]
    corrections = []

    def observer(cid, t, x, g, g_hat):
        corrections.append(float(np.linalg.norm(g_hat - g)))

    for r in (1, 2):
        corrections.clear()
        msg = protocol.train_message(cfg, srv)
        assert ("rff-weights" in msg) == (r > 1)
        replies = {}
        for cid in range(3):
            states[cid], replies[cid] = protocol.client_train(cfg, p.objectives[cid], states[cid], msg, cid, observer)
            assert replies[cid]["rff-weights"].shape == (200,)
        srv, agg = protocol.aggregate_train(cfg, srv, replies, {0: 1 / 3, 1: 1 / 3, 2: 1 / 3})
        assert srv.rff_global is not None and not agg.rejected
        assert (max(corrections) > 0) == (r > 1)


def test_robust_aggregation_bounds_one_hostile_client():
    cfg = RunConfig.from_mapping({**SMALL, "method": "scaffold2"})
    state = protocol.server_init(cfg, np.full(4, 0.5))
    honest = {"x": np.full(4, 0.4), "num-queries": 3, "total-queries": 3, "value-start": 1.0, "scaffold-ci": np.ones(4)}
    hostile = {**honest, "scaffold-ci": np.full(4, 1e6)}
    replies = {0: honest, 1: dict(honest), 2: hostile}
    w = {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}
    mean, _ = protocol.aggregate_train(cfg, state, replies, w)
    median, _ = protocol.aggregate_train(cfg.replace(aggregation="median"), state, replies, w)
    clip, _ = protocol.aggregate_train(cfg.replace(aggregation="clip", **{"clip-factor": 2.0}), state, replies, w)
    assert mean.scaffold_c[0] > 1e5
    np.testing.assert_allclose(median.scaffold_c, 1.0)
    np.testing.assert_allclose(clip.scaffold_c, (1 + 1 + 2) / 3)  # hostile capped at 2x the median norm
