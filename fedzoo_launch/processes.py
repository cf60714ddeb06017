"""Stop every process a Flower component spawned, including detached ones.

``flower-superlink`` starts ``flower-superexec`` in a *new session* (outside its process
group), which starts ``flwr-simulation`` / ``flwr-serverapp`` / ``flwr-clientapp`` and
Ray's daemons. Killing the SuperLink's process group therefore is not enough. Every
process started here carries a unique marker in its environment (the private
``FLWR_HOME`` path), inherited by all its descendants, detached or not; :func:`stop`
terminates the group of the process we started, then every process whose environment
holds the marker (Linux ``/proc``; elsewhere only the group is stopped). Only processes
with our marker are ever signalled.

Two more guards hold when the driver itself dies without running its cleanups (SIGKILL):
the processes :class:`fedzoo_launch.local.Session` starts get a parent-death signal
(:func:`set_parent_death_signal`, Linux ``PR_SET_PDEATHSIG``: SIGTERM when the driver
dies), and the session's watchdog (:mod:`fedzoo_launch.watchdog`) kills every process of the
session: marked, descended from one, or in one of their process groups or sessions
(:func:`process_table` and :func:`has_env` are its view of ``/proc``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``; the "parent" is the thread that forked it). Usable in a
    ``preexec_fn``. False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class ProcStat:
    """What ``/proc/<pid>/stat`` says of a live (not zombie) process."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot: (pid, start) names one process for good


def _parse_stat(pid: int, data: bytes) -> ProcStat | None:
    rest = data[data.rindex(b")") + 2 :].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return ProcStat(pid, int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19]))


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` of a live process; None if gone, a zombie, or not Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return _parse_stat(pid, f.read())
    except (OSError, ValueError, IndexError):
        return None


def process_table() -> dict[int, ProcStat]:
    """Every live process (Linux /proc; empty elsewhere), by PID."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    table = {}
    for name in names:
        if name.isdigit() and (st := proc_stat(int(name))) is not None:
            table[st.pid] = st
    return table


def has_env(pid: int, key: str, value: str) -> bool:
    """Whether the environment process ``pid`` started with holds ``key=value``."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{key}={value}".encode() in environ.split(b"\0")


def processes_with_env(key: str, value: str, exclude: Collection[int] = ()) -> list[int]:
    """PIDs of live processes whose environment has ``key=value`` (Linux /proc), this
    process and ``exclude`` left out."""
    needle = f"{key}={value}".encode()
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    own = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == own or int(entry.name) in exclude:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return sorted(found)


def _signal(pid: int, sig: int, group: bool = False) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pids: list[int], timeout_s: float, key: str, value: str) -> list[int]:
    deadline = time.monotonic() + timeout_s
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = set(processes_with_env(key, value))
        left = [p for p in left if p in alive]
    return left


def stop(
    proc: subprocess.Popen[bytes] | None,
    marker: tuple[str, str] | None = None,
    grace_s: float = 10.0,
    exclude: Collection[int] = (),
) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``) and everything it spawned.

    SIGTERM to its process group, wait up to ``grace_s``, SIGKILL the group; then
    SIGTERM / SIGKILL every remaining process carrying ``marker`` (env key, value),
    but those in ``exclude`` (the session's watchdog, stopped last).
    """
    if proc is not None:
        if proc.poll() is None:
            _signal(proc.pid, signal.SIGTERM, group=True)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        _signal(proc.pid, signal.SIGKILL, group=True)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:  # pragma: no cover - ignores SIGKILL
            pass
    if marker is None:
        return
    key, value = marker
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        pids = processes_with_env(key, value, exclude)
        if not pids:
            return
        for pid in pids:
            _signal(pid, sig)
        _wait_gone(pids, wait, key, value)
