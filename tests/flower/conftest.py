"""Fixtures of the Flower tests: a private Flower environment and in-process grids."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedzoo_client.app import app as client_app
from fedzoo_launch.local import SESSION_ENV
from fedzoo_server.settings import parse_run_config
from tests.flower.inprocess import InProcessGrid, Tamper, task_identity

# dim 10, 3 clients, 3 rounds, M = 200 (the parity setting of the issue)
SMALL = {"dim": 10, "num-clients": 3, "rounds": 3, "rff-features": 200}


@pytest.fixture(scope="session", autouse=True)
def flower_environment() -> Iterator[None]:
    """Every Flower process of these tests: private home, offline, quiet, 1 BLAS thread."""
    home = Path(tempfile.mkdtemp(prefix="fz-flwr-home-"))
    ray_tmp = Path(tempfile.mkdtemp(prefix="fzr", dir="/tmp"))
    values = {
        "FLWR_HOME": str(home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "RAY_TMPDIR": str(ray_tmp),
        "OPENBLAS_NUM_THREADS": "1",
        TEST_RUN_ENV: TEST_RUN,  # inherited by every process these tests start
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def identity() -> Iterator[None]:
    """The task identity a ServerApp process has (to build outgoing Messages)."""
    with task_identity():
        yield


def make_grid(
    run_config: dict[str, Any],
    node_configs: list[dict[str, Any]] | None = None,
    tamper: Tamper | None = None,
    **kwargs: Any,
) -> InProcessGrid:
    n = parse_run_config(run_config).num_clients
    configs = node_configs if node_configs is not None else [{"partition-id": i} for i in range(n)]
    return InProcessGrid(client_app, configs, run_config, tamper=tamper, **kwargs)


#: Marks the processes of this test run, so that another run's Flower sessions on the
#: same machine (a second pytest, a benchmark) are not mistaken for leftovers.
TEST_RUN_ENV = "FEDZOO_TEST_RUN"
TEST_RUN = uuid.uuid4().hex


def marked_processes() -> set[int]:
    """Live processes started by a fedzoo Flower session of this test run (both markers in
    the environment)."""
    found = set()
    ours = f"{TEST_RUN_ENV}={TEST_RUN}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"{SESSION_ENV}=".encode() in environ and ours in environ:
                found.add(int(entry.name))
    return found


@pytest.fixture
def no_leftovers():
    before = marked_processes()
    yield
    deadline = time.monotonic() + 10
    while (left := marked_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind: {sorted(left)}"


def same(a, b):
    return a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    )
