"""The session watchdog and the reaper with real processes, no Flower (seconds).

A stand-in driver (a Python process holding a :class:`fedzoo_launch.local.Session`) spawns a
stand-in federation that, like Flower's, hides some of its processes from the session
marker: one detached into its own session (marked, like ``flower-superexec``), one child
started with an environment without the marker, and one such process orphaned to init
inside the federation's process group (like Ray's agents after their raylet died). The
federation ignores the parent-death SIGTERM. The driver is then SIGKILLed (none of its
cleanups run) or stops the session itself: every one of those processes must be gone,
and an unrelated process started by the test must live on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedzoo_launch import processes
from fedzoo_launch.local import Session

ROOT = Path(__file__).resolve().parents[2]
SLEEP = "import time; time.sleep(600)"

FEDERATION = r"""
import json, os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # survives the parent-death signal
work = sys.argv[1]
clean = {"PATH": os.environ.get("PATH", "")}  # no session marker
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
detached = subprocess.Popen(sleep, start_new_session=True)
unmarked = subprocess.Popen(sleep, env=clean)
mid = subprocess.Popen([sys.executable, "-c",
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], env={'PATH': ''}); "
    "print(p.pid, flush=True)", *sleep], env=clean, stdout=subprocess.PIPE)
orphan = int(mid.stdout.readline())
mid.wait()
pids = {"federation": os.getpid(), "detached": detached.pid, "unmarked": unmarked.pid,
        "orphan": orphan}
with open(work + "/pids.tmp", "w") as f:
    json.dump(pids, f)
os.rename(work + "/pids.tmp", work + "/pids.json")
time.sleep(600)
"""

DRIVER = r"""
import sys, time
from pathlib import Path
from fedzoo_launch.local import Session
work = Path(sys.argv[1])
session = Session(work / "session")
(work / "scratch").mkdir()
session.remove_on_orphan.append(work / "scratch")
(work / "ray_tmp").write_text(str(session.ray_tmp))
session.spawn("federation", [sys.executable, "-c", sys.argv[2], str(work)])
while not (work / "pids.json").exists():
    time.sleep(0.1)
if sys.argv[3] == "stop":
    session.stop()
    print("stopped", flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    return processes.proc_stat(pid) is not None


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def start_driver(work: Path, mode: str) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(work), FEDERATION, mode],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE)
    assert wait_for(lambda: (work / "pids.json").exists(), 60), "the stand-in never started"
    return driver, json.loads((work / "pids.json").read_text())


@pytest.fixture
def outsider():
    """A process of the test's own: no watchdog may touch it."""
    proc = subprocess.Popen([sys.executable, "-c", SLEEP])
    yield proc
    proc.kill()
    proc.wait()


def _kill_left(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_a_sigkilled_driver_leaves_nothing_even_unmarked_or_orphaned_processes(tmp_path, outsider):
    driver, pids = start_driver(tmp_path, "run")
    try:
        assert all(alive(p) for p in pids.values())
        ray_tmp = Path((tmp_path / "ray_tmp").read_text())
        assert ray_tmp.is_dir()
        driver.kill()  # SIGKILL: none of the driver's cleanups runs
        driver.wait()
        gone = wait_for(lambda: not any(alive(p) for p in pids.values()), 10.0)
        left = {k: p for k, p in pids.items() if alive(p)}
        assert gone and not left, f"left after 10 s: {left}"
        assert wait_for(lambda: not (tmp_path / "scratch").exists() and not ray_tmp.exists(), 10.0)
        assert outsider.poll() is None  # not the session's
        assert "orphaned" in (tmp_path / "session" / "watchdog.log").read_text()
    finally:
        driver.kill()
        _kill_left(pids.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_a_session_stop_leaves_nothing_either_and_the_watchdog_exits(tmp_path, outsider):
    driver, pids = start_driver(tmp_path, "stop")
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == b"stopped"
        left = {k: p for k, p in pids.items() if alive(p)}
        assert not left, f"left after Session.stop: {left}"
        log = (tmp_path / "session" / "watchdog.log").read_text()
        assert "watchdog: stop" in log  # told by the pipe, swept, exited
        assert (tmp_path / "scratch").exists()  # removed only when orphaned
        assert outsider.poll() is None
    finally:
        driver.kill()
        driver.wait()
        _kill_left(pids.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_reap_stops_what_an_exited_supernode_left(tmp_path):
    """A SuperNode rejected by the SuperLink exits, leaving its detached
    flower-superexec; Session.reap collects it and stops that child (found by the
    node's private FLWR_HOME)."""
    child_pid = tmp_path / "child.pid"
    node = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', {SLEEP!r}], start_new_session=True); "
        f"open({str(child_pid)!r}, 'w').write(str(p.pid)); sys.exit(1)"
    )
    with Session(tmp_path / "session") as session:
        home = session.node_homes["supernode0"] = str(tmp_path / "supernode0-home")
        other = session.spawn("supernode1", [sys.executable, "-c", SLEEP])
        proc = session.spawn("supernode0", [sys.executable, "-c", node],
                             env={**session.env, "FLWR_HOME": home})
        proc.wait(timeout=60)
        assert wait_for(child_pid.exists, 10)
        child = int(child_pid.read_text())
        assert alive(child)
        assert session.reap() == {"supernode0": 1}
        assert not alive(child)
        assert other.poll() is None  # the live node is untouched
        assert session.reap() == {}  # once
