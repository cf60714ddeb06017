"""Hostile magnitudes over Flower messages, and a run whose rounds fail (in-process grid).

The ServerApp runs the same round driver as the engine (fedzoo/rounds.py), so the bounds
on replies (tests/core/test_hostile_replies.py) hold here too; what is Flower's own: a
run in which no client could work ends with summary.json status ``failed`` and the
ServerApp's entry point raises after writing it, so that Flower reports a failed run
(``flwr ls``) rather than a completed one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedzoo_server.app import FlowerRunError, main, run_server
from fedzoo_server.settings import parse_run_config
from tests.flower.conftest import SMALL, make_grid
from tests.flower.test_server_app import Corrupt


def config(tmp_path, **extra):
    return {**SMALL, "method": "fzoos", "rounds": 2, "local-steps": 2, "out-dir": str(tmp_path / "out"),
            "node-wait-timeout": 5.0, "aggregation": "clip", **extra}


@pytest.mark.parametrize(("mtype", "key", "value"), [
    ("query.sync", "rff-weights", 1e300), ("query.sync", "value", 1e200),
    ("train", "num-queries", 10**15),
])
def test_hostile_magnitudes_are_rejected_over_flower(tmp_path, identity, mtype, key, value):
    rc = config(tmp_path)
    tamper = Corrupt(mtype, {1}, lambda p, meta: {
        **p, key: p[key] * 0 + value if isinstance(p[key], np.ndarray) else value})
    run = run_server(make_grid(rc, tamper=tamper), parse_run_config(rc))
    kind = "sync" if mtype == "query.sync" else "train"
    assert all(f"{kind}-rejected=1" in r["notes"] and r["status"] == "ok" for r in run.rows[1:])
    assert run.summary["status"] == "completed" and np.all(np.isfinite(run.state.x))


def test_a_run_whose_rounds_fail_is_failed_in_flower_too(tmp_path, identity):
    rc = config(tmp_path, method="fedzo")
    tamper = Corrupt("train", {0, 1, 2}, lambda p, meta: {**p, "value-start": 1e300})
    run = run_server(make_grid(rc, tamper=tamper), parse_run_config(rc))
    assert [r["status"] for r in run.rows] == ["ok", "failed", "failed"]
    assert run.rows[1]["notes"] == "train-rejected=0,1,2;train-refused-queries=0:22,1:22,2:22"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_rounds"] == [1, 2]

    class Context:
        run_config = rc

    grid = make_grid(rc, tamper=Corrupt("train", {0, 1, 2}, lambda p, meta: {**p, "value-start": 1e300}))
    with pytest.raises(FlowerRunError, match=r"no client could work in round\(s\) 1-2"):
        main(grid, Context())  # the ServerApp's entry point (@app.main() returns it)


@pytest.mark.parametrize("method", ["fedzo", "fzoos"])
def test_a_budget_over_flower_counts_a_client_whose_replies_are_all_rejected(tmp_path, identity, method):
    """The same contract as fedzoo.minimize(..., budget=): the run stays within the
    run-config's query-budget and its counts equal what every client queried (its own
    running total, kept in its context), the client whose every train reply is rejected
    included."""
    rc = config(tmp_path, method=method, rounds=50, aggregation="mean", **{"query-budget": 900})
    tamper = Corrupt("train", {1}, lambda p, meta: {**p, "value-start": 1e300})
    grid = make_grid(rc, tamper=tamper)
    run = run_server(grid, parse_run_config(rc))
    totals = {}
    for ctx in grid.contexts.values():
        state = ctx.state["fedzoo.client-state"]
        totals[int(ctx.node_config["partition-id"])] = int(state["total-queries"].numpy()[0])
    assert run.summary["total_queries"] == sum(totals.values()) <= 900
    assert run.summary["queries_by_client"] == {str(c): n for c, n in sorted(totals.items())}
    assert run.summary["refused_queries_by_client"]["1"] > 0
    assert all("train-rejected=1" in r["notes"] for r in run.rows[1:])
