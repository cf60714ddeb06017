"""The ServerApp loop over an in-process grid (no Ray, no sockets): robustness.

Malformed replies (missing keys, wrong shapes, NaN/Inf, oversized or undecodable arrays,
a wrong partition id) are dropped with the global state unchanged by them; a client whose
objective raises sends error replies, which are skipped; nodes are mapped to partitions.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from fedzoo import protocol
from fedzoo.payload import MAX_ARRAY_ELEMENTS
from fedzoo.results import read_history
from fedzoo_server.app import FlowerRunError, run_server
from fedzoo_server.records import (
    ARRAYS,
    META,
    SCALARS,
    content_meta,
    content_to_payload,
    payload_to_content,
)
from fedzoo_server.settings import build_problem, parse_run_config
from tests.flower.conftest import SMALL, make_grid

pytestmark = pytest.mark.usefixtures("identity")


def config(tmp_path, **extra):
    return {
        **SMALL,
        "method": "fedzo",
        "rounds": 1,
        "out-dir": str(tmp_path / "out"),
        "node-wait-timeout": 5.0,
        **extra,
    }


class Corrupt:
    """Tamper hook: replaces the reply of ``pid`` to ``mtype`` (keeps the clean ones)."""

    def __init__(self, mtype, pids, change):
        self.mtype, self.pids, self.change, self.clean = mtype, set(pids), change, {}

    def __call__(self, mtype, pid, reply):
        if mtype != self.mtype or reply.has_error():
            return reply
        payload = content_to_payload(reply.content)
        if pid not in self.pids:
            self.clean[pid] = payload
            return reply
        new = self.change(dict(payload), content_meta(reply.content))
        content = (
            new
            if isinstance(new, RecordDict)
            else payload_to_content(new, content_meta(reply.content))
        )
        return Message(metadata=reply.metadata, content=content)


def _with(key, value):
    return lambda p, meta: {**p, key: value}


def _without(key):
    return lambda p, meta: {k: v for k, v in p.items() if k != key}


def _nan_at(key, index=0):
    def change(p, meta):
        arr = p[key].copy()
        arr[index] = np.nan
        return {**p, key: arr}

    return change


def _records(arrays_record):
    def change(p, meta):
        return RecordDict(
            {
                ARRAYS: arrays_record,
                SCALARS: ConfigRecord({k: v for k, v in p.items() if k != "x"}),
                META: ConfigRecord(meta),
            }
        )

    return change


MALFORMED_TRAIN = {
    "missing key": _without("value-start"),
    "extra key": _with("bonus", 1.0),
    "short x": lambda p, meta: {**p, "x": p["x"][:-1]},
    "2-d x": lambda p, meta: {**p, "x": p["x"][None, :]},
    "NaN in x": _nan_at("x"),
    "Inf value": _with("value-start", math.inf),
    "x outside the box": _with("x", np.full(10, 1.5)),
    "10x oversized x": _with("x", np.full(100, 0.5)),
    "Inf in x": lambda p, meta: {**p, "x": np.where(np.arange(10) == 3, np.inf, p["x"])},
    "negative queries": _with("num-queries", -5),
    "string queries": _with("num-queries", "many"),
    "oversized array": _records(
        ArrayRecord({"x": Array("float64", (MAX_ARRAY_ELEMENTS + 1,), "numpy.ndarray", b"")})
    ),
    "undecodable array": _records(
        ArrayRecord({"x": Array("float64", (10,), "numpy.ndarray", b"garbage")})
    ),
    "foreign serialisation": _records(ArrayRecord({"x": Array("float64", (10,), "torch", b"")})),
    "wrong partition id": lambda p, meta: payload_to_content(p, {"partition-id": 0}),
    "no partition id": lambda p, meta: payload_to_content(p),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_TRAIN))
def test_malformed_train_reply_is_dropped_and_the_others_aggregated(tmp_path, case, caplog):
    rc = config(tmp_path)
    tamper = Corrupt("train", {1}, MALFORMED_TRAIN[case])
    with caplog.at_level(logging.WARNING):
        run = run_server(make_grid(rc, tamper=tamper), parse_run_config(rc))
    s = parse_run_config(rc)
    x0, weights = build_problem(s).x0, {i: 1 / 3 for i in range(3)}
    expected, agg = protocol.aggregate_train(
        s.config, protocol.server_init(s.config, x0), tamper.clean, weights
    )
    assert sorted(tamper.clean) == [0, 2]
    assert np.array_equal(run.state.x, expected.x)  # only partitions 0 and 2 moved x
    assert run.rows[1]["clients"] == 2
    assert run.rows[1]["queries"] - 0 >= agg.num_queries  # + the final evaluation
    assert "partition 1" in caplog.text or "client 1" in caplog.text


def test_when_every_reply_is_malformed_the_global_point_does_not_move(tmp_path):
    rc = config(tmp_path)
    run = run_server(
        make_grid(rc, tamper=Corrupt("train", {0, 1, 2}, _nan_at("x"))), parse_run_config(rc)
    )
    assert np.array_equal(run.state.x, build_problem(parse_run_config(rc)).x0)
    assert run.rows[1]["clients"] == 0 and run.rows[1]["value"] == run.rows[0]["value"]


def test_an_array_longer_than_any_reply_may_carry_is_refused_before_decoding(tmp_path, caplog):
    rc = config(tmp_path, method="fzoos")  # the longest reply array: M = 200 RFF weights
    huge = np.zeros(2000)  # 10x the RFF weights
    tamper = Corrupt("query.sync", {0}, _with("rff-weights", huge))
    with caplog.at_level(logging.WARNING):
        run = run_server(make_grid(rc, tamper=tamper), parse_run_config(rc))
    assert "exceeds the limit of 200 elements" in caplog.text
    assert np.array_equal(
        run.state.rff_global, 0.5 * tamper.clean[1]["rff-weights"] + 0.5 * tamper.clean[2]["rff-weights"]
    )


def test_malformed_sync_reply_leaves_the_rff_average_to_the_valid_ones(tmp_path):
    rc = config(tmp_path, method="fzoos")
    tamper = Corrupt("query.sync", {0}, _nan_at("rff-weights", 5))
    run = run_server(make_grid(rc, tamper=tamper), parse_run_config(rc))
    clean = tamper.clean
    assert sorted(clean) == [1, 2]
    assert np.array_equal(
        run.state.rff_global, 0.5 * clean[1]["rff-weights"] + 0.5 * clean[2]["rff-weights"]
    )
    assert run.rows[1]["reported_value"] == 0.5 * clean[1]["value"] + 0.5 * clean[2]["value"]


def test_a_client_whose_objective_raises_is_skipped(tmp_path, caplog):
    rc = config(tmp_path, rounds=2)
    nodes = [
        {"partition-id": 0},
        {"partition-id": 1, "objective": "tests.flower.fixtures:broken"},
        {"partition-id": 2},
    ]
    with caplog.at_level(logging.WARNING):
        run = run_server(make_grid(rc, nodes), parse_run_config(rc))
    assert [r["clients"] for r in run.rows[1:]] == [2, 2]
    assert "instrument offline" in caplog.text and "partition 1" in caplog.text
    # a custom objective takes part: the value is the clients' report, never a simulation
    assert run.summary["flower"]["value_source"] == "reported"
    assert all(r["value"] == r["reported_value"] for r in run.rows if not math.isnan(r["value"]))
    assert math.isfinite(run.rows[-1]["reported_value"])


def test_results_are_written_like_the_engine_writes_them(tmp_path, caplog):
    rc = config(tmp_path, rounds=2)
    with caplog.at_level(logging.INFO, logger="fedzoo_server"), caplog.at_level(logging.INFO, logger="fedzoo"):
        run = run_server(make_grid(rc), parse_run_config(rc))
    rows = read_history(tmp_path / "out" / "history.csv")
    assert [r["round"] for r in rows] == [0, 1, 2]
    summ = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summ["engine"] == "flower" and summ["method"] == "fedzo" and summ["rounds"] == 2
    assert summ["total_queries"] == rows[-1]["queries"] == run.rows[-1]["queries"]
    assert summ["flower"]["simulation"] is True and summ["flower"]["value_source"] == "simulated"
    assert "round 1/2" in caplog.text and "round 2/2" in caplog.text


def test_nodes_are_mapped_by_their_partition_id_not_by_order(tmp_path):
    rc = config(tmp_path)
    nodes = [{"partition-id": 2}, {"partition-id": 0}, {"partition-id": 1}]
    run = run_server(make_grid(rc, nodes, node_ids=[9, 5, 77]), parse_run_config(rc))
    assert run.federation.nodes == {2: 9, 0: 5, 1: 77}
    reference = run_server(
        make_grid(config(tmp_path / "ref")), parse_run_config(config(tmp_path / "ref"))
    )
    assert np.array_equal(run.state.x, reference.state.x)


def test_missing_partitions_fail_after_the_wait_with_the_reasons(tmp_path):
    rc = config(tmp_path, **{"node-wait-timeout": 0.3})
    nodes = [{"partition-id": 0}, {"partition-id": 1, "objective": "tests.flower.nowhere:f"}]
    with pytest.raises(FlowerRunError) as err:
        run_server(make_grid(rc, nodes), parse_run_config(rc))
    text = str(err.value)
    assert (
        "missing partition id(s) [1, 2]" in text
        and "cannot import" in text
        and "node-wait-timeout" in text
    )


def test_duplicate_and_out_of_range_partitions_are_ignored(tmp_path, caplog):
    rc = config(tmp_path)
    nodes = [
        {"partition-id": 0},
        {"partition-id": 0},
        {"partition-id": 1},
        {"partition-id": 2},
        {"partition-id": 7},
    ]
    with caplog.at_level(logging.WARNING):
        run = run_server(make_grid(rc, nodes, node_ids=[10, 11, 12, 13, 14]), parse_run_config(rc))
    assert run.federation.nodes == {0: 10, 1: 12, 2: 13}
    assert "already served" in run.federation.failed[11] and "[0, 2]" in run.federation.failed[14]
    assert all(r["clients"] == 3 for r in run.rows[1:])


def test_fo_needs_built_in_objectives(tmp_path):
    rc = config(tmp_path, method="fo")
    nodes = [
        {"partition-id": 0, "objective": "tests.flower.fixtures:sphere"},
        {"partition-id": 1},
        {"partition-id": 2},
    ]
    with pytest.raises(FlowerRunError, match="exact gradients"):
        run_server(make_grid(rc, nodes), parse_run_config(rc))


def test_custom_problem_with_callables_starts_at_the_centre_and_reports(tmp_path):
    rc = config(tmp_path, problem="custom", rounds=2)
    nodes = [{"partition-id": i, "objective": "tests.flower.fixtures:sphere"} for i in range(3)]
    run = run_server(make_grid(rc, nodes), parse_run_config(rc))
    assert run.rows[0]["reported_value"] == pytest.approx(10 * 0.2**2)
    assert run.rows[-1]["value"] < run.rows[0]["value"]
    assert run.summary["problem"]["name"] == "custom"


def test_a_node_that_never_answers_is_named_in_the_error(tmp_path):
    rc = config(tmp_path, **{"node-wait-timeout": 0.5})

    def mute(mtype, pid, reply):
        return None if (mtype == "query.describe" and pid == 1) else reply

    with pytest.raises(FlowerRunError, match=r"no answer from node\(s\) \[1007\]"):
        run_server(make_grid(rc, tamper=mute), parse_run_config(rc))


def test_deployed_nodes_may_join_while_the_server_waits(tmp_path):
    rc = config(tmp_path, **{"node-wait-timeout": 20.0})
    grid = make_grid(rc)
    everyone = list(grid.contexts)
    calls = {"n": 0}

    def joining():  # one more node every other poll
        calls["n"] += 1
        return everyone[: min(len(everyone), calls["n"] // 2)]

    grid.get_node_ids = joining
    run = run_server(grid, parse_run_config(rc), simulation=False)
    assert sorted(run.federation.nodes) == [0, 1, 2] and calls["n"] >= 6
    assert grid.calls["query.describe"] == 3  # described together once all had joined
    assert run.summary["flower"]["value_source"] == "reported"


def test_a_reply_with_more_keys_than_any_reply_may_carry_is_refused_before_decoding(tmp_path, caplog):
    rc = config(tmp_path)
    padding = {f"pad-{i}": np.zeros(1) for i in range(100)}
    tamper = Corrupt("train", {1}, lambda p, meta: {**p, **padding})
    with caplog.at_level(logging.WARNING):
        run = run_server(make_grid(rc, tamper=tamper), parse_run_config(rc))
    assert "104 keys, more than the 5 any reply may carry" in caplog.text
    assert run.rows[1]["clients"] == 2 and sorted(tamper.clean) == [0, 2]
