"""A watchdog that stops a Flower session's processes when their driver dies.

:class:`fedzoo_launch.local.Session` starts one with its first process::

    python -m fedzoo_launch.watchdog --parent PID --marker KEY=VALUE [--marker ...] [--remove DIR ...]

It waits, sleeping, until the driver (``--parent``) is gone: the kernel's parent-death
signal (``PR_SET_PDEATHSIG``, Linux) wakes it, and polling ``getppid()`` catches the
rest (another platform, a driver that died before the watchdog started). Then it stops
every process that carries one of the session's markers in its environment (SIGTERM,
then SIGKILL: :func:`fedzoo_launch.processes.stop`), wherever Flower detached it (the
SuperLink's SuperExec runs in its own session, the ServerApp and Ray below it; Ray's
agents keep only the session's ``RAY_TMPDIR`` of its environment, the second marker),
until none is seen three times in a row, and removes the
``--remove`` directories (the session's temporary ones). So the driver may be killed
with SIGKILL, which runs none of its own cleanups, and leave no process behind.

A driver that stops its session itself (:meth:`Session.stop`) ends the watchdog with
the other marked processes (SIGTERM: it exits at once, doing nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time

POLL_S = 0.2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parent", type=int, required=True, help="the driver's pid")
    ap.add_argument("--marker", action="append", required=True,
                    help="KEY=VALUE in the environment of the session's processes (repeatable)")
    ap.add_argument("--remove", action="append", default=[], help="a directory to remove")
    args = ap.parse_args(argv)
    markers = [tuple(m.partition("=")[::2]) for m in args.marker]
    orphaned = False

    def parent_died(signum: int, frame: object) -> None:
        nonlocal orphaned
        orphaned = True

    from fedzoo_launch import processes

    signal.signal(signal.SIGUSR1, parent_died)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))  # the session stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    processes.set_parent_death_signal(signal.SIGUSR1)  # then check: it may be gone already
    while not orphaned and os.getppid() == args.parent:
        time.sleep(POLL_S)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here on, finish the cleanup
    # until no marked process is seen three times in a row (a dying parent may still
    # have started one after a scan), for at most a minute
    deadline, quiet = time.monotonic() + 60.0, 0
    while quiet < 3 and time.monotonic() < deadline:
        found = [m for m in markers if processes.processes_with_env(*m)]
        for marker in found:
            processes.stop(None, marker, grace_s=5.0)
        if found:
            quiet = 0
        else:
            quiet += 1
        time.sleep(POLL_S)
    for directory in args.remove:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
