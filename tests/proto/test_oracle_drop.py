"""A connection dropped mid-request: the oracle server is SIGKILLed while a
:class:`fedzoo_oracle.client.RemoteOracle` call is in flight (real processes on 127.0.0.1).

* no server comes back: the call ends, after its bounded retries, in an ObjectiveError
  within a bounded time, and the batch is counted (it reached the black box and may
  have been evaluated: an upper bound, as the counting rule says);
* a server restarted on the same port within the retry window: the retried call
  succeeds with the right values, and the batch is counted once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("grpc")

from fedzoo.errors import ObjectiveError  # noqa: E402
from fedzoo_oracle.client import RemoteOracle  # noqa: E402

from .servers import REPO_ROOT, OracleProcess, spawn, wait_ready  # noqa: E402

SLOW = "tests.proto.drop_fixtures:slow_marked"
TOTAL = "tests.proto.oracle_fixtures:total"


def serve_on(directory: Path, port: int, *args: str) -> OracleProcess:
    """``oracle serve ARGS`` on a fixed port (``servers.spawn`` always asks for port 0)."""
    directory.mkdir(parents=True, exist_ok=True)
    port_file, stderr_path = directory / "oracle.port", directory / "oracle.stderr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "fedzoo_oracle.cli", "serve", *args,
           "--port", str(port), "--port-file", str(port_file)]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    return OracleProcess(proc, 0, port_file, stderr_path)


@pytest.fixture
def started() -> Iterator[list[OracleProcess]]:
    """Servers a test starts; every one still running is stopped at the end (by PID)."""
    servers: list[OracleProcess] = []
    yield servers
    for server in servers:
        server.stop()


def slow_server(tmp_path: Path, started: list[OracleProcess]) -> tuple[OracleProcess, Path]:
    mark = tmp_path / "reached"
    env = {"FEDZOO_TEST_MARK": str(mark), "FEDZOO_TEST_SLEEP_S": "30"}
    server = wait_ready(spawn(tmp_path / "slow", "--callable", SLOW, "--dim", "2", env=env))
    started.append(server)
    return server, mark


def kill_when_reached(server: OracleProcess, mark: Path, timeout_s: float = 10.0) -> None:
    """SIGKILL the server (by its PID) once the batch has reached its black box."""
    deadline = time.monotonic() + timeout_s
    while not mark.exists():
        assert time.monotonic() < deadline, "the call never reached the server"
        time.sleep(0.01)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=5)


def test_a_server_killed_mid_request_gives_a_bounded_clear_error(tmp_path, started):
    server, mark = slow_server(tmp_path, started)
    X = np.array([[0.25, 0.5], [1.0, 0.0], [0.5, 0.5]])
    with RemoteOracle(server.address, timeout_s=5.0, retries=2, backoff_s=0.1) as oracle, \
            ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        call = pool.submit(oracle, X)
        kill_when_reached(server, mark)
        with pytest.raises(ObjectiveError) as info:
            call.result(timeout=15)
        elapsed = time.monotonic() - start
    message = str(info.value)
    assert "after 3 tries" in message and "UNAVAILABLE" in message and server.address in message
    # not the 30 s the black box sleeps, nor even two 5 s deadlines (slack for a loaded CI box)
    assert elapsed < 10.0
    # the batch reached the black box (mark) and may have been evaluated: counted, once
    assert mark.read_text() == "3" and oracle.num_queries == 3


def test_a_server_restarted_on_the_same_port_answers_the_retry(tmp_path, started):
    server, mark = slow_server(tmp_path, started)
    X = np.array([[0.25, 0.5], [1.0, 0.0], [0.5, 0.5]])
    # back-offs 0.2, 0.4, 0.8, 1.6, 3.2 s: a ~6 s window for the new server to start
    with RemoteOracle(server.address, timeout_s=5.0, retries=5, backoff_s=0.2) as oracle, \
            ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        call = pool.submit(oracle, X)
        kill_when_reached(server, mark)
        again = serve_on(tmp_path / "again", server.port, "--callable", TOTAL, "--dim", "2")
        started.append(again)
        values = call.result(timeout=15)
        elapsed = time.monotonic() - start
        np.testing.assert_array_equal(values, X.sum(axis=1))
        assert wait_ready(again).port == server.port
        assert oracle.num_queries == 3  # one batch, counted once
        assert oracle.describe()["total_queries"] == 3  # the new server evaluated it once
    assert elapsed < 10.0
