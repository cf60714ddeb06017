"""The black-box oracle over real gRPC on 127.0.0.1: server CLI, RemoteOracle, errors."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")

from fedzoo_proto import oracle_pb2, oracle_pb2_grpc  # noqa: E402

from fedzoo.errors import (  # noqa: E402
    BudgetExceededError,
    ConfigError,
    DomainError,
    ObjectiveError,
    PayloadError,
    ShapeError,
)
from fedzoo.objectives.base import CallableObjective  # noqa: E402
from fedzoo.objectives.problems import make_problem  # noqa: E402
from fedzoo_oracle.cli import add_arguments, build_objective, load_callable  # noqa: E402
from fedzoo_oracle.client import RemoteOracle  # noqa: E402
from fedzoo_oracle.server import ERROR_METADATA_KEY, start_oracle_server  # noqa: E402

from .servers import (  # noqa: E402
    QUADRATIC_ARGS,
    REPO_ROOT,
    OraclePool,
    OracleProcess,
    make_self_signed,
)

FIXTURES = "tests.proto.oracle_fixtures"
FAST = {"timeout_s": 2.0, "retries": 0}


# Every server the tests need, started in parallel once per module; a test fetches its own
# by name (servers that hold state or get killed serve one test only).
SERVERS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "quadratic": (QUADRATIC_ARGS, {}),
    "budget": ((*QUADRATIC_ARGS, "--budget", "10"), {}),
    "raises": (("--callable", f"{FIXTURES}:raises", "--dim", "3"), {}),
    "nan_first": (("--callable", f"{FIXTURES}:nan_first", "--dim", "3"), {}),
    "wrong_length": (("--callable", f"{FIXTURES}:wrong_length", "--dim", "3"), {}),
    "sleepy-0.5": (
        ("--callable", f"{FIXTURES}:sleepy", "--dim", "2"),
        {"FEDZOO_TEST_SLEEP_S": "0.5"},
    ),
    "sleepy-1.5": (
        ("--callable", f"{FIXTURES}:sleepy", "--dim", "2"),
        {"FEDZOO_TEST_SLEEP_S": "1.5"},
    ),
    "sleepy-budget": (
        ("--callable", f"{FIXTURES}:sleepy", "--dim", "2", "--budget", "3"),
        {"FEDZOO_TEST_SLEEP_S": "0.5"},
    ),
    "to-kill": (QUADRATIC_ARGS, {}),
    "to-terminate": (QUADRATIC_ARGS, {}),
}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path] | None:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def oracles(
    tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path] | None
) -> Iterator[OraclePool]:
    pool = OraclePool(tmp_path_factory.mktemp("oracles"))
    try:
        for name, (args, env) in SERVERS.items():
            pool.spawn(name, *args, env=env)
        if tls_files is not None:
            cert, key = tls_files
            pool.spawn("tls", *QUADRATIC_ARGS, "--tls-cert", str(cert), "--tls-key", str(key))
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def quadratic_oracle(oracles: OraclePool) -> OracleProcess:
    return oracles.get("quadratic")


def quadratic_reference():
    """The in-process twin of the objective served by ``quadratic_oracle``."""
    return make_problem("quadratic", dim=5, clients=3, heterogeneity=0.7, seed=11).objectives[1]


def points(n: int, d: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, d))


# --------------------------------------------------------------------------------------
# Describe / Evaluate against the in-process objective
# --------------------------------------------------------------------------------------
def test_describe(quadratic_oracle: OracleProcess) -> None:
    with RemoteOracle(quadratic_oracle.address, **FAST) as oracle:
        info = oracle.describe()
        assert oracle.dim == 5
        assert (info["lower"], info["upper"]) == (0.0, 1.0)
        assert info["has_budget"] is False and info["remaining_budget"] is None
        assert info["api_version"] == "v1" and oracle.api_version == "v1"
        assert info["max_batch"] == 64
        assert info["name"] == "quadratic-client1"
        assert oracle.budget is None and oracle.num_queries == 0


def test_values_equal_in_process_objective(quadratic_oracle: OracleProcess) -> None:
    reference = quadratic_reference()
    with RemoteOracle(quadratic_oracle.address, **FAST) as oracle:
        X = points(40, seed=1)
        np.testing.assert_array_equal(oracle(X), reference(X))
        x = points(1, seed=2)[0]
        np.testing.assert_array_equal(oracle(x), reference(x))  # one point as a 1-d array
        assert oracle.num_queries == 41
        assert oracle.server_remaining is None
        assert oracle.server_queries is not None and oracle.server_queries >= 41


def test_batch_over_max_batch_is_refused_unsent(quadratic_oracle: OracleProcess) -> None:
    with RemoteOracle(quadratic_oracle.address, **FAST) as oracle:
        before = oracle.describe()["total_queries"]
        with pytest.raises(PayloadError, match="max_batch=64"):
            oracle(points(65))
        assert oracle.num_queries == 0
        assert oracle.describe()["total_queries"] == before


def test_bad_points_are_rejected_locally(quadratic_oracle: OracleProcess) -> None:
    with RemoteOracle(quadratic_oracle.address, **FAST) as oracle:
        with pytest.raises(ShapeError, match="d=5"):
            oracle(points(3, d=4))
        with pytest.raises(DomainError):
            oracle(points(3) + 2.0)
        assert oracle.num_queries == 0


def raw_stub(address: str) -> tuple[grpc.Channel, oracle_pb2_grpc.OracleStub]:
    channel = grpc.insecure_channel(address)
    return channel, oracle_pb2_grpc.OracleStub(channel)


def error_type(err: grpc.RpcError) -> str:
    return dict(err.trailing_metadata() or ()).get(ERROR_METADATA_KEY, "")


@pytest.mark.parametrize(
    ("request_fields", "fedzoo_error", "fragment"),
    [
        ({"x": [0.5] * 9, "n": 2, "d": 5}, "ShapeError", "n*d = 2*5 = 10"),
        ({"x": [0.5] * 8, "n": 2, "d": 4}, "ShapeError", "dimension d=5"),
        ({"x": [], "n": 0, "d": 5}, "ShapeError", "n >= 1"),
        ({"x": [0.5] * 65 * 5, "n": 65, "d": 5}, "ShapeError", "max_batch=64"),
        ({"x": [0.5, float("nan"), 0.5, 0.5, 0.5], "n": 1, "d": 5}, "NonFiniteError", "finite"),
        ({"x": [0.5, 1.5, 0.5, 0.5, 0.5], "n": 1, "d": 5}, "DomainError", "unit box"),
    ],
)
def test_server_rejects_bad_requests(
    quadratic_oracle: OracleProcess, request_fields: dict, fedzoo_error: str, fragment: str
) -> None:
    channel, stub = raw_stub(quadratic_oracle.address)
    with channel:
        before = stub.Describe(oracle_pb2.DescribeRequest(), timeout=2).total_queries
        with pytest.raises(grpc.RpcError) as info:
            stub.Evaluate(oracle_pb2.EvaluateRequest(**request_fields), timeout=2)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in info.value.details()
        assert error_type(info.value) == fedzoo_error
        assert stub.Describe(oracle_pb2.DescribeRequest(), timeout=2).total_queries == before


def test_request_id_replays_and_refuses_reuse(quadratic_oracle: OracleProcess) -> None:
    channel, stub = raw_stub(quadratic_oracle.address)
    X = points(3, seed=5)
    request = oracle_pb2.EvaluateRequest(x=X.ravel().tolist(), n=3, d=5, request_id="abc")
    with channel:
        first = stub.Evaluate(request, timeout=2)
        again = stub.Evaluate(request, timeout=2)
        assert not first.replayed and again.replayed
        assert list(again.values) == list(first.values)
        assert again.total_queries == first.total_queries  # not evaluated again
        other = oracle_pb2.EvaluateRequest(x=(X / 2).ravel().tolist(), n=3, d=5, request_id="abc")
        with pytest.raises(grpc.RpcError) as info:
            stub.Evaluate(other, timeout=2)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "already used" in info.value.details()


# --------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------
def test_server_budget_exhaustion(oracles: OraclePool) -> None:
    server = oracles.get("budget")
    reference = quadratic_reference()
    with RemoteOracle(server.address, **FAST) as oracle:
        assert oracle.describe()["remaining_budget"] == 10
        np.testing.assert_array_equal(oracle(points(6)), reference(points(6)))
        assert oracle.server_remaining == 4
        with pytest.raises(BudgetExceededError, match=server.address) as info:
            oracle(points(6, seed=3))
        assert "4 left" in str(info.value)
        assert oracle.num_queries == 6  # the refused batch is not counted
        info_after = oracle.describe()
        assert info_after["total_queries"] == 6 and info_after["remaining_budget"] == 4
        oracle(points(4, seed=4))
        assert oracle.server_remaining == 0 and oracle.num_queries == 10


def test_client_budget_is_checked_before_sending(quadratic_oracle: OracleProcess) -> None:
    with RemoteOracle(quadratic_oracle.address, budget=3, **FAST) as oracle:
        before = oracle.describe()["total_queries"]
        with pytest.raises(BudgetExceededError):
            oracle(points(4))
        assert oracle.num_queries == 0
        assert oracle.describe()["total_queries"] == before


# --------------------------------------------------------------------------------------
# Objective failures
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("function", "fragment"),
    [
        ("raises", "sensor offline"),
        ("nan_first", re.escape("non-finite value y[0] = nan")),
        ("wrong_length", "must return 2 values"),
    ],
)
def test_objective_failure_is_internal(oracles: OraclePool, function: str, fragment: str) -> None:
    server = oracles.get(function)
    with RemoteOracle(server.address, **FAST) as oracle:
        with pytest.raises(ObjectiveError, match=fragment) as info:
            oracle(np.full((2, 3), 0.25))
        assert server.address in str(info.value)
        assert isinstance(info.value.__cause__, grpc.RpcError)
        assert info.value.__cause__.code() == grpc.StatusCode.INTERNAL
        # The objective was called: both sides count the batch.
        assert oracle.num_queries == 2
        assert oracle.describe()["total_queries"] == 2


# --------------------------------------------------------------------------------------
# Transient failures: deadlines and a dead server
# --------------------------------------------------------------------------------------
def test_timed_out_batch_is_replayed_not_reevaluated(oracles: OraclePool) -> None:
    server = oracles.get("sleepy-0.5")
    with RemoteOracle(server.address, timeout_s=0.3, retries=4, backoff_s=0.05) as oracle:
        X = np.array([[0.25, 0.5], [1.0, 0.0]])
        np.testing.assert_array_equal(oracle(X), X.sum(axis=1))
        assert oracle.num_queries == 2
        assert oracle.describe()["total_queries"] == 2  # evaluated once despite the retry


def test_retries_never_charge_a_budget_twice(oracles: OraclePool) -> None:
    server = oracles.get("sleepy-budget")  # budget 3, each batch takes 0.5 s
    with RemoteOracle(server.address, timeout_s=0.3, retries=4, backoff_s=0.05) as oracle:
        np.testing.assert_array_equal(oracle(np.full((2, 2), 0.25)), [0.5, 0.5])  # retried
        assert oracle.server_remaining == 1 and oracle.num_queries == 2
        with pytest.raises(BudgetExceededError, match="1 left"):
            oracle(np.full((2, 2), 0.5))  # refused, never evaluated, not counted
        assert oracle.num_queries == 2
        info = oracle.describe()
        assert info["total_queries"] == 2 and info["remaining_budget"] == 1


def test_deadline_retries_then_objective_error(oracles: OraclePool) -> None:
    server = oracles.get("sleepy-1.5")
    with RemoteOracle(server.address, timeout_s=0.2, retries=2, backoff_s=0.05) as oracle:
        start = time.monotonic()
        with pytest.raises(ObjectiveError) as info:
            oracle(np.full((3, 2), 0.5))
        elapsed = time.monotonic() - start
        message = str(info.value)
        assert "after 3 tries" in message and "DEADLINE_EXCEEDED" in message
        assert server.address in message
        assert 0.6 <= elapsed < 3.0  # three 0.2 s deadlines and two back-offs
        assert oracle.num_queries == 3  # it may have been evaluated: counted
        assert oracle.describe()["total_queries"] == 3  # ... and it was, exactly once


def test_dead_server_retries_then_objective_error(oracles: OraclePool) -> None:
    server = oracles.get("to-kill")
    oracle = RemoteOracle(server.address, timeout_s=1.0, retries=2, backoff_s=0.05)
    with oracle:
        oracle(points(2))
        server.signal(signal.SIGKILL)
        server.proc.wait(timeout=5)
        start = time.monotonic()
        with pytest.raises(ObjectiveError) as info:
            oracle(points(2))
        message = str(info.value)
        assert "after 3 tries" in message and "UNAVAILABLE" in message
        assert server.address in message
        assert time.monotonic() - start < 5.0
        assert oracle.num_queries == 4  # unknown outcome: counted


def test_unreachable_server_at_construction() -> None:
    with pytest.raises(ObjectiveError, match="after 2 tries.*UNAVAILABLE"):
        RemoteOracle("127.0.0.1:1", timeout_s=0.5, retries=1, backoff_s=0.01)


# --------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------
def test_tls(oracles: OraclePool, tls_files: tuple[Path, Path] | None) -> None:
    if tls_files is None:
        pytest.skip("openssl is not installed")
    cert, _ = tls_files
    server = oracles.get("tls")
    X = points(7, seed=9)
    with RemoteOracle(server.address, root_certificates=str(cert), **FAST) as oracle:
        np.testing.assert_array_equal(oracle(X), quadratic_reference()(X))
    pem = cert.read_text()
    with RemoteOracle(f"localhost:{server.port}", root_certificates=pem, **FAST) as oracle:
        np.testing.assert_array_equal(oracle(X), quadratic_reference()(X))
    with pytest.raises(ObjectiveError, match="UNAVAILABLE"):
        RemoteOracle(server.address, timeout_s=1.0, retries=0)  # plaintext to a TLS port


# --------------------------------------------------------------------------------------
# Server process and CLI
# --------------------------------------------------------------------------------------
def test_sigterm_stops_gracefully(oracles: OraclePool) -> None:
    server = oracles.get("to-terminate")
    assert f"oracle listening on 127.0.0.1:{server.port}" in server.stderr()
    assert server.stop() == 0
    assert not server.port_file.exists()
    assert "shutting down" in server.stderr()


def test_in_process_server_and_port() -> None:
    objective = CallableObjective(lambda X: X.sum(axis=1), 2, budget=5)
    server, port = start_oracle_server(objective, port=0, max_batch=4)
    try:
        with RemoteOracle(f"127.0.0.1:{port}", **FAST) as oracle:
            assert oracle.max_batch == 4
            np.testing.assert_array_equal(oracle([[0.5, 0.25]]), [0.75])
        assert objective.num_queries == 1
    finally:
        server.stop(None)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["serve", *argv])


def test_cli_builds_the_requested_objective() -> None:
    objective = build_objective(parse(*QUADRATIC_ARGS, "--budget", "7"))
    X = points(4)
    assert objective.budget == 7 and objective.name == "quadratic-client1"
    np.testing.assert_array_equal(objective(X), quadratic_reference()(X))
    wrapped = build_objective(parse("--callable", f"{FIXTURES}:total", "--dim", "3"))
    assert isinstance(wrapped, CallableObjective) and wrapped.dim == 3


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("--callable", f"{FIXTURES}:total"), "needs --dim"),
        (("--callable", f"{FIXTURES}:total", "--dim", "2", "--client-id", "1"), "--problem only"),
        (("--problem", "quadratic", "--clients", "2", "--client-id", "2"), r"\[0, 1\]"),
    ],
)
def test_cli_rejects_bad_combinations(argv: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build_objective(parse(*argv))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("os.system", "must look like"),
        ("__import__('os'):system", "must look like"),
        ("fedzoo_no_such_module:f", "Cannot import"),
        (f"{FIXTURES}:missing", "no attribute"),
        ("tests.proto.oracle_fixtures:os.sep", "not a callable"),
    ],
)
def test_load_callable_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_callable(spec)


def test_cli_reports_config_errors(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedzoo_oracle.cli",
            "serve",
            "--callable",
            "nope_mod:f",
            "--dim",
            "2",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "Cannot import module 'nope_mod'" in proc.stderr


def test_fedzoo_import_does_not_load_grpc() -> None:
    code = (
        "import sys, fedzoo, fedzoo.objectives.problems, fedzoo_client, fedzoo_oracle, fedzoo_proto;"
        "loaded = [m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=30)
