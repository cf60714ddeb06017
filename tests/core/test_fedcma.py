"""``fedcma``: CMA-ES (pycma) on the server, the clients evaluating its candidates.

Progress on a smooth quadratic, every query counted, the strategy rebuilt from plain
arrays (checkpoint and resume give the uninterrupted history), dropped clients and too
few replies. Over Flower it is covered, like every registered method, by
``tests/flower/test_parity.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cma")

from fedzoo import protocol  # noqa: E402
from fedzoo.checkpoint import load_checkpoint  # noqa: E402
from fedzoo.config import METHODS, RunConfig  # noqa: E402
from fedzoo.engine import ThreadTransport, run_federation  # noqa: E402
from fedzoo.errors import ConfigError  # noqa: E402
from fedzoo.methods import get_method  # noqa: E402
from fedzoo.methods.cma import CMAServerState, popsize  # noqa: E402
from fedzoo.objectives import CallableObjective, CountingObjective, make_problem  # noqa: E402
from fedzoo.results import HistoryRecorder, client_queries_of  # noqa: E402
from fedzoo.rounds import RoundDriver  # noqa: E402
from fedzoo.state import ServerState  # noqa: E402

LAM = 8  # a small population keeps the tests fast


def cfg(**extra: object) -> RunConfig:
    return RunConfig.from_mapping({"method": "fedcma", "rounds": 6, "popsize": LAM, **extra})


def problem(counting: bool = True, clients: int = 3, dim: int = 10):
    p = make_problem("quadratic", dim=dim, clients=clients, heterogeneity=5.0, seed=1)
    if counting:
        p.objectives = [CountingObjective(o) for o in p.objectives]
    return p


def strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_registered_with_its_options_and_population_default():
    assert "fedcma" in METHODS
    m = get_method("fedcma")
    assert m.has_sync is False and set(m.options) == {"popsize", "cma-sigma"}
    default = RunConfig.from_mapping({"method": "fedcma"})
    assert default.popsize == 0 and default.cma_sigma == 0.2
    assert popsize(default, 300) == 51  # + the mean + f_i(x_{r-1}) = FZooS's 53 per exchange
    assert popsize(default, 10**9) == 4 + int(3 * math.log(10**9))  # never below CMA-ES's own
    assert popsize(cfg(), 300) == LAM
    with pytest.raises(ConfigError, match="popsize"):
        RunConfig.from_mapping({"method": "fedcma", "popsize": -1})


def test_popsize_one_is_refused_before_any_query():
    p = problem()
    with pytest.raises(ConfigError, match="'popsize' = 1"):
        run_federation(p, cfg(popsize=1), workers=1)
    assert sum(o.points_seen for o in p.objectives) == 0


def test_improves_on_a_smooth_quadratic_and_keeps_the_best_reported_point():
    p = make_problem("quadratic", dim=10, clients=3, heterogeneity=0.5, seed=0)
    res = run_federation(p, RunConfig.from_mapping({"method": "fedcma", "rounds": 25}), workers=1)
    values = [r["value"] for r in res.history]
    assert values[-1] < 0.1 * values[0]  # 4.5 -> below 0.45 (F* = -0.015)
    # the global point only moves to a point with a lower reported value
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:]))
    for row in res.history:
        assert row["reported_value"] == pytest.approx(row["value"], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("reporting", ["simulated-F", "clients-only"])
def test_every_query_is_counted(reporting):
    p = problem()
    if reporting == "clients-only":  # a plain black box behind the wrapper
        p.objectives = [CountingObjective(CallableObjective(o.inner, o.dim)) for o in p.objectives]
    res = run_federation(p, cfg(), workers=1)
    seen = [o.points_seen for o in p.objectives]
    assert res.num_queries == sum(seen) > 0
    assert res.summary["queries_by_client"] == {str(c): n for c, n in enumerate(seen)}
    # round 1: f_i(x0), the lambda candidates and the mean; later rounds the same, f_i(x_{r-1})
    # only when the point moved (the cached global value otherwise)
    assert client_queries_of(res.history[1]) == {c: LAM + 2 for c in range(3)}
    for prev, row in zip(res.history[1:-1], res.history[2:-1]):
        moved = prev["value"] != res.history[prev["round"] - 1]["value"]
        assert client_queries_of(row) == {c: LAM + 1 + moved for c in range(3)}


def test_client_evaluates_the_candidates_and_the_mean_in_one_counted_batch():
    config = cfg()
    p = problem()
    state = protocol.server_init(config, p.x0)
    msg = protocol.train_message(config, state)
    assert msg["cma-candidates"].shape == (LAM * 10,) and msg["cma-mean"].shape == (10,)
    assert 0.0 <= msg["cma-candidates"].min() and msg["cma-candidates"].max() <= 1.0
    np.testing.assert_array_equal(msg["cma-mean"], p.x0)  # generation 1: the mean is x0
    cstate = protocol.new_client_state(config, 10)
    cstate, reply = protocol.client_train(config, p.objectives[0], cstate, msg, 0)
    X = msg["cma-candidates"].reshape(LAM, 10)
    np.testing.assert_allclose(reply["cma-values"], p.objectives[0].inner.value(X), rtol=1e-13)
    assert reply["cma-mean-value"] == pytest.approx(p.objectives[0].inner.value(p.x0[None])[0])
    assert reply["num-queries"] == LAM + 2 == p.objectives[0].points_seen
    np.testing.assert_array_equal(reply["x"], p.x0)


def test_checkpoint_and_resume_give_the_uninterrupted_history(tmp_path):
    config = cfg(rounds=6)
    full = run_federation(problem(False), config, workers=1)
    run_federation(problem(False), config.replace(rounds=3), checkpoint_dir=tmp_path, workers=1)
    # the checkpoint holds the strategy as plain arrays: no pickle anywhere
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as z:
        told = z["server/cma-told"]
        assert told.shape == (3, LAM) and told.dtype == np.float64
    resumed = run_federation(problem(False), config, checkpoint_dir=tmp_path, resume=True, workers=2)
    assert strip(resumed.history) == strip(full.history)
    assert np.array_equal(resumed.x, full.x)
    assert load_checkpoint(tmp_path).round == 6


def test_server_state_round_trips_and_the_replay_asks_the_same_candidates():
    config = cfg(popsize=4)  # a population under 6: pycma mirrors samples
    p = problem(False)
    state = protocol.server_init(config, p.x0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        msg = protocol.train_message(config, state)
        replies = {c: {"x": msg["x"], "value-start": 9.0, "num-queries": 1, "total-queries": 1,
                       "cma-values": rng.uniform(size=4), "cma-mean-value": rng.uniform()}
                   for c in (0, 1)}
        state, _ = protocol.aggregate_train(config, state, replies, {0: 0.5, 1: 0.5})
    arrays = state.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    back = ServerState.from_arrays(arrays, config)
    assert isinstance(back, CMAServerState) and not back.cache  # rebuilt on first use
    a, b = protocol.train_message(config, state), protocol.train_message(config, back)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(back.strategy(config).es.mean, state.cma_mean)


def test_the_strategy_ignores_and_keeps_numpys_global_generator():
    config = cfg()
    x0 = np.full(6, 0.4)

    def candidates(global_seed):
        np.random.seed(global_seed)
        before = np.random.get_state()
        state = protocol.server_init(config, x0)
        out = []
        for r in range(3):
            msg = protocol.train_message(config, state)
            out.append(msg["cma-candidates"])
            reply = {"x": x0, "value-start": 1.0, "num-queries": 1, "total-queries": 1,
                     "cma-values": np.cos(np.arange(LAM) + r), "cma-mean-value": 2.0}
            state, _ = protocol.aggregate_train(config, state, {0: reply}, {0: 1.0})
        after = np.random.get_state()
        assert np.array_equal(before[1], after[1]) and before[2] == after[2]
        return out

    a, b = candidates(1), candidates(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = RunConfig.from_mapping({**config.to_dict(), "seed": 1})
    assert not np.array_equal(protocol.train_message(other, protocol.server_init(other, x0))["cma-candidates"],
                              a[0])


def _reply(values, mean_value=5.0, start=5.0):
    return {"x": np.full(4, 0.5), "value-start": start, "num-queries": LAM + 1, "total-queries": LAM + 1,
            "cma-values": np.asarray(values, dtype=np.float64), "cma-mean-value": mean_value}


def test_a_dropped_or_invalid_reply_is_left_out_with_weights_renormalised():
    config = cfg()
    state = protocol.server_init(config, np.full(4, 0.5))
    live = state.strategy(config)
    candidates, mean = live.candidates.copy(), live.mean.copy()  # the live strategy moves on
    v0, v1 = np.arange(LAM, dtype=float), np.arange(LAM, dtype=float)[::-1] * 2
    bad = {**_reply(v1), "cma-values": np.full(LAM, np.nan)}
    new, agg = protocol.aggregate_train(config, state, {0: _reply(v0), 1: bad, 2: _reply(v1)},
                                        {0: 0.5, 1: 0.3, 2: 0.2})
    assert sorted(agg.replies) == [0, 2] and agg.rejected
    np.testing.assert_allclose(new.cma_told[0], (0.5 * v0 + 0.2 * v1) / 0.7, rtol=1e-14)
    # the best candidate by these values becomes the global point
    best = int(np.argmin((0.5 * v0 + 0.2 * v1) / 0.7))
    np.testing.assert_array_equal(new.x, candidates[best])
    # a round where the mean is best moves there; one where nothing beats x_{r-1} stays
    mean_best, _ = protocol.aggregate_train(config, state, {0: _reply(v0 + 10, mean_value=1.0)}, {0: 1.0})
    np.testing.assert_array_equal(mean_best.x, mean)
    stay, _ = protocol.aggregate_train(config, state, {0: _reply(v0 + 10, start=1.0)}, {0: 1.0})
    np.testing.assert_array_equal(stay.x, state.x)


def test_too_few_replies_tell_nothing_and_the_same_candidates_are_sent_again():
    config = cfg(**{"min-replies": 2})
    state = protocol.server_init(config, np.full(4, 0.5))
    before = protocol.train_message(config, state)
    new, agg = protocol.aggregate_train(config, state, {0: _reply(np.zeros(LAM))}, {0: 0.5, 1: 0.5})
    assert len(agg.replies) == 1 and new.cma_told.shape == (0, LAM)
    assert np.array_equal(new.x, state.x) and new.round == 1
    again = protocol.train_message(config, new)
    assert np.array_equal(again["cma-candidates"], before["cma-candidates"])


class DropsOne(ThreadTransport):
    """Client 2 runs round 2 but its train reply is lost; keeps the replies it delivers."""

    def exchange(self, kind, message, round_, clients):
        replies, down, up = super().exchange(kind, message, round_, clients)
        if kind == "train" and round_ == 2:
            replies.pop(2)
        self.delivered = getattr(self, "delivered", {})
        self.delivered[(kind, round_)] = replies
        return replies, down, up


def test_a_dropped_client_in_a_run():
    config = cfg(rounds=4)
    p = problem()
    weights = {0: 0.5, 1: 0.3, 2: 0.2}
    states = [protocol.new_client_state(config, p.dim) for _ in range(3)]
    transport = DropsOne(config, p, states, None)
    rec = HistoryRecorder()
    rec.start(p.x0, 3)
    driver = RoundDriver(config, transport, weights, rec, protocol.server_init(config, p.x0))
    driver.run()
    got = transport.delivered[("train", 2)]
    assert sorted(got) == [0, 1]
    want = (0.5 * got[0]["cma-values"] + 0.3 * got[1]["cma-values"]) / 0.8
    np.testing.assert_allclose(driver.server.cma_told[1], want, rtol=1e-14)
    assert driver.server.cma_told.shape == (4, LAM)
    # client 2's lost queries are charged with its next reply: nothing is dropped
    assert rec.rows[-1]["queries"] == sum(o.points_seen for o in p.objectives)
    assert [r["clients"] for r in rec.rows[1:]] == [3, 2, 3, 3]


def test_same_seed_same_history_whatever_the_threads_and_partial_participation():
    config = cfg(fraction=0.5, rounds=4)
    p = make_problem("quadratic", dim=8, clients=4, heterogeneity=5.0, seed=2)
    p.objectives = [CountingObjective(o) for o in p.objectives]
    a = run_federation(p, config, workers=1)
    assert a.num_queries == sum(o.points_seen for o in p.objectives)
    assert [r["clients"] for r in a.history[1:]] == [2, 2, 2, 2]
    b = run_federation(make_problem("quadratic", dim=8, clients=4, heterogeneity=5.0, seed=2), config, workers=3)
    assert strip(a.history) == strip(b.history)
