"""A watchdog that stops a Flower session's processes when their driver dies.

:class:`fedzoo_launch.local.Session` starts one before the session's first process::

    python -m fedzoo_launch.watchdog --parent PID --pipe --marker KEY=VALUE [--marker ...] \
        [--remove DIR ...]

**Which processes are the session's.** Every process the session starts carries the
``--marker`` entries in its environment, and so do their descendants, detached or not
(the SuperLink's SuperExec runs in its own session, the simulation and Ray below it).
Because a process can lose its parent (a killed raylet leaves Ray's agents to init) or
its marker (a process may rewrite its environment), the watchdog also records, every
second while the driver lives, each marked process and each descendant of one, by
(PID, start time), and their process groups and sessions (each process the session
starts leads its own; the driver's and the watchdog's are never counted): a process
started after the watchdog in such a group or session is the session's too (Ray's
daemons and agents share the SuperExec's group). :class:`RunProcesses` keeps that record.

**When the driver dies** (SIGKILL included, which runs none of its own cleanups): the
end of ``--pipe`` (the driver holds the only write end of the watchdog's stdin: the
kernel closes it when the driver dies, whichever thread started the watchdog) or its
parent PID changing (polled every 0.2 s; without ``--pipe``, e.g. on another platform)
wakes it. It then SIGKILLs every process of the session at once (the federation stops
now: nothing the driver would read is lost, checkpoints are written atomically and the
run directory's lock is released by the kernel), repeats until none is seen three times
in a row (a dying process may still have started one), for at most a minute, and
removes the ``--remove`` directories (the session's temporary ones).

**When the driver stops the session itself** (:meth:`Session.stop`: its processes
first, gracefully), it writes ``stop`` to the pipe: the watchdog sweeps the same way,
killing whatever outlived the graceful stop, removes nothing and exits. SIGTERM before
the driver died makes it exit at once; after, it is ignored until the sweep is done.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Sequence

from fedzoo_launch import processes

POLL_S = 0.2
TRACK_S = 1.0
SWEEP_LIMIT_S = 60.0


class RunProcesses:
    """The processes of one session (see the module docstring), for this process to find
    after their parents died: marked, descended from one, or started after ``since``
    (clock ticks) in a process group or session of one of them."""

    def __init__(self, markers: Sequence[tuple[str, str]], since: int, parent: int) -> None:
        self.markers, self.since, self.parent = list(markers), since, parent
        self.own = os.getpid()
        # never the groups or sessions of the driver or of this watchdog (its own)
        driver = processes.proc_stat(parent)
        self.foreign = {os.getpgid(0), os.getsid(0)}
        if driver is not None:
            self.foreign |= {driver.pgid, driver.sid}
        self.known: set[tuple[int, int]] = set()  # (pid, start) of the session's processes
        self.leaders: set[int] = set()  # groups and sessions led by one of them
        self.others: set[tuple[int, int]] = set()  # environment read: not the session's

    def scan(self, cache: bool = True) -> list[int]:
        """The session's live processes now, recorded for the next scans (``cache``:
        skip the environments read before, which found no marker)."""
        table = processes.process_table()
        ours: set[int] = set()
        for st in table.values():
            key = (st.pid, st.start)
            if st.pid == self.own or st.start < self.since:
                continue  # older than the session: never one of its processes
            if key in self.known or st.pgid in self.leaders or st.sid in self.leaders:
                ours.add(st.pid)
            elif not cache or key not in self.others:
                if any(processes.has_env(st.pid, k, v) for k, v in self.markers):
                    ours.add(st.pid)
                elif st.ppid != self.parent:  # the driver's child may not have exec'd yet
                    self.others.add(key)
        grew = True
        while grew:  # and their descendants (a child not yet exec'd has no marker yet)
            grew = False
            for st in table.values():
                if st.pid not in ours and st.ppid in ours and st.pid != self.own:
                    ours.add(st.pid)
                    grew = True
        self.known = {(pid, table[pid].start) for pid in ours}
        # the groups and sessions of the session's processes (every one the session
        # starts leads its own), while a member lives, less the driver's and ours
        groups = {g for p in ours for g in (table[p].pgid, table[p].sid)} - self.foreign
        self.leaders = {
            lead
            for lead in self.leaders | groups
            if any(st.pgid == lead or st.sid == lead for st in table.values())
        }
        self.others &= {(st.pid, st.start) for st in table.values()}
        return sorted(ours)

    def kill_all(self) -> int:
        """SIGKILL every process of the session until none is seen three times in a row
        (at most :data:`SWEEP_LIMIT_S`); return how many were killed."""
        deadline, quiet, killed = time.monotonic() + SWEEP_LIMIT_S, 0, set()
        while quiet < 3 and time.monotonic() < deadline:
            pids = self.scan(cache=False)  # a child exec'd since may carry the marker now
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            quiet = 0 if pids else quiet + 1
            time.sleep(POLL_S)
        return len(killed)


def _own_start() -> int:
    st = processes.proc_stat(os.getpid())
    return 0 if st is None else st.start


def wait_for_driver(args: argparse.Namespace, run: RunProcesses) -> str:
    """Sleep, recording the session's processes, until the driver dies ("orphaned") or
    asks to stop ("stop")."""
    last_scan = 0.0
    while os.getppid() == args.parent:
        if time.monotonic() - last_scan >= TRACK_S:
            run.scan()
            last_scan = time.monotonic()
        if args.pipe:
            ready, _, _ = select.select([sys.stdin.fileno()], [], [], POLL_S)
            if ready:
                data = os.read(sys.stdin.fileno(), 64)
                if not data:
                    return "orphaned"  # the driver died: the kernel closed its end
                if b"stop" in data:
                    return "stop"
        else:
            time.sleep(POLL_S)
    return "orphaned"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parent", type=int, required=True, help="the driver's pid")
    ap.add_argument("--pipe", action="store_true",
                    help="stdin is a pipe from the driver: its end means the driver died, "
                    "'stop' that the driver stopped the session")
    ap.add_argument("--marker", action="append", required=True,
                    help="KEY=VALUE in the environment of the session's processes (repeatable)")
    ap.add_argument("--remove", action="append", default=[], help="a directory to remove")
    args = ap.parse_args(argv)
    markers = [(k, v) for k, _, v in (m.partition("=") for m in args.marker)]
    run = RunProcesses(markers, _own_start(), args.parent)

    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))  # the session stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    why = wait_for_driver(args, run)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here on, finish the sweep
    killed = run.kill_all()
    if why == "orphaned":
        for directory in args.remove:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"watchdog: {why}, killed {killed} process(es)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
