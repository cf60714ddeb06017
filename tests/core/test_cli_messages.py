"""Progress (a bar on a terminal, lines elsewhere), clear errors for objective values and a
missing extra, the live log's value text."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pytest

from fedzoo.errors import NonFiniteError, ObjectiveError
from fedzoo.objectives import CallableObjective
from fedzoo.rounds import value_text
from fedzoo_cli.main import main
from fedzoo_cli.progress import RoundProgress

FAST = ["--dim", "6", "--clients", "3", "--rounds", "3", "--local-steps", "2"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _row(r, value=1.5, queries=10):
    return {"round": r, "value": value, "queries": queries, "wall_s": 0.01}


def test_progress_is_a_tqdm_bar_with_an_eta_on_a_terminal():
    pytest.importorskip("tqdm")
    out = Terminal()
    progress = RoundProgress("fedzo", stream=out)
    for r in (1, 2, 3):
        progress(_row(r, queries=10 * r), 10)
    progress.close()
    text = out.getvalue()
    assert "fedzo" in text and "3/10" in text and "round" in text
    assert "<" in text  # elapsed<remaining: tqdm's ETA
    assert "queries 30" in text and "value 1.5" in text
    assert "[fedzo] round" not in text


def test_progress_is_plain_lines_where_stderr_is_not_a_terminal():
    out = io.StringIO()
    progress = RoundProgress("fedzo", stream=out)
    progress(_row(1), 3)
    progress(_row(2, value=math.nan), 3)
    progress.close()
    assert out.getvalue().splitlines() == [
        "[fedzo] round   1/3  value 1.5  queries      10  0.01s",
        "[fedzo] round   2/3  value not reported yet  queries      10  0.01s",
    ]


def test_progress_without_tqdm_falls_back_to_lines(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    out = Terminal()
    progress = RoundProgress("fedzo", stream=out)
    progress(_row(1), 3)
    assert out.getvalue().startswith("[fedzo] round   1/3")


def test_the_cli_progress_through_a_pipe_is_one_line_per_round(tmp_path):
    exe = [sys.executable, "-m", "fedzoo_cli"]
    done = subprocess.run([*exe, "run", "--method", "fedzo", *FAST, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [line.split("value")[0].strip() for line in done.stderr.splitlines()] == [
        f"[fedzo] round   {r}/3" for r in (1, 2, 3)]


@pytest.mark.parametrize(("fn", "error", "words"), [
    (lambda X: X.sum(1)[:, None], ObjectiveError, r"shape \(2, 1\).*an n x 1 column"),
    (lambda X: X.sum(1) + 0j, ObjectiveError, "complex"),
    (lambda X: [1.0, 2 + 1j], ObjectiveError, "complex"),
    (lambda X: X.sum(1) > 0, ObjectiveError, "booleans"),
    (lambda X: [True, 1.0], ObjectiveError, "booleans"),
    (lambda X: [1.0, None], ObjectiveError, "not numbers"),
    (lambda X: [1.0, math.inf], NonFiniteError, "non-finite"),
    (lambda X: [[1.0], [2.0, 3.0]], ObjectiveError, "not an array of numbers"),
])
def test_objective_values_must_be_n_real_numbers(fn, error, words):
    f = CallableObjective(fn, dim=2, name="user-f")
    with pytest.raises(error, match=words):
        f(np.full((2, 2), 0.5))


@pytest.mark.parametrize("y", [np.array([1.0, 2.0]), [1, 2], np.float32([1, 2]), np.array([1.0, 2.0], dtype=object)])
def test_real_values_of_any_numeric_dtype_are_accepted(y):
    f = CallableObjective(lambda X: y, dim=2)
    assert np.array_equal(f(np.zeros((2, 2))), [1.0, 2.0])


def test_fedzoo_attack_without_torch_names_the_extra(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "fedzoo_attack"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ModuleNotFoundError
    assert main(["attack", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "needs torch" in err and "'attack' extra" in err and "pip install -e '.[attack]'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("rows", "text"), [
    ([_row(0), {"round": 1, "value": 2.0, "reported_value": 2.0}], "value=2 reported=2"),
    ([_row(0), {"round": 1, "value": 2.0, "reported_value": math.nan}], "value=2 reported=not-yet"),
    ([{"round": 0, "value": 3.0, "reported_value": 3.0}, {"round": 1, "value": math.nan,
                                                        "reported_value": math.nan}],
     "value not reported yet (round 0: 3)"),
    ([{"round": 0, "value": math.nan, "reported_value": math.nan}, {"round": 1, "value": math.nan,
                                                                   "reported_value": math.nan}],
     "value not reported yet"),
])
def test_value_text_never_shows_nan(rows, text):
    assert value_text(rows) == text


def test_the_history_watcher_reports_each_new_row_of_another_process_once(tmp_path):
    import os

    from fedzoo.results import write_history
    from fedzoo_cli.main import HistoryWatcher

    path = tmp_path / "history.csv"
    cols = {"queries": 0, "value": 1.0, "reported_value": math.nan, "bytes_up": 0, "bytes_down": 0,
            "wall_s": 0.1, "clients": 2, "participants": "0;1", "client_queries": ""}
    rows = [{"round": 0, **cols}]
    path.write_text("round,queries\n0,0\n")  # an earlier run's file: not reported
    seen = []
    watcher = HistoryWatcher(path, lambda row, total: seen.append((row["round"], total)), 3, poll_s=60)
    watcher.poll()
    assert seen == []
    for r in (1, 2):
        rows.append({"round": r, **cols, "queries": 10 * r})
        write_history(rows, path)
        os.utime(path, (1e9 + r, 1e9 + r))
        watcher.poll()
        watcher.poll()
    path.write_text("round,queries,value\n0,0,1.0\n1,10")  # half written: skipped
    watcher.poll()
    assert seen == [(1, 3), (2, 3)]
