"""Kills and Ctrl-C lose no finished round (issue 24, item 5).

history.csv is on disk from the start (header, row 0) and gets each round's row as the
round ends, fsync'd: a ``kill -9`` leaves every finished round, with or without
``--checkpoint``. One Ctrl-C ends a run whose objective hangs (in a client thread, with
one worker or several): summary.json says ``interrupted``, the exit status is 130, no
traceback. Real processes, stopped by their pid; no timing is asserted (the bounds are
generous timeouts).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fedzoo.results import COLUMNS, HistoryFile, HistoryRecorder, read_history, write_history

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), str(ROOT / "proto"), os.environ.get("PYTHONPATH", "")])}


def _rows_in(path: Path) -> int:
    try:
        return len(read_history(path))
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _wait_for(condition, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, "the run ended before the condition held"
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def test_the_history_file_holds_what_write_history_writes_after_every_change(tmp_path):
    rec = HistoryRecorder(lambda x: float(np.sum(x)))
    rec.start(np.zeros(3), 2)
    live, whole = HistoryFile(tmp_path / "history.csv"), tmp_path / "whole.csv"

    def same() -> bool:
        write_history(rec.rows, whole)
        return (tmp_path / "history.csv").read_bytes() == whole.read_bytes()

    live.sync(rec.rows)
    assert same() and read_history(tmp_path / "history.csv")[0]["round"] == 0
    for r in range(1, 6):
        if r > 1:
            rec.report(r - 1, 0.25 * r)  # the previous row changes a round later
        rec.end_round(r, np.full(3, 0.1 * r), 10, 5, 7, 0.01, [0, 1], {0: 4, 1: 6})
        live.sync(rec.rows)
        assert same()
    rec.add_to_last(2, 1, 1, 0.5, {0: 1, 1: 1})  # a final evaluation
    rec.note_last("evaluate-missing=1")
    live.sync(rec.rows)
    assert same()
    rec.rows[-1]["notes"] = ""  # shorter than before: the old tail is cut
    live.sync(rec.rows)
    assert same()
    rec.rows = rec.rows[:3]  # fewer rows (a resume from an earlier checkpoint)
    live.sync(rec.rows)
    assert same()
    (tmp_path / "history.csv").unlink()  # removed under the run: written again
    rec.end_round(3, np.ones(3), 1, 1, 1, 0.01, [0])
    live.sync(rec.rows)
    assert same()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "whole.csv"]  # no temps


def test_history_csv_holds_the_header_and_row_0_before_the_first_query(tmp_path):
    from fedzoo import minimize

    seen = []

    def f(X):
        if not seen:
            seen.append(read_history(tmp_path / "o" / "history.csv"))
        return np.sum((X - 0.3) ** 2, axis=1)

    minimize([f, f], x0=np.full(2, 0.5), method="fedzo", rounds=2, out_dir=tmp_path / "o",
             local_steps=1)
    assert [r["round"] for r in seen[0]] == [0] and list(seen[0][0]) == list(COLUMNS)


@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpoint"])
def test_kill_9_leaves_every_finished_round_in_history_csv(tmp_path, checkpoint):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fedzoo_cli", "run", "--method", "fzoos", "--dim", "20",
           "--clients", "3", "--rounds", "40", "--out", str(out)] + (["--checkpoint"] if checkpoint else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _rows_in(out / "history.csv") >= 4, 240, proc)  # rounds 1-3 done
        seen = read_history(out / "history.csv")
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    rows = read_history(out / "history.csv")
    k = seen[-1]["round"]
    assert k >= 3 and [r["round"] for r in rows] == list(range(len(rows))) and len(rows) >= k + 1
    for row in rows:  # every row whole
        assert set(row) == set(COLUMNS) and row["status"] == "ok"
        assert row["round"] == 0 or (row["queries"] > 0 and math.isfinite(row["value"]))
    assert (out / "history.csv").read_bytes().endswith(b"\r\n")
    assert not (out / "summary.json").exists()  # nothing ran after the kill


HANG = textwrap.dedent('''
    """``fedzoo run`` on the quadratic problem whose objectives hang (time.sleep(1000))
    from round 2 on: they sleep once history.csv holds rows 0 and 1."""
    import sys
    import time
    from pathlib import Path

    import fedzoo_cli.main as cli

    real = cli._problem_from_args


    def hanging(args):
        problem = real(args)
        history = Path(args.out) / "history.csv"

        def wrap(evaluate):
            def call(X):
                if len(history.read_text().splitlines()) >= 3:  # header, rows 0 and 1
                    time.sleep(1000)
                return evaluate(X)
            return call

        for objective in problem.objectives:
            objective._evaluate = wrap(objective._evaluate)
        return problem


    cli._problem_from_args = hanging
    sys.exit(cli.main(sys.argv[1:]))
''')


@pytest.mark.parametrize("workers", [1, 3])
def test_one_ctrl_c_ends_a_run_whose_objective_hangs(tmp_path, workers):
    (tmp_path / "hang_run.py").write_text(HANG)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "hang_run.py"), "run", "--method", "fedzo", "--dim", "6",
         "--clients", "3", "--rounds", "50", "--local-steps", "2", "--workers", str(workers),
         "--out", str(out)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _wait_for(lambda: _rows_in(out / "history.csv") >= 2, 120, proc)  # round 2 hangs now
        time.sleep(0.5)
        assert proc.poll() is None  # hung, not finished
        proc.send_signal(signal.SIGINT)  # one Ctrl-C
        _, err = proc.communicate(timeout=20)  # generous: it ends at once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fedzoo: interrupted (Ctrl-C); the rounds completed so far (1) are in")
    assert "status interrupted" in last
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "KeyboardInterrupt" in summary["error"]
    assert [r["round"] for r in read_history(out / "history.csv")] == [0, 1]
