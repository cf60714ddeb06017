"""The ClientApp alone: messages in, messages out, state in context.state (no Ray)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, Metadata, RecordDict

from fedzoo import protocol
from fedzoo._threads import blas_threads
from fedzoo.errors import ConfigError, PayloadError
from fedzoo_client.app import STATE_KEY
from fedzoo_client.app import app as client_app
from fedzoo_server.records import content_meta, content_to_payload, payload_to_content
from fedzoo_server.settings import build_problem, parse_run_config
from tests.flower.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]


def message(payload, message_type, *, group="1"):
    content = payload_to_content(payload) if payload is not None else RecordDict()
    meta = Metadata(
        run_id=1,
        message_id="m1",
        src_node_id=1,
        dst_node_id=7,
        reply_to_message_id="",
        group_id=group,
        created_at=time.time(),
        ttl=60,
        message_type=message_type,
    )
    return Message(content, metadata=meta)


def context(node_config, run_config=None):
    return Context(
        run_id=1,
        node_id=7,
        node_config=node_config,
        state=RecordDict(),
        run_config=dict(SMALL if run_config is None else run_config),
    )


def train_payload(run_config=None):
    s = parse_run_config(SMALL if run_config is None else run_config)
    return protocol.train_message(s.config, protocol.server_init(s.config, build_problem(s).x0))


def test_describe_reports_partition_and_objective_without_querying():
    ctx = context({"partition-id": 2})
    reply = client_app(message(None, "query.describe"), ctx)
    meta = content_meta(reply.content)
    assert meta["partition-id"] == 2 and meta["dim"] == 10 and meta["objective-kind"] == "problem"
    assert STATE_KEY not in ctx.state


def test_train_reply_is_the_protocol_reply_and_state_persists():
    s = parse_run_config(SMALL)
    ctx = context({"partition-id": 1})
    msg = train_payload()
    reply = client_app(message(msg, MessageType.TRAIN), ctx)
    assert reply.metadata.reply_to_message_id == "m1" and content_meta(reply.content) == {
        "partition-id": 1
    }
    got = content_to_payload(reply.content)
    # the same call in process gives the same reply, bit for bit
    with blas_threads(1):  # as the ClientApp (and the engine): BLAS results depend on threads
        state, expected = protocol.client_train(
            s.config,
            build_problem(s).objectives[1],
            protocol.new_client_state(s.config, 10),
            msg,
            1,
        )
    assert got.keys() == expected.keys()
    assert np.array_equal(got["x"], expected["x"]) and got["num-queries"] == expected["num-queries"]
    assert got["value-start"] == expected["value-start"]
    stored = protocol.ClientState.from_arrays(
        {k: v.numpy() for k, v in ctx.state[STATE_KEY].items()}, s.config
    )
    assert np.array_equal(stored.history.X, state.history.X)
    # the sync exchange continues from the stored state
    server, _ = protocol.aggregate_train(
        s.config, protocol.server_init(s.config, msg["x"]), {1: got}, {1: 1.0}
    )
    sreply = client_app(message(protocol.sync_message(s.config, server), "query.sync"), ctx)
    assert content_to_payload(sreply.content)["rff-weights"].shape == (200,)


def test_a_failing_handler_leaves_the_stored_state_alone():
    ctx = context({"partition-id": 0})
    client_app(message(train_payload(), MessageType.TRAIN), ctx)
    before = {k: v.numpy().copy() for k, v in ctx.state[STATE_KEY].items()}
    bad = train_payload()
    bad["x"] = np.full(10, 2.0)  # outside the unit box
    with pytest.raises(PayloadError, match="unit box"):
        client_app(message(bad, MessageType.TRAIN), ctx)
    after = {k: v.numpy() for k, v in ctx.state[STATE_KEY].items()}
    assert before.keys() == after.keys() and all(
        np.array_equal(before[k], after[k]) for k in before
    )


def test_callable_objective_from_the_node_config():
    ctx = context({"partition-id": 0, "objective": "tests.flower.fixtures:sphere"})
    meta = content_meta(client_app(message(None, "query.describe"), ctx).content)
    assert meta["objective-kind"] == "callable"
    reply = content_to_payload(
        client_app(message({"x": np.full(10, 0.5)}, "query.evaluate"), ctx).content
    )
    assert reply == {"value": pytest.approx(10 * 0.2**2), "num-queries": 1, "total-queries": 1}


@pytest.mark.parametrize(
    "node_config, match",
    [
        ({}, "no 'partition-id'"),
        ({"partition-id": 3}, r"\[0, 2\]"),
        ({"partition-id": True}, "partition-id"),
        ({"partition-id": 0, "objective": "os.system('x')"}, "package.module:function"),
        ({"partition-id": 0, "objective": "tests.flower.nowhere:f"}, "cannot import"),
        ({"partition-id": 0, "objective": "tests.flower.fixtures:missing"}, "no attribute"),
        ({"partition-id": 0, "objective": "tests.flower.fixtures:NOT_CALLABLE"}, "not a callable"),
        (
            {
                "partition-id": 0,
                "objective": "tests.flower.fixtures:sphere",
                "oracle": "127.0.0.1:1",
            },
            "both",
        ),
        ({"partition-id": 0, "oracle": "not an address"}, "host:port"),
    ],
)
def test_bad_node_configs_raise_clear_errors(node_config, match):
    with pytest.raises(ConfigError, match=match):
        client_app(message(None, "query.describe"), context(node_config))


def test_custom_problem_needs_a_named_objective():
    with pytest.raises(ConfigError, match="custom"):
        client_app(
            message(None, "query.describe"),
            context({"partition-id": 0}, {**SMALL, "problem": "custom"}),
        )


def test_custom_problem_with_an_objective_factory_and_its_options():
    run_config = {**SMALL, "problem": "custom", "objective-factory": "tests.flower.fixtures:shifted_sphere",
                  "objective-options": '{"shift": 0.5}'}
    ctx = context({"partition-id": 1}, run_config)
    meta = content_meta(client_app(message(None, "query.describe"), ctx).content)
    assert meta["objective-kind"] == "problem" and meta["dim"] == 10
    reply = content_to_payload(
        client_app(message({"x": np.full(10, 0.5)}, "query.evaluate"), ctx).content
    )
    centre = 0.5 + 0.1 * 1 / run_config["num-clients"]
    assert reply["value"] == pytest.approx(10 * (0.5 - centre) ** 2) and reply["num-queries"] == 1


@pytest.mark.parametrize(
    "options, match",
    [
        ('{"shfit": 0.5}', r"cannot be called with .*\['shfit'\]"),
        ('{"shift": 0.5, "extra": 1}', "extra"),
    ],
)
def test_objective_options_the_factory_does_not_take_are_refused(options, match):
    run_config = {**SMALL, "problem": "custom", "objective-factory": "tests.flower.fixtures:shifted_sphere",
                  "objective-options": options}
    with pytest.raises(ConfigError, match=match):
        client_app(message(None, "query.describe"), context({"partition-id": 0}, run_config))


def test_remote_oracle_objective():
    from fedzoo_oracle.server import start_oracle_server

    s = parse_run_config(SMALL)
    server, port = start_oracle_server(build_problem(s).objectives[2], port=0)
    try:
        ctx = context({"partition-id": 2, "oracle": f"127.0.0.1:{port}"})
        meta = content_meta(client_app(message(None, "query.describe"), ctx).content)
        assert meta["objective-kind"] == "oracle"
        msg = train_payload()
        got = content_to_payload(client_app(message(msg, MessageType.TRAIN), ctx).content)
        with blas_threads(1):
            _, expected = protocol.client_train(
                s.config,
                build_problem(s).objectives[2],
                protocol.new_client_state(s.config, 10),
                msg,
                2,
            )
        assert (
            np.array_equal(got["x"], expected["x"])
            and got["value-start"] == expected["value-start"]
        )
        with pytest.raises(ConfigError, match="dimension 10"):
            client_app(
                message(None, "query.describe"),
                context({"partition-id": 2, "oracle": f"127.0.0.1:{port}"}, {**SMALL, "dim": 4}),
            )
    finally:
        server.stop(0)


def test_the_clientapp_import_path_is_light():
    code = (
        "import sys, fedzoo_client.app; bad = [m for m in ('torch', 'fedzoo_oracle.client', 'ray', 'fedzoo_attack') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("fn", "timeout", "match"),
    [
        ("raises", 30.0, "sensor offline"),
        ("nan_first", 30.0, "(?i)nan|non-finite"),
        ("wrong_length", 30.0, "values"),
        ("sleepy", 0.2, "(?i)tries|deadline"),
    ],
)
def test_a_failing_remote_oracle_gives_a_clear_error_never_a_value(fn, timeout, match, monkeypatch):
    """The handler raises (Flower turns it into an error reply the server skips)."""
    from fedzoo.errors import FedZooError
    from fedzoo.objectives.base import CallableObjective
    from fedzoo_oracle.server import start_oracle_server
    from tests.proto import oracle_fixtures

    monkeypatch.setenv("FEDZOO_TEST_SLEEP_S", "4.0")  # outlasts every retry (~2.2 s in all)
    server, port = start_oracle_server(CallableObjective(getattr(oracle_fixtures, fn), 10), port=0)
    try:
        ctx = context({"partition-id": 2, "oracle": f"127.0.0.1:{port}", "oracle-timeout": timeout})
        with pytest.raises(FedZooError, match=match):
            client_app(message(train_payload(), MessageType.TRAIN), ctx)
        # nothing half-done was stored: a fresh state whose running total counts the one
        # point handed to the oracle (an upper bound: it may have been evaluated)
        stored = {k: v.numpy() for k, v in ctx.state[STATE_KEY].items()}
        assert stored["history-x"].shape[0] == 0 and int(stored["total-queries"][0]) == 1
    finally:
        server.stop(0)
