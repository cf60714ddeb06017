"""One client must not stop a federation with finite values (RELIABILITY.md, "Hostile
magnitudes"; docs/design.md §4 rule 9, §6.6).

* Replies are bounded by what an honest client can send: values |f| <= 1e100, RFF
  weights by the ridge fit's bound, other arrays <= 1e150, query counts by the method's
  per-exchange bound and running totals by what the rounds so far can make; a reply
  beyond them is rejected like a malformed one and the others are aggregated.
* The float32 fast paths fall back to float64 beyond float32's safe range, so a client
  with a huge (still honest) objective does not turn everyone's iterate into NaN.
* A client whose global correction is not finite steps without it for the round and
  says so (``correction-dropped``; history ``notes``).
* A round in which no client could work is failed: history ``status``, summary.json
  ``status``/``failed_rounds``, ``fedzoo run`` exits 1.
* ``median`` / ``clip`` with fewer than 3 clients asked per round are refused.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from fedzoo import RunConfig, make_problem, protocol, run_federation
from fedzoo.engine import ThreadTransport
from fedzoo.errors import ConfigError, PayloadError
from fedzoo.limits import MAX_ABS_ARRAY, MAX_ABS_VALUE
from fedzoo.objectives import CallableObjective, FederatedProblem
from fedzoo.payload import ArraySpec, ScalarSpec, validate
from fedzoo.results import client_queries_of, read_history
from fedzoo.surrogates.rff import RandomFourierFeatures, fit_rff_weights, weight_bound
from fedzoo_cli.main import main
from tests.settings import LIGHT

FAST = {**LIGHT, "rounds": 3, "local-steps": 2, "rff-features": 100}


def problem(n: int, scale: float | None = None, dim: int = 4) -> FederatedProblem:
    """N quadratic clients; with ``scale`` client 0 is f = scale * sum (x - 0.3)^2."""
    p = make_problem("quadratic", dim=dim, clients=n, heterogeneity=0.5, seed=0)
    objectives = list(p.objectives)
    if scale is not None:
        objectives[0] = CallableObjective(lambda X: scale * np.sum((X - 0.3) ** 2, axis=1), dim)
    return FederatedProblem(objectives, p.weights, p.x0, name="hostile")


@pytest.fixture
def tamper(monkeypatch):
    """tamper(kind, clients, change): ``change(reply)`` replaces those clients' replies."""

    def install(kind, clients, change):
        honest = ThreadTransport.FUNCTIONS[kind]

        def fn(config, objective, state, message, client_id, **kwargs):
            state, reply = honest(config, objective, state, message, client_id, **kwargs)
            return state, (change(dict(reply)) if client_id in clients else reply)

        monkeypatch.setattr(ThreadTransport, "FUNCTIONS", {**ThreadTransport.FUNCTIONS, kind: fn})

    return install


# --------------------------------------------------------------------------------------
# The bounds
# --------------------------------------------------------------------------------------
def test_payload_bounds_refuse_what_no_honest_client_sends():
    spec = {"w": ArraySpec(3, max_abs=10.0), "a": ArraySpec(2), "v": ScalarSpec("float"),
            "n": ScalarSpec("int", 0, maximum=5)}
    ok = {"w": np.array([10.0, -10.0, 0.0]), "a": np.array([MAX_ABS_ARRAY, 0.0]),
          "v": -MAX_ABS_VALUE, "n": 5}
    assert validate(ok, spec)["n"] == 5
    for key, bad, words in (("w", np.array([0.0, 10.5, 0.0]), "magnitude <= 10"),
                            ("a", np.array([1e151, 0.0]), "magnitude <= 1e+150"),
                            ("v", 1e101, "magnitude <= 1e+100"),
                            ("n", 6, "integer <= 5")):
        with pytest.raises(PayloadError, match=re.escape(words)):
            validate({**ok, key: bad}, spec)


def test_honest_rff_weights_stay_within_their_bound():
    rff = RandomFourierFeatures(4, 300, 0.5, 1)
    rng = np.random.default_rng(0)
    for ridge, n in ((1e-3, 200), (1e-4, 50), (1e-6, 300)):
        X = rng.uniform(0.3, 0.7, (n, 4))
        y = 1e95 * (np.sin(30 * X[:, 0]) + rng.standard_normal(n))  # near the value bound
        y *= MAX_ABS_VALUE / np.max(np.abs(y))
        w = fit_rff_weights(rff, X, y, ridge)
        assert np.all(np.isfinite(w)) and np.max(np.abs(w)) <= weight_bound(n, ridge)


def test_the_float32_correction_falls_back_to_float64_beyond_its_range():
    rff = RandomFourierFeatures(5, 200, 1.0, 3)
    x = np.full(5, 0.4)
    w = np.random.default_rng(1).standard_normal(200)
    for scale in (1e37, 1e60):
        g = rff.gradient(x, scale * w, single=True)
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, rff.gradient(x, scale * w), rtol=1e-12)
    small = rff.gradient(x, w, single=True)  # in range: the float32 path, as before
    np.testing.assert_allclose(small, rff.gradient(x, w), rtol=1e-5)


def test_query_counts_are_bounded_per_exchange_and_in_total():
    cfg = RunConfig.from_mapping({**FAST, "method": "fedzo"})
    train = protocol.query_limit(cfg, 4, "train")
    assert train == 1 + 2 * min(cfg.rgf_directions, 4) + 1  # f(x), T estimates (Q <= d), T - 1 iterates
    assert protocol.total_query_limit(cfg, 4, 3) == 3 * train + 1
    state = protocol.server_init(cfg, np.full(4, 0.5))
    good = {"x": np.full(4, 0.4), "num-queries": train, "total-queries": train, "value-start": 1.0}
    replies = {0: good, 1: {**good, "num-queries": train + 1},
               2: {**good, "total-queries": 2 * train + 2}}
    _, agg = protocol.aggregate_train(cfg, state, replies, {0: 1 / 3, 1: 1 / 3, 2: 1 / 3})
    assert sorted(agg.replies) == [0] and sorted(agg.rejected) == [1, 2]
    assert agg.num_queries == train  # nothing inflated


# --------------------------------------------------------------------------------------
# A client with a huge objective, and hostile magnitudes in replies
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "aggregation", "n"), [
    ("fzoos", "mean", 2), ("fzoos", "mean", 3), ("fzoos", "median", 3), ("fzoos", "clip", 3),
    ("fzoos", "median", 5), ("fzoos", "clip", 5), ("fzoos-lagged", "mean", 2),
    ("fzoos-lagged", "median", 3), ("fzoos-lagged", "clip", 5),
])
def test_a_client_with_a_huge_objective_does_not_stall_the_federation(method, aggregation, n):
    # f = 1e40 * sum (x - 0.3)^2: its RFF weights (~1e41) overflowed the float32
    # correction and made every client's iterate NaN
    cfg = RunConfig.from_mapping({**FAST, "method": method, "aggregation": aggregation})
    res = run_federation(problem(n, scale=1e40), cfg, workers=1)
    assert [r["clients"] for r in res.history[1:]] == [n] * cfg.rounds
    assert all(r["status"] == "ok" and r["notes"] == "" for r in res.history[1:])
    assert np.all(np.isfinite(res.x)) and res.summary["status"] == "completed"


@pytest.mark.parametrize(("kind", "key", "value"), [
    ("sync", "rff-weights", 1e300), ("sync", "value", 1e200), ("train", "value-start", -1e120),
    ("train", "num-queries", 10**15), ("sync", "total-queries", 10**15),
])
def test_hostile_magnitudes_are_rejected_and_the_others_aggregated(tamper, kind, key, value):
    n = 3
    cfg = RunConfig.from_mapping({**FAST, "method": "fzoos", "aggregation": "clip"})
    honest = run_federation(problem(n), cfg, workers=1)
    tamper(kind, {0}, lambda r: {**r, key: r[key] * 0 + value if isinstance(r[key], np.ndarray) else value})
    res = run_federation(problem(n), cfg, workers=1)
    assert all(r["status"] == "ok" and f"{kind}-rejected=0" in r["notes"] for r in res.history[1:])
    if kind == "train":
        assert [r["participants"] for r in res.history[1:]] == ["1;2"] * cfg.rounds
    assert np.all(np.isfinite(res.x)) and res.summary["status"] == "completed"
    # the hostile client's queries are charged with its next accepted reply, never inflated
    assert res.history[-1]["queries"] <= honest.history[-1]["queries"]


def test_an_unusable_correction_is_dropped_for_the_round_and_noted(monkeypatch):
    from fedzoo.methods import fzoos

    honest = fzoos.fzoos_term

    def broken(x, t, gamma, rff, w_global, w_own, schedule="inverse"):
        term = honest(x, t, gamma, rff, w_global, w_own, schedule)
        return np.full_like(x, np.inf) if np.ndim(term) and x[0] == x[0] else term

    monkeypatch.setattr(fzoos, "fzoos_term", broken)
    cfg = RunConfig.from_mapping({**FAST, "method": "fzoos"})
    res = run_federation(problem(3), cfg, workers=1)
    # round 1 has no correction yet; from round 2 every client drops it, and says so
    assert res.history[1]["notes"] == ""
    assert all(r["notes"] == "correction-dropped=0,1,2" for r in res.history[2:])
    assert all(r["clients"] == 3 and r["status"] == "ok" for r in res.history[1:])
    assert np.all(np.isfinite(res.x))


# --------------------------------------------------------------------------------------
# A round in which no client could work
# --------------------------------------------------------------------------------------
def test_a_round_in_which_no_client_could_work_fails_the_run(tamper, tmp_path):
    cfg = RunConfig.from_mapping({**FAST, "method": "fedzo", "rounds": 4})
    tamper("train", {0, 1, 2}, lambda r: {**r, "value-start": math.nan} if r["num-queries"] > 0 else r)
    res = run_federation(problem(3), cfg, workers=1, out_dir=tmp_path)
    rows = read_history(tmp_path / "history.csv")
    assert [r["status"] for r in rows] == ["ok"] + ["failed"] * 4
    assert all(r["notes"].startswith("train-rejected=0,1,2;train-refused-queries=0:")
               and r["clients"] == 0 for r in rows[1:])
    # the rejected replies' queries are still counted, per client, in every file
    assert all(sum(client_queries_of(r).values()) == r["queries"] - p["queries"]
               for p, r in zip(rows, rows[1:]))
    assert res.num_queries == rows[-1]["queries"] > 0
    assert np.array_equal(res.x, problem(3).x0)  # the global point could not move
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_rounds"] == [1, 2, 3, 4]
    assert "round(s) 1-4" in summary["error"]


def test_fedzoo_run_exits_1_when_a_round_failed(tamper, tmp_path, capsys):
    tamper("train", {0, 1}, lambda r: {**r, "x": r["x"] * np.nan})
    out = tmp_path / "out"
    argv = ["run", "--method", "fedzo", "--dim", "3", "--clients", "2", "--rounds", "2",
            "--local-steps", "1", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "the run failed: no client could work in round(s) 1-2" in err and "Traceback" not in err
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"


# --------------------------------------------------------------------------------------
# Robust aggregation needs three clients
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("aggregation", ["median", "clip"])
def test_robust_aggregation_with_fewer_than_three_clients_is_refused(aggregation, capsys, tmp_path):
    cfg = RunConfig.from_mapping({"aggregation": aggregation})
    with pytest.raises(ConfigError, match="at least 3"):
        cfg.check_limits(10, 2)
    with pytest.raises(ConfigError, match="1 client"):
        cfg.replace(fraction=0.2).check_limits(10, 5)
    cfg.check_limits(10, 3)  # three can tell an outlier
    RunConfig().check_limits(10, 2)  # mean: fine with two
    argv = ["run", "--clients", "2", "--aggregation", aggregation, "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "--aggregation" in capsys.readouterr().err and not (tmp_path / "x").exists()
