"""Helpers that run real oracle servers (``python -m fedzoo_oracle.cli serve``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0


@dataclass
class OracleProcess:
    """A running ``oracle serve`` subprocess (its own session / process group)."""

    proc: subprocess.Popen[bytes]
    port: int
    port_file: Path
    stderr_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server's process group (by its pid)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; return the exit status."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
        return self.proc.wait(timeout=timeout_s)


def spawn(directory: Path, *args: str, env: dict[str, str] | None = None) -> OracleProcess:
    """Start ``oracle serve ARGS --port 0 --port-file ...`` without waiting for it."""
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "oracle.port"
    stderr_path = directory / "oracle.stderr"
    port_file.unlink(missing_ok=True)
    # A token in the caller's environment must not leak into servers that did not ask
    # for one (they would refuse the tests' token-less calls).
    inherited = {k: v for k, v in os.environ.items() if k != "FEDZOO_ORACLE_TOKEN"}
    child_env = {**inherited, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    cmd = [
        sys.executable,
        "-m",
        "fedzoo_oracle.cli",
        "serve",
        *args,
        "--port",
        "0",
        "--port-file",
        str(port_file),
    ]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    return OracleProcess(proc, 0, port_file, stderr_path)


def wait_ready(server: OracleProcess, timeout_s: float = START_TIMEOUT_S) -> OracleProcess:
    """Wait until ``server`` has written its port file; return it with ``port`` set."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.port_file.exists():
            server.port = int(server.port_file.read_text())
            return server
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"oracle server exited with {server.proc.returncode} before reporting its "
                f"port:\n{server.stderr()}"
            )
        time.sleep(0.02)
    server.stop()
    raise RuntimeError(f"oracle server did not report a port in {timeout_s} s")


class OraclePool:
    """Servers started together (in parallel) and fetched by name when a test needs one.

    Every server is stopped by :meth:`stop_all` (SIGTERM to each process group, then
    SIGKILL for those still running after the grace period).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._servers: dict[str, OracleProcess] = {}

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        if name in self._servers:
            raise KeyError(f"server {name!r} already started")
        self._servers[name] = spawn(self.root / name, *args, env=env)

    def get(self, name: str) -> OracleProcess:
        """The server ``name``, once it accepts calls."""
        server = self._servers[name]
        return server if server.port else wait_ready(server)

    def stop_all(self, timeout_s: float = 5.0) -> None:
        for server in self._servers.values():
            server.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for server in self._servers.values():
            try:
                server.proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                server.signal(signal.SIGKILL)
                server.proc.wait(timeout=timeout_s)


QUADRATIC_ARGS = (
    "--problem",
    "quadratic",
    "--dim",
    "5",
    "--clients",
    "3",
    "--heterogeneity",
    "0.7",
    "--seed",
    "11",
    "--client-id",
    "1",
    "--max-batch",
    "64",
)


def make_self_signed(directory: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for 127.0.0.1 / localhost, or None without openssl."""
    if shutil.which("openssl") is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key
