"""The oracle's gate (fedzoo issue 24): a call is authenticated from its headers before its
request body is read or decoded; undecodable bodies are INVALID_ARGUMENT (not INTERNAL, the
code for "objective failed, charged"); gRPC's message-size limit holds for callers with the
token too. Real ``oracle serve`` processes on 127.0.0.1 (stopped by PID), and an in-process
server with a deserializer spy."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")

from fedzoo_proto import oracle_pb2  # noqa: E402

from fedzoo.objectives.base import CallableObjective  # noqa: E402
from fedzoo_oracle.client import RemoteOracle, with_doubles  # noqa: E402
from fedzoo_oracle.server import (  # noqa: E402
    ERROR_METADATA_KEY,
    UNAUTHENTICATED_DETAILS,
    OracleServicer,
    message_limit,
)

from .servers import QUADRATIC_ARGS, OraclePool  # noqa: E402

TOKEN = "gate-token-0123456789abcdef"
GENEROUS_S = 15.0
EVALUATE = "/fedzoo.oracle.v1.Oracle/Evaluate"
DESCRIBE = "/fedzoo.oracle.v1.Oracle/Describe"
DIM, MAX_BATCH = 5, 64  # QUADRATIC_ARGS
LIMIT = message_limit(MAX_BATCH, DIM)  # 4 MiB
# Not a protobuf message: field 1 with wire type 7 (no such wire type).
GARBAGE = b"\x0f" + b"\xff" * 64
BIG = 3 * 1024 * 1024  # within the limit


def bearer(token: str = TOKEN) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def request_bytes(n: int, d: int = DIM, pad: int = 0) -> bytes:
    """A serialised EvaluateRequest of n points in the box, padded with request_id."""
    x = np.random.default_rng(n).uniform(size=n * d)
    message = with_doubles(oracle_pb2.EvaluateRequest, "x", x, n=n, d=d)
    message.request_id = "p" * pad
    return message.SerializeToString()


def describe(address: str) -> oracle_pb2.DescribeReply:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            DESCRIBE, response_deserializer=oracle_pb2.DescribeReply.FromString
        )
        return call(b"", timeout=GENEROUS_S, metadata=bearer())


def raw_call(address: str, payload: bytes, metadata=None, method: str = EVALUATE):
    """Send ``payload`` as is (no serialisation on this side); return the RpcError."""
    options = [("grpc.max_send_message_length", len(payload) + 1024 * 1024)]
    with grpc.insecure_channel(address, options=options) as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(method)(payload, timeout=GENEROUS_S, metadata=metadata)
    return info.value


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OraclePool]:
    root = tmp_path_factory.mktemp("gate")
    token_file = root / "token.txt"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    servers = OraclePool(root)
    try:
        servers.spawn("token", *QUADRATIC_ARGS, "--token-file", str(token_file))
        servers.spawn("open", *QUADRATIC_ARGS)  # loopback, no token
        yield servers
    finally:
        servers.stop_all()


@pytest.mark.parametrize(
    "payload",
    [request_bytes(3), GARBAGE, request_bytes(1, pad=BIG)],
    ids=["valid", "undecodable", "3MB"],
)
@pytest.mark.parametrize("metadata", [None, bearer("wrong-token-0123456789abcdef")])
def test_a_caller_without_the_token_is_refused_whatever_it_sends(pool, payload, metadata):
    server = pool.get("token")
    before = describe(server.address).total_queries
    err = raw_call(server.address, payload, metadata)
    # UNAUTHENTICATED even for bytes that do not decode: the body was never looked at.
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    assert err.details() == UNAUTHENTICATED_DETAILS
    assert dict(err.trailing_metadata())[ERROR_METADATA_KEY] == "AuthenticationError"
    assert describe(server.address).total_queries == before


@pytest.mark.parametrize("name", ["token", "open"])
def test_an_undecodable_body_is_invalid_argument_and_not_charged(pool, name):
    server = pool.get(name)
    metadata = bearer() if name == "token" else None
    before = describe(server.address).total_queries
    for payload in (GARBAGE, b"\x0a\x10" + b"\x00" * 3):  # bad wire type; truncated field
        err = raw_call(server.address, payload, metadata)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        assert "not a valid fedzoo.oracle.v1 message" in err.details()
        assert "Nothing was evaluated or charged" in err.details()
        assert dict(err.trailing_metadata())[ERROR_METADATA_KEY] == "PayloadError"
    assert describe(server.address).total_queries == before


def test_an_oversize_body_is_refused_by_grpc_with_the_token_too(pool):
    server = pool.get("token")
    before = describe(server.address).total_queries
    payload = request_bytes(1, pad=LIMIT + 1024)
    err = raw_call(server.address, payload, bearer())
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert str(LIMIT) in err.details()  # gRPC's "Received message larger than max (...)"
    assert ERROR_METADATA_KEY not in dict(err.trailing_metadata() or ())
    # Without the token the same body is refused before its size matters.
    assert raw_call(server.address, payload).code() == grpc.StatusCode.UNAUTHENTICATED
    assert describe(server.address).total_queries == before


def test_an_authorised_caller_is_served(pool):
    server = pool.get("token")
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary(
            EVALUATE, response_deserializer=oracle_pb2.EvaluateReply.FromString
        )
        before = describe(server.address).total_queries
        reply = call(request_bytes(3), timeout=GENEROUS_S, metadata=bearer())
        assert len(reply.values) == 3 and reply.total_queries == before + 3
        big = call(request_bytes(MAX_BATCH, pad=32), timeout=GENEROUS_S, metadata=bearer())
        assert len(big.values) == MAX_BATCH
    with RemoteOracle(server.address, token=TOKEN, timeout_s=GENEROUS_S) as oracle:
        assert oracle(np.full((2, DIM), 0.5)).shape == (2,)


# --------------------------------------------------------------------------------------
# In process: the gate refuses before anything is deserialised
# --------------------------------------------------------------------------------------
@pytest.fixture
def spied() -> Iterator[tuple[str, list[int], CallableObjective]]:
    """A gated servicer (token TOKEN) whose Evaluate deserializer records every call."""
    objective = CallableObjective(lambda X: X.sum(axis=1), DIM)
    servicer = OracleServicer(objective, max_batch=MAX_BATCH, token=TOKEN)
    seen: list[int] = []

    def spy(data: bytes) -> oracle_pb2.EvaluateRequest:
        seen.append(len(data))
        return oracle_pb2.EvaluateRequest.FromString(data)

    handlers = {
        "Evaluate": grpc.unary_unary_rpc_method_handler(
            servicer.Evaluate,
            request_deserializer=spy,
            response_serializer=oracle_pb2.EvaluateReply.SerializeToString,
        )
    }
    server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=[servicer.gate()])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("fedzoo.oracle.v1.Oracle", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", seen, objective
    finally:
        server.stop(None)


def test_the_gate_refuses_before_the_request_is_deserialised(spied):
    address, seen, objective = spied
    for metadata in (None, bearer("wrong-token-0123456789abcdef"), bearer(TOKEN[:-1])):
        for payload in (request_bytes(2), request_bytes(1, pad=BIG)):
            code = raw_call(address, payload, metadata).code()
            assert code == grpc.StatusCode.UNAUTHENTICATED
    assert seen == [] and objective.num_queries == 0
    with grpc.insecure_channel(address) as channel:
        reply = channel.unary_unary(
            EVALUATE, response_deserializer=oracle_pb2.EvaluateReply.FromString
        )(request_bytes(2), timeout=GENEROUS_S, metadata=bearer())
    assert len(reply.values) == 2 and seen == [len(request_bytes(2))]
    err = raw_call(address, GARBAGE, bearer())  # the spy raises: still INVALID_ARGUMENT
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert seen[-1] == len(GARBAGE) and objective.num_queries == 2
