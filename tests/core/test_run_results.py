"""Runs never lose results: --out / out_dir checked before round 1, no silent overwrite,
and a failing objective leaves the rounds completed (and the failure) on disk."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fedzoo
from fedzoo.errors import ConfigError, ObjectiveError
from fedzoo.outdir import OutDirError, prepare_out_dir
from fedzoo.results import client_queries_of, read_history
from fedzoo_cli.main import main

FAST = ["--dim", "6", "--clients", "3", "--rounds", "3", "--local-steps", "2"]
ROOT = os.geteuid() == 0


class Counted:
    """Black boxes that count the points they are given (nothing may run before a refusal)."""

    def __init__(self, n: int = 2) -> None:
        self.points = [0] * n

    def fn(self, i: int):
        def f(X):
            self.points[i] += len(X)
            return (X - 0.3).__pow__(2).sum(1)

        return f

    @property
    def fns(self):
        return [self.fn(i) for i in range(len(self.points))]


def _unwritable(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    return d


@pytest.mark.parametrize("case", ["file", "non-empty", "unwritable", "under-a-file"])
def test_the_cli_refuses_a_bad_out_before_round_1(case, tmp_path, capsys):
    if case == "unwritable" and ROOT:
        pytest.skip("root writes anywhere")
    out = {"file": tmp_path / "f.txt", "non-empty": tmp_path / "old",
           "unwritable": None, "under-a-file": tmp_path / "f.txt" / "run"}[case]
    (tmp_path / "f.txt").write_text("keep me")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "history.csv").write_text("earlier results")
    if case == "unwritable":
        out = _unwritable(tmp_path) / "run"
    assert main(["run", "--method", "fedzo", *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and str(out) in err
    assert "round" not in err  # no round ran
    assert (tmp_path / "f.txt").read_text() == "keep me"
    assert (tmp_path / "old" / "history.csv").read_text() == "earlier results"
    if case == "non-empty":
        assert "--overwrite" in err


def test_the_cli_overwrites_a_run_directory_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--method", "fedzo", *FAST, "--out", str(out)]) == 0
    first = (out / "summary.json").read_text()
    assert main(["run", "--method", "fedzo", *FAST, "--rounds", "2", "--out", str(out)]) == 2
    assert (out / "summary.json").read_text() == first  # untouched
    assert main(["run", "--method", "fedzo", *FAST, "--rounds", "2", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["rounds"] == 2


def test_compare_refuses_a_non_empty_out_before_any_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert main(["compare", "--methods", "fedzo,fedprox", *FAST, "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("case", ["file", "non-empty", "unwritable"])
def test_minimize_refuses_a_bad_out_dir_before_any_query(case, tmp_path):
    if case == "unwritable" and ROOT:
        pytest.skip("root writes anywhere")
    out = {"file": tmp_path / "f.txt", "non-empty": tmp_path}[case] if case != "unwritable" \
        else _unwritable(tmp_path) / "run"
    (tmp_path / "f.txt").write_text("keep me")
    boxes = Counted()
    with pytest.raises(OutDirError, match="out_dir") as info:
        fedzoo.minimize(boxes.fns, np.full(3, 0.5), method="fedzo", rounds=2, out_dir=out)
    assert isinstance(info.value, ConfigError)  # and a FedZooError / ValueError
    assert boxes.points == [0, 0]
    if case == "non-empty":
        assert "overwrite=True" in str(info.value)
        result = fedzoo.minimize(boxes.fns, np.full(3, 0.5), method="fedzo", rounds=2, out_dir=out,
                                 overwrite=True)
        assert read_history(out / "history.csv")[-1]["queries"] == result.num_queries


def test_prepare_out_dir_creates_missing_parents_and_accepts_an_empty_directory(tmp_path):
    assert prepare_out_dir(tmp_path / "a" / "b").is_dir()
    assert prepare_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"  # still empty
    assert not any((tmp_path / "a" / "b").iterdir())  # the write probe is removed


def _fails_in_round(bad_round_points: int):
    """A black box that raises once it has seen ``bad_round_points`` points."""
    seen = [0]

    def f(X):
        seen[0] += len(X)
        if seen[0] > bad_round_points:  # this batch would pass the points it may see
            raise RuntimeError("the lab instrument went offline")
        return ((X - 0.3) ** 2).sum(1)

    return f


@pytest.mark.parametrize("method", ["fedzo", "fzoos"])
def test_a_failing_objective_leaves_the_completed_rounds_on_disk(method, tmp_path):
    opts = {"rff_features": 100, "gp_history": 40, "sync_points": 5, "explore_points": 2} \
        if method == "fzoos" else {}
    probe = fedzoo.minimize([lambda X: ((X - 0.3) ** 2).sum(1)] * 2, np.full(4, 0.5), method=method,
                            rounds=5, local_steps=2, **opts)
    # client 1 fails on its first batch after the queries it made in rounds 1 and 2
    limit = sum(client_queries_of(row).get(1, 0) for row in probe.history[1:3])
    out = tmp_path / "run"
    with pytest.raises(ObjectiveError, match="instrument went offline") as info:
        fedzoo.minimize([lambda X: ((X - 0.3) ** 2).sum(1), _fails_in_round(limit)], np.full(4, 0.5),
                        method=method, rounds=5, local_steps=2, out_dir=out, on_client_error="fail",
                        **opts)
    assert [r["round"] for r in info.value.partial.history] == [0, 1, 2]
    rows = read_history(out / "history.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in rows] == [0, 1, 2]
    for got, want in zip(rows, probe.history):  # the completed rounds as in a clean run
        assert got["queries"] == want["queries"]
        if got is not rows[-1] or method == "fzoos":  # fedzo reports round 2 in round 3
            assert got["value"] == want["value"]
    assert summary["status"] == "failed"
    assert "instrument went offline" in summary["error"]
    assert summary["rounds"] == 2 and summary["total_queries"] == rows[-1]["queries"]


def test_the_cli_says_where_the_partial_results_are(tmp_path, capsys, monkeypatch):
    import fedzoo.objectives.problems as problems

    calls = [0]
    original = problems.SyntheticObjective._evaluate

    def broken(self, X):
        calls[0] += 1
        if calls[0] > 30:
            raise RuntimeError("disk full on the client")
        return original(self, X)

    monkeypatch.setattr(problems.SyntheticObjective, "_evaluate", broken)
    out = tmp_path / "run"
    assert main(["run", "--method", "fedzo", *FAST, "--rounds", "20", "--workers", "1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "disk full on the client" in err and str(out / "history.csv") in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and 0 < summary["rounds"] < 20
