"""Same seed, same history: the Flower path reproduces ``run_federation(workers=1)``.

In-process grid here (every message still crosses the wire format: protobuf bytes and
back); the real ``flwr run`` simulation and a TLS deployment are compared with the engine
in test_e2e.py. Everything but ``wall_s`` must be identical: values, reported values,
cumulative queries, bytes up and down (both count ``payload_nbytes`` of the same payloads)
the number of aggregated clients, who they were and the queries of each.
"""

from __future__ import annotations

import math

import pytest

from fedzoo.engine import run_federation
from fedzoo.methods import method_names
from fedzoo.results import read_history
from fedzoo_server.app import run_server
from fedzoo_server.settings import build_problem, parse_run_config
from tests.flower.conftest import SMALL, make_grid
from tests.settings import LIGHT

pytestmark = pytest.mark.usefixtures("identity")

COLUMNS = (
    "round", "queries", "value", "reported_value", "bytes_up", "bytes_down", "clients",
    "participants", "client_queries",
)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_same_history(rows, reference):
    assert len(rows) == len(reference)
    for got, want in zip(rows, reference):
        bad = {c: (got[c], want[c]) for c in COLUMNS if not same(got[c], want[c])}
        assert not bad, f"round {want['round']}: {bad}"


def engine_reference(run_config, out_dir):
    s = parse_run_config(run_config)
    return run_federation(build_problem(s), s.config, out_dir=out_dir, workers=1)


@pytest.mark.parametrize("method", method_names())  # every registered method
def test_flower_history_equals_the_engine_history(tmp_path, method):
    rc = {**SMALL, "method": method, "out-dir": str(tmp_path / "flower")}
    if method not in ("fzoos", "fedzo"):  # the others on a lighter setting
        rc.update(LIGHT)
    ref = engine_reference(rc, tmp_path / "engine")
    run = run_server(make_grid(rc), parse_run_config(rc))
    assert_same_history(run.rows, ref.history)
    assert_same_history(
        read_history(tmp_path / "flower" / "history.csv"),
        read_history(tmp_path / "engine" / "history.csv"),
    )
    for key in (
        "final_value",
        "final_reported_value",
        "best_value",
        "total_queries",
        "total_bytes",
        "config",
        "problem",
        "rounds",
    ):
        assert run.summary[key] == ref.summary[key] or same(run.summary[key], ref.summary[key]), key
    assert run.summary["engine"] == "flower" and ref.summary["engine"] == "inprocess"


@pytest.mark.parametrize("method", method_names())
def test_partial_participation_samples_the_same_clients(tmp_path, method):
    rc = {
        **SMALL,
        "method": method,
        "num-clients": 4,
        "fraction": 0.5,
        "out-dir": str(tmp_path / "f"),
    }
    if method not in ("fzoos", "fedzo"):
        rc.update(LIGHT)
    ref = engine_reference(rc, None)
    grid = make_grid(rc)
    run = run_server(grid, parse_run_config(rc))
    assert_same_history(run.rows, ref.history)
    per_round = {m.metadata.group_id for m in grid.sent if m.metadata.message_type == "train"}
    assert len(per_round) == 3 and grid.calls["train"] == 3 * 2  # 2 of 4 clients per round


@pytest.mark.parametrize("method", ["fzoos", "fedzo"])
def test_parity_holds_when_one_client_queries_a_remote_oracle(tmp_path, method):
    from fedzoo_oracle.server import start_oracle_server

    rc = {**SMALL, "method": method, "out-dir": str(tmp_path / "flower")}
    s = parse_run_config(rc)
    server, port = start_oracle_server(build_problem(s).objectives[1], port=0)
    try:
        nodes = [
            {"partition-id": 0},
            {"partition-id": 1, "oracle": f"127.0.0.1:{port}"},
            {"partition-id": 2},
        ]
        run = run_server(make_grid(rc, nodes), s)
    finally:
        server.stop(0)
    ref = engine_reference(rc, None)
    # not every objective is the built-in one: the value column is what clients report
    assert run.summary["flower"]["value_source"] == "reported"
    for got, want in zip(run.rows, ref.history):
        assert same(got["reported_value"], want["reported_value"])
        assert (got["queries"], got["bytes_up"], got["bytes_down"]) == (
            want["queries"],
            want["bytes_up"],
            want["bytes_down"],
        )
