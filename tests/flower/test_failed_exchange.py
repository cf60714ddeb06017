"""Queries made during a failed exchange are counted (ClientApp in process, no Ray).

A client whose objective fails part-way through an exchange keeps the state from before
the exchange, but its running total of queries (``total-queries``, which the server
charges by differences) includes what the failed exchange queried: the next accepted
reply carries them. Both storage paths: ``context.state`` and the on-disk snapshots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flwr.app import MessageType

from fedzoo import protocol
from fedzoo.errors import ObjectiveError
from fedzoo_client.app import STATE_KEY
from fedzoo_client.app import app as client_app
from fedzoo_client.persistence import StateStore
from fedzoo_server.records import content_to_payload
from fedzoo_server.settings import parse_run_config, run_key
from tests.flower.test_client_app import context, message

RUN = {"dim": 10, "num-clients": 3, "rounds": 3, "method": "fedzo", "local-steps": 3,
       "rgf-directions": 5}
SPEC = "tests.flower.test_failed_exchange:flaky"

#: What the black box did: points evaluated, and when (and how) it fails once.
FLAKY: dict[str, Any] = {}


def flaky(X: np.ndarray) -> np.ndarray:
    """sum_j (x_j - 0.3)^2; fails once, on the first batch after ``fail_at`` points.

    ``mode = "after"``: the failing batch is evaluated, then the link drops (its points
    were evaluated: they must be counted). ``mode = "before"``: the batch is refused
    unevaluated (counted as an upper bound: it was handed to the black box).
    """
    n = X.shape[0]
    fails = not FLAKY["failed"] and FLAKY["evaluated"] >= FLAKY["fail_at"]
    if fails and FLAKY["mode"] == "before":
        FLAKY["failed"], FLAKY["refused"] = True, n
        raise RuntimeError("instrument refused the batch")
    FLAKY["evaluated"] += n
    if fails:
        FLAKY["failed"] = True
        raise RuntimeError("link lost after the measurement")
    return ((X - 0.3) ** 2).sum(axis=1)


def train(ctx, round_: int):
    s = parse_run_config(RUN)
    server = protocol.server_init(s.config, np.full(10, 0.5))
    server.round = round_ - 1
    msg = message(protocol.train_message(s.config, server), MessageType.TRAIN, group=str(round_))
    return content_to_payload(client_app(msg, ctx).content)


def stored_state(ctx, node_config, round_: int) -> dict[str, np.ndarray]:
    """The state the client would start the exchange (round_, train) from."""
    if "state-dir" not in node_config:
        return {k: v.numpy().copy() for k, v in ctx.state[STATE_KEY].items()}
    store = StateStore(node_config["state-dir"], run_key(RUN), 1)
    found = store.load_before((round_, 0))
    assert found is not None
    return found[1]


@pytest.mark.parametrize("storage", ["context", "disk"])
@pytest.mark.parametrize("k", [1, 7])
def test_queries_of_a_failed_exchange_are_charged_with_the_next_reply(tmp_path, storage, k):
    FLAKY.update(evaluated=0, fail_at=10**9, failed=False, mode="after", refused=0)
    node_config: dict[str, Any] = {"partition-id": 1, "objective": SPEC}
    if storage == "disk":
        node_config["state-dir"] = str(tmp_path / "state")
    ctx = context(node_config, RUN)

    first = train(ctx, 1)
    assert first["total-queries"] == FLAKY["evaluated"] == first["num-queries"]
    before = stored_state(ctx, node_config, 2)

    FLAKY["fail_at"] = FLAKY["evaluated"] + k  # k more points evaluate, then a failure
    with pytest.raises(ObjectiveError, match="link lost"):
        train(ctx, 2)
    assert FLAKY["failed"] and FLAKY["evaluated"] > first["total-queries"]
    # the state kept is the one from before the failed exchange, but for its count
    after = stored_state(ctx, node_config, 3)
    assert after.keys() == before.keys()
    for key in before:
        if key != "total-queries":
            assert np.array_equal(after[key], before[key]), key
    assert int(after["total-queries"][0]) == FLAKY["evaluated"]

    third = train(ctx, 3)
    assert third["total-queries"] == FLAKY["evaluated"]  # every evaluated point, once
    assert third["num-queries"] == third["total-queries"] - int(after["total-queries"][0])
    if storage == "disk":  # the next exchange loaded the failed exchange's count
        tags = StateStore(node_config["state-dir"], run_key(RUN), 1).tags()
        assert tags == [(1, 0), (2, 0), (3, 0)]


@pytest.mark.parametrize("storage", ["context", "disk"])
def test_a_batch_that_failed_is_counted_as_an_upper_bound(tmp_path, storage):
    """A batch handed to the black box that failed may have been evaluated in part: it is
    counted (an upper bound, as the gRPC oracle counts an unknown outcome)."""
    FLAKY.update(evaluated=0, fail_at=10**9, failed=False, mode="before", refused=0)
    node_config: dict[str, Any] = {"partition-id": 1, "objective": SPEC}
    if storage == "disk":
        node_config["state-dir"] = str(tmp_path / "state")
    ctx = context(node_config, RUN)
    train(ctx, 1)
    FLAKY["fail_at"] = FLAKY["evaluated"] + 3
    with pytest.raises(ObjectiveError, match="refused"):
        train(ctx, 2)
    third = train(ctx, 3)
    assert FLAKY["refused"] > 0
    assert third["total-queries"] == FLAKY["evaluated"] + FLAKY["refused"]


def test_an_exchange_that_fails_before_querying_changes_nothing(tmp_path):
    FLAKY.update(evaluated=0, fail_at=10**9, failed=False, mode="after", refused=0)
    node_config = {"partition-id": 1, "objective": SPEC, "state-dir": str(tmp_path / "s")}
    ctx = context(node_config, RUN)
    train(ctx, 1)
    s = parse_run_config(RUN)
    bad = protocol.train_message(s.config, protocol.server_init(s.config, np.full(10, 0.5)))
    bad["x"] = np.full(10, 2.0)  # outside the unit box: refused before any query
    with pytest.raises(Exception, match="unit box"):
        client_app(message(bad, MessageType.TRAIN, group="2"), ctx)
    assert StateStore(tmp_path / "s", run_key(RUN), 1).tags() == [(1, 0)]
