"""Start and stop local Flower processes: SuperLink, SuperNodes, the ``flwr`` CLI.

Used by :mod:`fedzoo_launch.driver` (private local simulation), the deployment runner
(``simulations/deploy/run_deployment.py``), the end-to-end tests and the overhead
benchmark. Every process started here:

* runs with :func:`flower_env`: a private ``FLWR_HOME``,
  ``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1`` (offline: no ``uv sync``),
  ``FLWR_TELEMETRY_ENABLED=0``, ``FLWR_DISABLE_UPDATE_CHECK=1``, a short ``RAY_TMPDIR``,
  one BLAS thread, this environment's ``bin`` first on ``PATH`` (the SuperLink spawns
  ``flower-superexec`` / ``flwr-*`` through it) and the session marker
  ``FEDZOO_FLOWER_SESSION=<token>``;
* is started with ``start_new_session=True`` on 127.0.0.1 and a free port, and (Linux,
  from the main thread) with a parent-death signal: SIGTERM when the driver dies;
* is stopped by :meth:`Session.stop` (its own group first, then every process that
  carries the session marker, see :mod:`fedzoo_launch.processes`, then the session's watchdog
  kills whatever outlived that), or, when the driver dies without stopping it (SIGKILL),
  by the session's watchdog (:mod:`fedzoo_launch.watchdog`, started before the session's first
  process, told of the driver's death by the end of its stdin pipe), which kills every
  process of the session at once (marked, descended from one, or in their process
  groups) and removes the session's temporary directories
  (:attr:`Session.remove_on_orphan`);
* a SuperNode that exits (rejected: an unregistered key) is collected by
  :meth:`Session.reap` (every poll of :meth:`Session.wait`), which stops the
  ``flower-superexec`` it leaves.

TLS material for a deployment comes from :func:`make_certificates` (openssl: a CA and a
server certificate with SAN ``IP:127.0.0.1, DNS:localhost``) and SuperNode keys from
:func:`make_node_key` (``ssh-keygen -t ecdsa -b 384``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedzoo.errors import FedZooError
from fedzoo_launch import processes

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SESSION_ENV = "FEDZOO_FLOWER_SESSION"
FINISHED_OK = "finished:completed"


class FlowerLaunchError(FedZooError, RuntimeError):
    """A Flower process could not start, a run failed or timed out (with logs)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_path(name: str) -> str:
    """A console script of this interpreter's environment (``flwr``, ``flower-superlink``)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FlowerLaunchError(
            f"Cannot find {name!r}; install the extra: pip install 'fedzoo[flower]'."
        )
    return found


def flower_env(
    flwr_home: Path,
    session: str,
    ray_tmp: Path | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a Flower process (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            SESSION_ENV: session,
        }
    )
    if ray_tmp is not None:
        env["RAY_TMPDIR"] = str(ray_tmp)
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(key, "1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), *filter(None, [env.get("PATH")])]
    )
    return env


def toml_value(value: Any) -> str:
    """A config value as ``--run-config`` / ``--node-config`` parse it (TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Config values must be finite, got {value!r}.")
        return repr(value)
    if isinstance(value, str):
        # Flower reads 'key=value' pairs whose value is quoted with ' or " (no escapes in
        # between): a literal string '...' carries double quotes (JSON objective-options).
        if "\n" in value or ("'" in value and '"' in value):
            raise ValueError(
                f"Config strings cannot contain newlines, nor both kinds of quotes: {value!r}."
            )
        return f"'{value}'" if '"' in value else f'"{value}"'
    raise TypeError(f"Config values must be bool, int, float or str, got {type(value).__name__}.")


def config_string(values: Mapping[str, Any]) -> str:
    """``key=value ...`` as Flower's ``--node-config`` / ``--federation-config`` take it."""
    return " ".join(f"{k}={toml_value(v)}" for k, v in values.items())


def wait_until(condition: Any, timeout_s: float, what: str, poll_s: float = 0.5) -> Any:
    """Poll ``condition()`` until it returns something truthy (returned); raise
    FlowerLaunchError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise FlowerLaunchError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- {path} (last {len(text)} lines) ---\n" + "\n".join(text)


def wait_http(
    url: str,
    proc: subprocess.Popen[bytes] | None,
    timeout_s: float,
    what: str,
    log_path: Path | None = None,
    cafile: Path | None = None,
) -> None:
    """Poll ``url`` until it answers 2xx; raise if ``proc`` exits or time runs out."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile is not None else None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise FlowerLaunchError(
                f"{what} exited with {proc.returncode} while starting.{tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=context) as resp:
                if 200 <= resp.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise FlowerLaunchError(f"{what} did not answer {url} within {timeout_s:g} s.{tail(log_path)}")


def run_checked(
    cmd: list[str],
    *,
    what: str,
    cwd: Path | None = None,
    timeout_s: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        cmd,
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if res.returncode != 0:
        raise FlowerLaunchError(
            f"{what} failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
        )
    return res


# --------------------------------------------------------------------------------------
# TLS and SuperNode keys
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    """A self-signed CA and a server certificate for 127.0.0.1 / localhost."""

    ca: Path
    server_cert: Path
    server_key: Path


def make_certificates(directory: Path, *, days: int = 2) -> Certificates:
    """Generate a CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost) with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FlowerLaunchError("openssl is needed to generate TLS certificates.")
    ca_key, ca, key, csr, crt = (
        directory / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    steps = [
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
            "-days",
            str(days),
            "-subj",
            "/CN=fedzoo-test-ca",
        ],
        [
            openssl,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            "/CN=localhost",
        ],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(crt),
            "-days",
            str(days),
            "-sha256",
            "-extfile",
            str(ext),
        ],
    ]
    for cmd in steps:
        run_checked(cmd, what="openssl")
    return Certificates(ca, crt, key)


def make_node_key(directory: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair for SuperNode authentication: (private, public)."""
    directory.mkdir(parents=True, exist_ok=True)
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        raise FlowerLaunchError("ssh-keygen is needed to generate SuperNode keys.")
    private = directory / name
    for p in (private, private.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    run_checked(
        [ssh_keygen, "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C", name, "-f", str(private)],
        what="ssh-keygen",
    )
    return private, Path(f"{private}.pub")


# --------------------------------------------------------------------------------------
# A session: one SuperLink, its SuperNodes, the flwr CLI
# --------------------------------------------------------------------------------------
@dataclass
class Session:
    """Flower processes sharing one working directory, one FLWR_HOME and one marker.

    Args:
        workdir: logs, certificates, keys and the CLI's FLWR_HOME go here.
        simulation: start the SuperLink with ``--simulation`` (Ray virtual nodes).
        tls: serve the SuperLink over TLS with a fresh self-signed CA.
        node_auth: ``--enable-supernode-auth`` (needs ``tls``); nodes must be registered.
    """

    workdir: Path
    simulation: bool = True
    tls: bool = False
    node_auth: bool = False
    connection: str = "fedzoo"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    port: int = 0
    certs: Certificates | None = None
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    ray_tmp: Path | None = None
    #: directories the watchdog removes if the driver dies (Ray's; the caller may add)
    remove_on_orphan: list[Path] = field(default_factory=list)
    watchdog: subprocess.Popen[bytes] | None = None
    #: the private FLWR_HOME of each SuperNode, by name (marks its flower-superexec)
    node_homes: dict[str, str] = field(default_factory=dict)
    #: spawned processes that exited and were collected by :meth:`reap`: name -> status
    exited: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.node_auth and not self.tls:
            raise ValueError("SuperNode authentication needs TLS.")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="fzray", dir="/tmp"))
        self.remove_on_orphan.append(self.ray_tmp)
        self.env = flower_env(self.workdir / "flwr-home", self.token, self.ray_tmp)

    @property
    def markers(self) -> list[tuple[str, str]]:
        """Environment entries unique to this session's processes: the session marker, and
        its ``RAY_TMPDIR`` (Ray's agents keep only that of the environment they inherit)."""
        found = [(SESSION_ENV, self.token)]
        if self.ray_tmp is not None:
            found.append(("RAY_TMPDIR", str(self.ray_tmp)))
        return found

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- processes -----------------------------------------------------------------------
    def spawn(
        self, name: str, cmd: list[str], *, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in a new session with this session's marker; output to name.log.

        The first call starts the session's watchdog (:meth:`start_watchdog`); the
        process gets SIGTERM when the driver dies (from the main thread only: the
        kernel's "parent" is the forking thread)."""
        self.start_watchdog()
        log_path = self.workdir / f"{name}.log"
        full_env = dict(self.env if env is None else env)
        full_env[SESSION_ENV] = self.token
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent() if _main_thread() else None,
            )
        self.procs.append((name, proc, log_path))
        return proc

    def start_watchdog(self) -> None:
        """Start :mod:`fedzoo_launch.watchdog` for this process and session (once): it records
        the session's processes and, if this process dies without :meth:`stop` (the end
        of its stdin pipe tells it), kills them all and removes :attr:`remove_on_orphan`."""
        if self.watchdog is not None and self.watchdog.poll() is None:
            return
        cmd = [sys.executable, "-m", "fedzoo_launch.watchdog", "--parent", str(os.getpid()), "--pipe"]
        for key, value in self.markers:
            cmd += ["--marker", f"{key}={value}"]
        for directory in self.remove_on_orphan:
            cmd += ["--remove", str(directory)]
        with open(self.workdir / "watchdog.log", "wb") as out:
            self.watchdog = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
                                             start_new_session=True)

    def stop_watchdog(self, timeout_s: float = 30.0) -> None:
        """Tell the watchdog the session is stopped: it kills what outlived the graceful
        stop (it knows the processes that lost their parent or marker) and exits."""
        dog, self.watchdog = self.watchdog, None
        if dog is None:
            return
        try:
            if dog.stdin is not None:
                dog.stdin.write(b"stop\n")
                dog.stdin.close()
            dog.wait(timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            pass
        processes.stop(dog, grace_s=5.0)

    def log_of(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start_superlink(self, timeout_s: float = 60.0) -> None:
        self.port = self.port or free_port()
        cmd = [
            bin_path("flower-superlink"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-runtime-dependency-installation",
        ]
        if self.simulation:
            cmd.append("--simulation")
        if self.tls:
            self.certs = make_certificates(self.workdir / "certs")
            cmd += [
                "--ssl-ca-certfile",
                str(self.certs.ca),
                "--ssl-certfile",
                str(self.certs.server_cert),
                "--ssl-keyfile",
                str(self.certs.server_key),
            ]
        else:
            cmd.append("--insecure")
        if self.node_auth:
            cmd.append("--enable-supernode-auth")
        proc = self.spawn("superlink", cmd)
        scheme = "https" if self.tls else "http"
        wait_http(
            f"{scheme}://{self.address}/health",
            proc,
            timeout_s,
            "flower-superlink",
            self.log_of("superlink"),
            cafile=self.certs.ca if self.certs else None,
        )
        self.write_connection()

    def write_connection(self) -> Path:
        """``$FLWR_HOME/config.toml`` with this session's connection (the default)."""
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        lines = [
            "[superlink]",
            f'default = "{self.connection}"',
            "",
            f"[superlink.{self.connection}]",
            f'address = "{self.address}"',
        ]
        if self.certs is not None:
            lines.append(f'root-certificates = "{self.certs.ca}"')
        else:
            lines.append("insecure = true")
        path = home / "config.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start_supernode(
        self,
        name: str,
        node_config: Mapping[str, Any],
        *,
        private_key: Path | None = None,
        max_wait_s: float | None = None,
    ) -> subprocess.Popen[bytes]:
        """A ``flower-supernode`` (own FLWR_HOME and ClientAppIo port) for ``node_config``."""
        cmd = [
            bin_path("flower-supernode"),
            "--superlink",
            self.address,
            "--port",
            str(free_port()),
            "--node-config",
            config_string(node_config),
        ]
        if self.certs is not None:
            cmd += ["--root-certificates", str(self.certs.ca)]
        else:
            cmd.append("--insecure")
        if private_key is not None:
            cmd += ["--auth-supernode-private-key", str(private_key)]
        if max_wait_s is not None:
            cmd += ["--max-wait-time", str(max_wait_s)]
        env = dict(self.env)
        env["FLWR_HOME"] = self.node_homes[name] = str(self.workdir / f"{name}-home")
        return self.spawn(name, cmd, env=env)

    def reap(self) -> dict[str, int]:
        """Collect the spawned processes that exited since the last call (name -> exit
        status) and stop what each left behind.

        A SuperNode that exits (e.g. rejected by the SuperLink: an unregistered key,
        logged as Flower exit code 305) leaves its ``flower-superexec`` child, detached
        in its own session, retrying its connection for minutes; that child watches its
        parent's PID, but an unreaped parent is a zombie whose PID still exists. Here the
        parent is reaped and the child, found by the SuperNode's private ``FLWR_HOME``
        in its environment, stopped. :meth:`wait` calls this every poll."""
        found = {}
        for name, proc, log_path in self.procs:
            if name in self.exited or proc.poll() is None:
                continue
            found[name] = self.exited[name] = proc.returncode
            if name in self.node_homes:
                processes.stop(None, ("FLWR_HOME", self.node_homes[name]), grace_s=2.0)
            log.warning("%s exited with status %s (stopped its flower-superexec); log %s",
                        name, proc.returncode, log_path)
        return found

    def pids_running(self, fragment: str) -> list[int]:
        """PIDs of this session's processes whose command line contains ``fragment``
        (e.g. ``flwr-serverapp``, which the SuperLink's SuperExec spawns detached)."""
        found = []
        for pid in processes.processes_with_env(SESSION_ENV, self.token):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if fragment.encode() in cmd:
                found.append(pid)
        return found

    def kill(self, name: str) -> None:
        """Kill the spawned process ``name`` (and its group) at once, as a crash would."""
        for pname, proc, _ in self.procs:
            if pname == name and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def stop_run(self, run_id: int) -> None:
        """``flwr stop`` a run (e.g. one whose ServerApp died and stays "running")."""
        self.flwr("stop", str(run_id), self.connection, check=False)

    def stop(self) -> None:
        """Stop every process of this session (SuperNodes first), remove Ray's tmp dir."""
        for _, proc, _ in reversed(self.procs):
            processes.stop(proc, grace_s=5.0)
        dog = [] if self.watchdog is None else [self.watchdog.pid]
        for marker in self.markers:  # the watchdog last: if this process dies meanwhile,
            processes.stop(None, marker, grace_s=5.0, exclude=dog)  # it finishes the job
        self.stop_watchdog()
        if self.ray_tmp is not None:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- flwr CLI ------------------------------------------------------------------------
    def flwr(
        self, *args: str, check: bool = True, timeout_s: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        cmd = [bin_path("flwr"), *args]
        res = subprocess.run(
            cmd,
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            start_new_session=True,
        )
        if check and res.returncode != 0:
            raise FlowerLaunchError(
                f"{' '.join(cmd)} failed with {res.returncode}:\n{res.stdout}\n{res.stderr}"
            )
        return res

    def register(self, public_key: Path) -> None:
        """``flwr supernode register`` (SuperNode authentication)."""
        self.flwr("supernode", "register", str(public_key), self.connection)

    def submit(
        self,
        run_config: Mapping[str, Any],
        *,
        app_dir: Path | None = None,
        federation_config: Mapping[str, Any] | None = None,
    ) -> int:
        """``flwr run`` of ``app_dir`` (default: this repository, staged); returns the run id."""
        if app_dir is None:
            app_dir = self.workdir / "app"
            if not app_dir.exists():
                stage_app(app_dir)
        args = ["run", str(app_dir), self.connection, "--format", "json"]
        for key, value in run_config.items():
            args += ["--run-config", f"{key}={toml_value(value)}"]
        if federation_config:
            args += ["--federation-config", config_string(federation_config)]
        res = self.flwr(*args)
        try:
            return int(_json_in(res.stdout)["run-id"])
        except (ValueError, KeyError, TypeError) as err:
            raise FlowerLaunchError(
                f"flwr run gave no run id:\n{res.stdout}\n{res.stderr}"
            ) from err

    def status(self, run_id: int) -> str:
        """The run's status from ``flwr ls --format json`` (e.g. ``finished:completed``)."""
        res = self.flwr("ls", self.connection, "--run-id", str(run_id), "--format", "json")
        try:
            runs = _json_in(res.stdout)["runs"]
            return str(next(r for r in runs if int(r["run-id"]) == run_id)["status"])
        except (ValueError, KeyError, TypeError, StopIteration) as err:
            raise FlowerLaunchError(
                f"flwr ls gave no status for run {run_id}:\n{res.stdout}\n{res.stderr}"
            ) from err

    def wait(self, run_id: int, timeout_s: float, poll_s: float = 1.0) -> str:
        """Poll until the run is finished; return its final status."""
        deadline = time.monotonic() + timeout_s
        status = "unknown"
        while time.monotonic() < deadline:
            self.reap()
            status = self.status(run_id)
            if status.startswith("finished"):
                return status
            time.sleep(poll_s)
        raise FlowerLaunchError(
            f"Run {run_id} did not finish within {timeout_s:g} s (status {status}).\n"
            f"{self.logs(run_id)[-4000:]}"
        )

    def logs(self, run_id: int) -> str:
        """The run's log (``flwr log --show``)."""
        res = self.flwr("log", str(run_id), self.connection, "--show", check=False, timeout_s=60.0)
        return res.stdout + res.stderr

    def run(
        self,
        run_config: Mapping[str, Any],
        out_dir: Path,
        *,
        timeout_s: float,
        federation_config: Mapping[str, Any] | None = None,
        app_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Submit, wait for ``finished:completed``, save the log; return summary.json."""
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").unlink(missing_ok=True)
        run_id = self.submit(
            {**run_config, "out-dir": str(out_dir)},
            federation_config=federation_config,
            app_dir=app_dir,
        )
        status = self.wait(run_id, timeout_s)
        run_log = self.logs(run_id)
        (out_dir / "flower-run.log").write_text(run_log)
        path = out_dir / "summary.json"
        if status != FINISHED_OK:
            summary = _summary_of_failed_rounds(path)
            if summary is not None:  # a run with failed rounds: its results are the answer
                log.warning("Flower run %d ended with status %r: %s", run_id, status,
                            summary.get("error"))
                return summary
            raise FlowerLaunchError(
                f"Flower run {run_id} ended with status {status!r}:\n{run_log[-6000:]}"
            )
        if not path.exists():
            raise FlowerLaunchError(
                f"Flower run {run_id} completed but wrote no {path}:\n{run_log[-6000:]}"
            )
        return json.loads(path.read_text())


def _summary_of_failed_rounds(path: Path) -> dict[str, Any] | None:
    """summary.json of a run the ServerApp ended as failed because a round failed (no
    client could work; ``failed_rounds`` listed), else None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("status") == "failed" and data.get("failed_rounds"):
        return data
    return None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _die_with_parent() -> Any:
    """A ``preexec_fn``: SIGTERM to the child when the driver dies."""

    def preexec() -> None:
        processes.set_parent_death_signal(signal.SIGTERM)

    return preexec


def stage_app(destination: Path, app_dir: Path = REPO_ROOT) -> Path:
    """Copy the files the FAB is built from into ``destination``; return it.

    ``flwr run <dir>`` walks every file under ``<dir>`` before filtering (about 6 s for
    this repository because of ``.venv``); the staged copy holds only ``pyproject.toml``,
    ``.gitignore`` and the directories named by ``[tool.flwr.app].fab-include``, so it
    builds the same FAB (same hash) in milliseconds.
    """
    import tomllib

    config = tomllib.loads((app_dir / "pyproject.toml").read_text())
    patterns = config["tool"]["flwr"]["app"]["fab-include"]
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".gitignore"):
        if (app_dir / name).exists():
            shutil.copy2(app_dir / name, destination / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pattern in patterns:
        prefix = pattern.split("*", 1)[0].rstrip("/")
        if prefix and (app_dir / prefix).is_dir():
            shutil.copytree(
                app_dir / prefix, destination / prefix, ignore=ignore, dirs_exist_ok=True
            )
    return destination


def _json_in(text: str) -> Any:
    """The JSON object in a CLI's stdout (after any banner lines)."""
    return json.loads(text[text.index("{") :])
