"""The oracle on an open network (real gRPC on 127.0.0.1): caller authentication (shared
token, mutual TLS, refusal to expose an unauthenticated server), bounded request ids and
replay memory, batches whose caller gave up, and a busy server."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")

from fedzoo_proto import oracle_pb2, oracle_pb2_grpc  # noqa: E402

from fedzoo.errors import BudgetExceededError, ConfigError, ObjectiveError  # noqa: E402
from fedzoo.objectives.base import CallableObjective  # noqa: E402
from fedzoo_oracle import server as oracle_server  # noqa: E402
from fedzoo_oracle.cli import add_arguments  # noqa: E402
from fedzoo_oracle.client import (  # noqa: E402
    TOKEN_ENV,
    RemoteOracle,
    load_token,
    read_token_file,
)
from fedzoo_oracle.server import (  # noqa: E402
    ERROR_METADATA_KEY,
    MAX_REQUEST_ID_CHARS,
    OracleServicer,
    check_exposure,
    record_bytes_limit,
    start_oracle_server,
)

from .servers import (  # noqa: E402
    QUADRATIC_ARGS,
    REPO_ROOT,
    OraclePool,
    make_self_signed,
)

TOKEN = "s3cret-token-0123456789abcdef"
SLOW = "tests.proto.drop_fixtures:slow_marked"
SLEEPY = "tests.proto.oracle_fixtures:sleepy"
GENEROUS_S = 15.0  # deadline for things that should take well under a second


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path] | None:
    root = tmp_path_factory.mktemp("certs")
    server = make_self_signed(root / "server")
    client = make_self_signed(root / "client")
    stranger = make_self_signed(root / "stranger")
    if server is None or client is None or stranger is None:
        return None
    return {
        "server_cert": server[0],
        "server_key": server[1],
        "client_cert": client[0],
        "client_key": client[1],
        "stranger_cert": stranger[0],
        "stranger_key": stranger[1],
    }


@pytest.fixture(scope="module")
def pool(
    tmp_path_factory: pytest.TempPathFactory,
    token_file: Path,
    certs: dict[str, Path] | None,
) -> Iterator[OraclePool]:
    root = tmp_path_factory.mktemp("oracles")
    servers = OraclePool(root)
    try:
        servers.spawn("token", *QUADRATIC_ARGS, "--budget", "10", "--token-file", str(token_file))
        servers.spawn("token-env", *QUADRATIC_ARGS, env={TOKEN_ENV: TOKEN})
        servers.spawn(
            "slow",
            "--callable", SLOW, "--dim", "2", "--budget", "10",
            env={"FEDZOO_TEST_MARK": str(root / "slow.mark"), "FEDZOO_TEST_SLEEP_S": "1.5"},
        )  # fmt: skip
        servers.spawn(
            "busy",
            "--callable", SLOW, "--dim", "2", "--max-concurrent-rpcs", "1",
            env={"FEDZOO_TEST_MARK": str(root / "busy.mark"), "FEDZOO_TEST_SLEEP_S": "1.0"},
        )  # fmt: skip
        if certs is not None:
            servers.spawn(
                "mtls",
                *QUADRATIC_ARGS,
                "--tls-cert", str(certs["server_cert"]),
                "--tls-key", str(certs["server_key"]),
                "--tls-client-ca", str(certs["client_cert"]),
            )  # fmt: skip
        yield servers
    finally:
        servers.stop_all()


def stub(address: str) -> tuple[grpc.Channel, oracle_pb2_grpc.OracleStub]:
    channel = grpc.insecure_channel(address)
    return channel, oracle_pb2_grpc.OracleStub(channel)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def evaluate_request(n: int, d: int, request_id: str = "") -> oracle_pb2.EvaluateRequest:
    x = np.random.default_rng(n).uniform(size=(n, d))
    return oracle_pb2.EvaluateRequest(x=x.ravel().tolist(), n=n, d=d, request_id=request_id)


def wait_for(predicate, what: str, timeout_s: float = GENEROUS_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# --------------------------------------------------------------------------------------
# Shared token
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "metadata",
    [
        None,
        bearer("wrong-token-0123456789abcdef"),
        bearer(TOKEN[:-1]),
        (("authorization", f"Basic {TOKEN}"),),
        (("authorization", TOKEN),),
        (("x-token", f"Bearer {TOKEN}"),),
    ],
    ids=["none", "wrong", "prefix", "basic-scheme", "no-scheme", "other-key"],
)
def test_calls_without_the_token_are_unauthenticated_and_charge_nothing(pool, metadata):
    server = pool.get("token")
    channel, oracle = stub(server.address)
    with channel:
        for call, request in (
            (oracle.Describe, oracle_pb2.DescribeRequest()),
            (oracle.Evaluate, evaluate_request(3, 5, request_id="x")),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=GENEROUS_S, metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer <token>" in info.value.details()
            assert TOKEN not in info.value.details()
            assert dict(info.value.trailing_metadata())[ERROR_METADATA_KEY] == (
                "AuthenticationError"
            )
        info = oracle.Describe(oracle_pb2.DescribeRequest(), timeout=GENEROUS_S,
                               metadata=bearer(TOKEN))  # fmt: skip
        assert info.total_queries == 0 and info.remaining_budget == 10


def test_remote_oracle_sends_the_token(pool, token_file, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    server = pool.get("token")
    with pytest.raises(ObjectiveError, match="UNAUTHENTICATED; this client sent no token"):
        RemoteOracle(server.address, timeout_s=GENEROUS_S, retries=0)
    with pytest.raises(ObjectiveError, match="UNAUTHENTICATED; this client sent a token"):
        RemoteOracle(server.address, token="x" * 32, timeout_s=GENEROUS_S, retries=0)
    X = np.full((2, 5), 0.5)
    with RemoteOracle(server.address, token=TOKEN, timeout_s=GENEROUS_S) as oracle:
        assert oracle(X).shape == (2,)
        assert oracle.server_remaining == 8
    with RemoteOracle(server.address, token_file=str(token_file), timeout_s=GENEROUS_S) as o:
        o(X)
        assert o.server_remaining == 6
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with RemoteOracle(server.address, timeout_s=GENEROUS_S) as oracle:  # from the env
        oracle(X)
        assert oracle.server_remaining == 4
        with pytest.raises(BudgetExceededError):  # the server's own refusals still work
            oracle(np.full((5, 5), 0.5))
        assert oracle.num_queries == 2


def test_the_server_token_can_come_from_the_environment(pool, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    server = pool.get("token-env")
    with pytest.raises(ObjectiveError, match="UNAUTHENTICATED"):
        RemoteOracle(server.address, timeout_s=GENEROUS_S, retries=0)
    with RemoteOracle(server.address, token=TOKEN, timeout_s=GENEROUS_S) as oracle:
        assert oracle.describe()["total_queries"] == 0
    assert TOKEN not in server.stderr()


def test_an_unauthenticated_call_never_reaches_the_black_box(pool):
    """A flood of token-less Evaluate calls: none is evaluated, and the log says so in a
    bounded number of lines (not one per call)."""
    server = pool.get("token")
    channel, oracle = stub(server.address)
    with channel:
        before = oracle.Describe(oracle_pb2.DescribeRequest(), timeout=GENEROUS_S,
                                 metadata=bearer(TOKEN)).total_queries  # fmt: skip
        for _ in range(50):
            with pytest.raises(grpc.RpcError):
                oracle.Evaluate(evaluate_request(1, 5), timeout=GENEROUS_S)
        after = oracle.Describe(oracle_pb2.DescribeRequest(), timeout=GENEROUS_S,
                                metadata=bearer(TOKEN)).total_queries  # fmt: skip
    assert after == before
    assert server.stderr().count("refused an unauthenticated call") <= 3


# --------------------------------------------------------------------------------------
# Exposure: a non-loopback bind needs a token or mutual TLS
# --------------------------------------------------------------------------------------
def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    child_env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fedzoo_oracle.cli", "serve", *args],
        cwd=REPO_ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.org"])
def test_a_public_bind_without_authentication_is_refused_at_start(host):
    proc = run_cli(*QUADRATIC_ARGS, "--host", host, "--port", "0")
    assert proc.returncode == 2
    assert f"Refusing to serve on {host!r}" in proc.stderr
    assert "--token-file" in proc.stderr and "--tls-client-ca" in proc.stderr
    assert "oracle listening" not in proc.stderr


def test_tls_alone_is_not_caller_authentication(certs):
    if certs is None:
        pytest.skip("openssl is not installed")
    proc = run_cli(*QUADRATIC_ARGS, "--host", "0.0.0.0", "--port", "0",
                   "--tls-cert", str(certs["server_cert"]),
                   "--tls-key", str(certs["server_key"]))  # fmt: skip
    assert proc.returncode == 2
    assert "TLS alone authenticates the server, not its callers" in proc.stderr


def test_exposure_rules():
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        check_exposure(host, token=None, tls=False, tls_client_ca=None)  # loopback: fine
    check_exposure("0.0.0.0", token=TOKEN, tls=True, tls_client_ca=None)
    check_exposure("0.0.0.0", token=None, tls=True, tls_client_ca="ca.pem")
    for host in ("0.0.0.0", "::", "", "10.0.0.1", "oracle.internal"):
        with pytest.raises(ConfigError, match="Refusing to serve"):
            check_exposure(host, token=None, tls=False, tls_client_ca=None)


def test_a_token_over_plaintext_on_a_public_address_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="fedzoo_oracle.server"):
        check_exposure("0.0.0.0", token=TOKEN, tls=False, tls_client_ca=None)
    assert "the token travels in clear text" in caplog.text


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["serve", *argv])


@pytest.mark.parametrize("flag", ["--token", "--token-f", "--tok"])
def test_the_token_is_never_a_command_line_value(capsys, flag):
    with pytest.raises(SystemExit) as info:
        parse(*QUADRATIC_ARGS, flag, TOKEN)  # no abbreviation of --token-file either
    assert info.value.code == 2
    err = capsys.readouterr().err
    if flag == "--token":
        assert "--token-file FILE" in err and TOKEN not in err
    assert parse(*QUADRATIC_ARGS, "--token-file", "t").token_file == "t"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("short\n", "at least 16"), ("", "at least 16"), ("with a space inside it", "spaces")],
)
def test_bad_token_files_are_refused_at_start(tmp_path, content, fragment):
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(0o600)
    proc = run_cli(*QUADRATIC_ARGS, "--token-file", str(path), "--port", "0")
    assert proc.returncode == 2 and fragment in proc.stderr
    proc = run_cli(*QUADRATIC_ARGS, "--token-file", str(tmp_path / "missing"), "--port", "0")
    assert proc.returncode == 2 and "Cannot read the token file" in proc.stderr


def test_token_sources(tmp_path, caplog):
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="fedzoo_oracle.client"):
        assert read_token_file(path) == TOKEN
    assert "chmod 600" in caplog.text
    assert load_token(None, environ={}) is None
    assert load_token(None, environ={TOKEN_ENV: " "}) is None
    assert load_token(None, environ={TOKEN_ENV: TOKEN}) == TOKEN
    assert load_token(path, environ={TOKEN_ENV: "ignored-when-a-file-is-given"}) == TOKEN
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        load_token(None, environ={TOKEN_ENV: "short"})
    with pytest.raises(ConfigError, match="not both"):
        RemoteOracle("127.0.0.1:1", token=TOKEN, token_file=str(path))


# --------------------------------------------------------------------------------------
# Mutual TLS
# --------------------------------------------------------------------------------------
def test_mutual_tls(pool, certs):
    if certs is None:
        pytest.skip("openssl is not installed")
    server = pool.get("mtls")
    ca = str(certs["server_cert"])
    with RemoteOracle(server.address, root_certificates=ca, client_cert=str(certs["client_cert"]),
                      client_key=str(certs["client_key"]), timeout_s=GENEROUS_S) as oracle:  # fmt: skip
        assert oracle(np.full((2, 5), 0.5)).shape == (2,)
    for cert, key in ((None, None), (certs["stranger_cert"], certs["stranger_key"])):
        with pytest.raises(ObjectiveError, match="UNAVAILABLE"):
            RemoteOracle(server.address, root_certificates=ca,
                         client_cert=None if cert is None else str(cert),
                         client_key=None if key is None else str(key),
                         timeout_s=5.0, retries=0)  # fmt: skip


# --------------------------------------------------------------------------------------
# Bounded memory: request ids and replays
# --------------------------------------------------------------------------------------
@pytest.fixture
def in_process() -> Iterator:
    """Start a servicer on 127.0.0.1 behind a real gRPC server; stopped at the end."""
    started: list[grpc.Server] = []

    def start(servicer: OracleServicer) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        oracle_pb2_grpc.add_OracleServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        started.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in started:
        server.stop(None)


def test_request_ids_longer_than_the_limit_are_refused(in_process):
    objective = CallableObjective(lambda X: X.sum(axis=1), 2)
    channel, oracle = stub(in_process(OracleServicer(objective)))
    with channel:
        longest = "a" * MAX_REQUEST_ID_CHARS
        assert not oracle.Evaluate(evaluate_request(1, 2, longest), timeout=GENEROUS_S).replayed
        assert oracle.Evaluate(evaluate_request(1, 2, longest), timeout=GENEROUS_S).replayed
        for request_id in ("b" * (MAX_REQUEST_ID_CHARS + 1), "c" * 1_000_000):
            with pytest.raises(grpc.RpcError) as info:
                oracle.Evaluate(evaluate_request(1, 2, request_id), timeout=GENEROUS_S)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"at most {MAX_REQUEST_ID_CHARS}" in info.value.details()
    assert objective.num_queries == 1


def test_replays_are_bounded_in_bytes_oldest_evicted(in_process):
    objective = CallableObjective(lambda X: X.sum(axis=1), 1)
    budget = 3 * record_bytes_limit(1000)  # room for three full replies
    servicer = OracleServicer(objective, max_batch=1000, replay_bytes=budget)
    channel, oracle = stub(in_process(servicer))
    with channel:
        for i in range(6):
            oracle.Evaluate(evaluate_request(1000, 1, f"r{i}"), timeout=GENEROUS_S)
            assert servicer.replay_bytes_used <= budget
        assert servicer.replay_count == 3
        assert oracle.Evaluate(evaluate_request(1000, 1, "r5"), timeout=GENEROUS_S).replayed
        assert objective.num_queries == 6000
        # r0 was evicted: a retry is evaluated again (the documented cost of the bound)
        assert not oracle.Evaluate(evaluate_request(1000, 1, "r0"), timeout=GENEROUS_S).replayed
        assert objective.num_queries == 7000
        for i in range(100):  # many small replies: still within the byte budget
            oracle.Evaluate(evaluate_request(1, 1, f"s{i}"), timeout=GENEROUS_S)
            assert servicer.replay_bytes_used <= budget
        assert 3 <= servicer.replay_count < 64


def test_small_replies_are_bounded_by_the_count(in_process):
    objective = CallableObjective(lambda X: X.sum(axis=1), 1)
    servicer = OracleServicer(objective)  # defaults: 64 replies, 16 MiB
    channel, oracle = stub(in_process(servicer))
    with channel:
        for i in range(100):
            oracle.Evaluate(evaluate_request(1, 1, f"s{i}"), timeout=GENEROUS_S)
    assert servicer.replay_count == 64
    assert servicer.replay_bytes_used <= 64 * record_bytes_limit(1)


def test_a_replay_budget_below_one_reply_is_a_config_error():
    objective = CallableObjective(lambda X: X.sum(axis=1), 1)
    with pytest.raises(
        ConfigError, match=f"replay_bytes must be an integer >= {record_bytes_limit(100)}"
    ):
        OracleServicer(objective, max_batch=100, replay_bytes=record_bytes_limit(100) - 1)
    with pytest.raises(ConfigError, match="tls_client_ca"):
        start_oracle_server(objective, port=0, tls_client_ca="ca.pem")


def test_the_dead_serve_helper_is_gone():
    assert not hasattr(oracle_server, "serve")


# --------------------------------------------------------------------------------------
# A caller that gave up is not evaluated, nor charged
# --------------------------------------------------------------------------------------
def test_a_batch_whose_caller_gave_up_is_neither_evaluated_nor_charged(pool):
    server = pool.get("slow")  # budget 10; every evaluation takes 1.5 s and marks its size
    mark = server.port_file.parent.parent / "slow.mark"
    channel, oracle = stub(server.address)
    with channel, futures.ThreadPoolExecutor(1) as threads:
        first = threads.submit(oracle.Evaluate, evaluate_request(3, 2), timeout=GENEROUS_S)
        wait_for(lambda: mark.exists(), "the first batch to reach the black box")
        # While the first holds the black box: one call runs out of time, one is cancelled.
        with pytest.raises(grpc.RpcError) as info:
            oracle.Evaluate(evaluate_request(2, 2, "late"), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        cancelled = oracle.Evaluate.future(evaluate_request(4, 2), timeout=GENEROUS_S)
        time.sleep(0.2)  # let it reach the server; it waits behind the first batch
        assert cancelled.cancel()
        assert len(first.result(timeout=GENEROUS_S).values) == 3
        wait_for(lambda: "not evaluating a batch of 2 points" in server.stderr(), "the log")
        wait_for(lambda: "not evaluating a batch of 4 points" in server.stderr(), "the log")
        info = oracle.Describe(oracle_pb2.DescribeRequest(), timeout=GENEROUS_S)
        assert info.total_queries == 3 and info.remaining_budget == 7
        assert mark.read_text() == "3"  # the black box saw the first batch only
        # A retry of the abandoned request id is evaluated (not answered with a refusal).
        again = oracle.Evaluate(evaluate_request(2, 2, "late"), timeout=GENEROUS_S)
        assert not again.replayed and again.total_queries == 5 and again.remaining_budget == 5


# --------------------------------------------------------------------------------------
# A busy server (max_concurrent_rpcs) is retried, not mistaken for a refusal
# --------------------------------------------------------------------------------------
def test_a_busy_server_is_retried(pool):
    server = pool.get("busy")  # one call at a time; every evaluation takes 1 s
    mark = server.port_file.parent.parent / "busy.mark"
    with futures.ThreadPoolExecutor(1) as threads:
        with RemoteOracle(server.address, timeout_s=GENEROUS_S, retries=0) as one:
            first = threads.submit(one, np.full((3, 2), 0.5))
            wait_for(lambda: mark.exists(), "the first batch to reach the black box")
            channel, oracle = stub(server.address)
            with channel, pytest.raises(grpc.RpcError) as info:
                oracle.Describe(oracle_pb2.DescribeRequest(), timeout=GENEROUS_S)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "Concurrent RPC limit" in info.value.details()
            # back-offs 0.2, 0.4, 0.8, 1.6, 3.2, 6.4 s: far beyond the first call's 1 s
            two = RemoteOracle(server.address, timeout_s=GENEROUS_S, retries=6, backoff_s=0.2)
            with two:
                np.testing.assert_array_equal(two(np.full((2, 2), 0.25)), [0.5, 0.5])
                assert two.num_queries == 2
            np.testing.assert_array_equal(first.result(timeout=GENEROUS_S), [1.0] * 3)
            assert one.describe()["total_queries"] == 5


# --------------------------------------------------------------------------------------
# Packed doubles (no Python float per value on either side)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 7, 100_000])
def test_packed_doubles_equal_the_plain_encoding(n):
    from fedzoo_oracle.client import doubles, with_doubles

    rng = np.random.default_rng(n)
    values = rng.standard_normal(n)
    if n >= 7:
        values[:5] = [-0.0, 5e-324, 1.7976931348623157e308, -1e-310, 1.0 / 3.0]
    plain = oracle_pb2.EvaluateReply(values=values.tolist(), total_queries=3, has_budget=True)
    fast = with_doubles(
        oracle_pb2.EvaluateReply, "values", values, total_queries=3, has_budget=True
    )
    assert fast.SerializeToString() == plain.SerializeToString()
    decoded = doubles(fast.values)
    assert decoded.dtype == np.float64 and decoded.tobytes() == values.tobytes()
    single = np.clip(values, -1e30, 1e30).astype(np.float32)  # any float array is widened
    request = with_doubles(oracle_pb2.EvaluateRequest, "x", single, n=n, d=1)
    assert doubles(request.x).tobytes() == single.astype(np.float64).tobytes()
    assert request.n == n and request.d == 1
