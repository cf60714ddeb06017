"""Benchmark: SIGKILL ``fedzoo run --engine flower`` at random moments; count what is left.

    nice .venv/bin/python simulations/benchmarks/orphans.py --out runs/bench-orphans \
        [--tries 10] [--seed 0] [--after 10] [--span S | --at-round K]

Each try starts, as the red-team report did::

    setsid fedzoo run --engine flower --checkpoint --method fedzo --dim 5 --clients 2 \
        --rounds 4 --local-steps 2 --out <dir>

(``python -m fedzoo_cli``, in its own session), SIGKILLs the driver (that process only)
at a moment drawn uniformly from [0, T] (T: the wall time of one full run, measured
first; a run that ends before its moment is not a kill: the moment is drawn again), and
``--after`` seconds later lists every process of the run still alive.

The run's processes are found three ways, any one suffices, so that none can hide by
rewriting its environment or command line (Ray's ``setproctitle``) or by leaving the
driver's session (Flower's SuperExec detaches): a marker ``FEDZOO_ORPHAN_PROBE=<token>``
in ``/proc/<pid>/environ`` (every descendant inherits it), descent (a process whose
parent is one of the run's), and the process groups and sessions its processes lead.
A tracker thread records them every 0.2 s while the driver lives, with each one's start
time (so a reused PID is not counted), and after the kill the three are checked again.

Per try: the moment, the rounds written at the kill and ``--after`` s later (a
federation that goes on after its driver died writes more), the run's processes at
the kill, those left (their command lines), the seconds until none was left, and the
run's temporary directories left (its working directory and Ray's, read from the
watchdog's command line). Anything left is SIGKILLed by PID after it is counted, and
the directories left are removed.

``--at-round K`` kills each try as soon as round K is in history.csv instead (does the
federation stop with its driver, or finish its rounds?). Writes ``results.json`` (and
``orphans.md``) under ``--out``. No timed assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE_ENV = "FEDZOO_ORPHAN_PROBE"
RUN_ARGS = ["--engine", "flower", "--checkpoint", "--method", "fedzo", "--dim", "5",
            "--clients", "2", "--rounds", "4", "--local-steps", "2"]


def _stat(pid: int) -> tuple[int, int, int, int] | None:
    """(ppid, pgid, sid, start time in clock ticks) of a live process, else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    if rest[0] == "Z":  # a zombie holds nothing; its parent (ours or init) reaps it
        return None
    return int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def _has_env(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


@dataclass
class Tracker:
    """The processes of one run: marked, descended from one of them, or in a process
    group / session one of them leads (see the module docstring)."""

    token: str
    driver: int
    #: pid -> (start time, command line when first seen)
    seen: dict[int, tuple[int, str]] = field(default_factory=dict)
    leaders: set[int] = field(default_factory=set)  # pgids/sids led by a run's process
    #: (pid, start time) of processes found not to be the run's (no marker, not below one)
    others: set[tuple[int, int]] = field(default_factory=set)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def scan(self) -> list[int]:
        """The run's live processes now (the driver included while it lives)."""
        needle = f"{PROBE_ENV}={self.token}".encode()
        stats = {pid: s for pid in _pids() if pid != os.getpid() and (s := _stat(pid))}
        ours: set[int] = set()
        for pid, (_, pgid, sid, start) in stats.items():
            known = self.seen.get(pid)
            if known is not None and known[0] == start:
                ours.add(pid)
            elif pgid in self.leaders or sid in self.leaders:
                ours.add(pid)
            elif (pid, start) not in self.others and _has_env(pid, needle):
                ours.add(pid)
        grew = True
        while grew:  # descendants of ours
            grew = False
            for pid, (ppid, *_rest) in stats.items():
                if pid not in ours and ppid in ours:
                    ours.add(pid)
                    grew = True
        for pid, (_, _, _, start) in stats.items():
            if pid not in ours:  # its environment is read once
                self.others.add((pid, start))
        for pid in ours:
            ppid, pgid, sid, start = stats[pid]
            if pid not in self.seen or self.seen[pid][0] != start:
                self.seen[pid] = (start, _cmdline(pid))
            # a group or session this process leads holds only the run's processes; not
            # the driver's (setsid: it leads its own; it is watched by PID anyway)
            if pid != self.driver and pid in (pgid, sid):
                self.leaders.add(pid)
        return sorted(ours)

    def run(self, poll_s: float = 0.2) -> None:
        while not self.stop_event.is_set():
            self.scan()
            self.stop_event.wait(poll_s)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def removable_dirs(self) -> list[str]:
        """The temporary directories the session's watchdog was told to remove."""
        found: list[str] = []
        for _, cmd in self.seen.values():
            if "fedzoo_launch.watchdog" in cmd:
                parts = cmd.split()
                found += [parts[i + 1] for i, p in enumerate(parts[:-1]) if p == "--remove"]
        return sorted(set(found))


def _rounds(out: Path) -> int:
    """Rounds in history.csv (rows after the header, round 0 included)."""
    try:
        lines = (out / "history.csv").read_text().splitlines()
    except OSError:
        return 0
    return max(len([ln for ln in lines if ln.strip()]) - 1, 0)


def _short(cmd: str) -> str:
    words = cmd.split()
    for w in words:
        name = w.rsplit("/", 1)[-1]
        if name.startswith(("flower-", "flwr", "ray::", "gcs_server", "raylet")) or \
                name.endswith(".py") or name in ("fedzoo_cli", "fedzoo_launch.watchdog"):
            return name
    return words[0].rsplit("/", 1)[-1] if words else "?"


def start_run(work: Path, token: str) -> subprocess.Popen[bytes]:
    """``setsid python -m fedzoo_cli run --engine flower ...`` with the probe marker."""
    out = work / "k1"
    env = {**os.environ, PROBE_ENV: token, "TMPDIR": str(work), "OPENBLAS_NUM_THREADS": "1",
           "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "proto"),
                                          *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = ["setsid", sys.executable, "-m", "fedzoo_cli", "run", *RUN_ARGS, "--out", str(out)]
    with open(work / "cli.log", "wb") as log:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def full_run(work: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    """One run to its end: its wall time (the span of the kill moments) and processes."""
    work.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    t0 = time.monotonic()
    proc = start_run(work, token)
    tracker = Tracker(token, proc.pid)
    thread = tracker.start()
    try:
        proc.wait(timeout=timeout_s)
    finally:
        tracker.stop_event.set()
        thread.join()
    wall = time.monotonic() - t0
    left = tracker.scan()
    _kill(left)
    return {"exit": proc.returncode, "wall_s": round(wall, 1), "rounds": _rounds(work / "k1"),
            "processes_seen": len(tracker.seen), "left_after_exit": len(left)}


def kill_once(work: Path, *, at_s: float | None = None, when: Any = None,
              after_s: float = 10.0, timeout_s: float = 300.0) -> dict[str, Any]:
    """Start a run, SIGKILL its driver ``at_s`` seconds after its start or as soon as
    ``when(tracker, out_dir)`` is true (checked every 0.2 s), and report what is left
    ``after_s`` seconds later (see the module docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    out = work / "k1"
    t0 = time.monotonic()
    proc = start_run(work, token)
    tracker = Tracker(token, proc.pid)
    thread = tracker.start()
    deadline = t0 + (at_s if at_s is not None else timeout_s)
    while time.monotonic() < deadline and proc.poll() is None:
        if when is not None and when(tracker, out):
            break
        time.sleep(0.2)
    at = time.monotonic() - t0
    finished_first = proc.poll() is not None
    tracker.stop_event.set()
    thread.join()
    at_kill = [p for p in tracker.scan() if p != proc.pid]
    names_at_kill = sorted({_short(tracker.seen[p][1]) for p in at_kill})
    rounds_at_kill = _rounds(out)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t_kill = time.monotonic()
    gone_s = None
    while time.monotonic() - t_kill < after_s:
        if gone_s is None and not tracker.scan():
            gone_s = round(time.monotonic() - t_kill, 1)
        time.sleep(0.2)
    left = tracker.scan()
    left_cmds = [tracker.seen[p][1][:160] for p in left]
    needle = f"{PROBE_ENV}={token}".encode()
    # how each one looks now: Ray's agents retitle themselves (setproctitle)
    left_now = [{"cmdline": _cmdline(p)[:80], "marker_in_environ": _has_env(p, needle)}
                for p in left]
    rounds_after = _rounds(out)
    _kill(left)
    dirs = tracker.removable_dirs()
    dirs_left = [d for d in dirs if Path(d).exists()]
    for d in dirs_left:  # counted; not left behind either
        shutil.rmtree(d, ignore_errors=True)
    return {
        "at_s": round(at, 1), "finished_before_kill": finished_first,
        "rounds_at_kill": rounds_at_kill, "rounds_after": rounds_after,
        "processes_at_kill": len(at_kill), "names_at_kill": names_at_kill,
        "processes_left": len(left), "left": left_cmds, "left_now": left_now,
        "all_gone_after_s": gone_s,
        "temp_dirs": dirs, "temp_dirs_left": dirs_left,
        "processes_seen": len(tracker.seen),
    }


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _markdown(res: dict[str, Any]) -> str:
    rows = ["| try | killed at | rounds at kill | rounds 10 s later | run's processes at kill |"
            " left after 10 s | all gone after | temp dirs left |", "|" + "---|" * 8]
    for i, r in enumerate(res["tries"]):
        rows.append(
            f"| {i} | {r['at_s']} s | {r['rounds_at_kill']} | {r['rounds_after']} | "
            f"{r['processes_at_kill']} ({', '.join(r['names_at_kill'])}) | "
            f"{r['processes_left']} {'; '.join(r['left'])} | "
            f"{'-' if r['all_gone_after_s'] is None else str(r['all_gone_after_s']) + ' s'} | "
            f"{len(r['temp_dirs_left'])} |")
    ref = res["reference"]
    head = (f"Reference run: exit {ref['exit']}, {ref['wall_s']} s, {ref['rounds']} rows, "
            f"{ref['processes_seen']} processes, {ref['left_after_exit']} left after its exit.\n"
            f"Kills: {len(res['tries'])} (moments drawn from [0, {res['span_s']}] s; "
            f"{len(res['ended_before_the_moment'])} more runs ended before their moment and "
            f"were drawn again), with processes left: {res['tries_with_orphans']}, "
            f"federation went on (rounds written after the kill): {res['tries_went_on']}. "
            f"Wall time {res['wall_s']} s.\n\n")
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench-orphans")
    ap.add_argument("--tries", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--after", type=float, default=10.0, help="seconds after the kill")
    ap.add_argument("--span", type=float, default=None,
                    help="draw moments from [0, SPAN] s (default: a full run's wall time)")
    ap.add_argument("--at-round", type=int, default=None, metavar="K",
                    help="instead of random moments: kill as soon as round K is written "
                    "(no reference run)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"orphans-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    if args.at_round is not None:
        return _at_round(args, work, t0)
    reference = full_run(work / "reference")
    print("reference run:", reference, flush=True)
    span = args.span or reference["wall_s"]
    rng = random.Random(args.seed)
    tries, ended_first = [], []
    while len(tries) < args.tries and len(ended_first) < 2 * args.tries:
        at = round(rng.uniform(0.0, span), 1)
        res = kill_once(work / f"try{len(tries) + len(ended_first)}", at_s=at,
                        after_s=args.after)
        print(f"try {len(tries)}:", json.dumps(res), flush=True)
        # a run that ended before its moment was not killed: drawn again, and counted
        (ended_first if res["finished_before_kill"] else tries).append(res)
    results = {"command": " ".join(sys.argv), "span_s": span, "reference": reference,
               "tries": tries, "ended_before_the_moment": ended_first, "wall_s": round(time.monotonic() - t0, 1),
               "tries_with_orphans": sum(1 for r in tries if r["processes_left"]),
               "tries_went_on": sum(1 for r in tries if r["rounds_after"] > r["rounds_at_kill"])}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "orphans.md").write_text(_markdown(results))
    print(_markdown(results))
    shutil.rmtree(work, ignore_errors=True)
    return 1 if results["tries_with_orphans"] else 0


def _at_round(args: argparse.Namespace, work: Path, t0: float) -> int:
    """``--at-round K``: each try killed once history.csv holds round K (K + 1 rows)."""
    def when(tracker: Tracker, out: Path) -> bool:
        return _rounds(out) >= args.at_round + 1

    tries = []
    for i in range(args.tries):
        res = kill_once(work / f"try{i}", when=when, after_s=args.after)
        print(f"try {i}:", json.dumps(res), flush=True)
        tries.append(res)
    results = {"command": " ".join(sys.argv), "at_round": args.at_round, "tries": tries,
               "wall_s": round(time.monotonic() - t0, 1)}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    for r in tries:
        print(f"killed at {r['at_s']} s with {r['rounds_at_kill']} rows, {r['rounds_after']} "
              f"rows {args.after:g} s later, {r['processes_left']} processes left, all gone "
              f"after {r['all_gone_after_s']} s")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r["processes_left"] for r in tries) else 0


if __name__ == "__main__":
    sys.exit(main())
