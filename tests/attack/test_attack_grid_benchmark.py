"""simulations/attack/grid.py (grid.sh's driver) and grid_summary.py on a one-setting
digits grid: the run layout, the fzoos cost-control skip, the white-box count, the
summaries, resuming (nothing rerun) and a setting without enough eligible images."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parents[2] / "simulations" / "attack"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"attack_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.torch
def test_a_tiny_grid_runs_resumes_and_is_summarized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    grid, summary = _load("grid"), _load("grid_summary")
    monkeypatch.setenv("FEDZOO_CACHE", str(tmp_path / "cache"))
    for key, value in {"DATASETS": "digits", "PORTIONS": "0.5", "EPSILONS": "0.3",
                       "TARGETS": "untargeted", "IMAGES": "1", "METHODS": "fedzo fzoos-paper",
                       "SQUARE_LAMBDAS": "1 5", "EXTRA_METHODS": "",
                       "FZOOS_CELLS": "mnist5k:*:*:*"}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "grid"
    flags = ["--budget", "300", "--report-budgets", "100,300", "--local-steps", "1"]
    assert grid.main([str(out), *flags]) == 0
    setting = out / "digits-p0.5-eps0.3-untargeted"
    runs = sorted(p.parent.name for p in setting.glob("*/summary.json"))
    assert runs == ["fedsquare-l1", "fedsquare-l5", "ls10-fedzo"]
    assert (setting / "fzoos-paper-ls10.skipped").exists()  # cost control: not a digits cell here
    s = json.loads((setting / "ls10-fedzo" / "summary.json").read_text())
    # the grid's flags, then the caller's (--local-steps 1 overrides the grid's 10)
    assert s["budget"] == 300 and s["results"]["fedzo"]["config"]["local-steps"] == 1
    wb = json.loads((setting / "whitebox.json").read_text())
    assert wb["images"] == s["images"] and wb["total"] == 1
    assert len((out / "wall.tsv").read_text().splitlines()) == 4  # 3 runs + white box
    capsys.readouterr()

    assert grid.main([str(out), *flags]) == 0  # resumed: nothing left to run
    assert len((out / "wall.tsv").read_text().splitlines()) == 4
    capsys.readouterr()

    assert summary.main([str(out)]) == 0
    text = capsys.readouterr().out
    assert "| fedsquare | fedsquare-l1 |" in text and "| fedzo | ls10-fedzo |" in text
    assert "success @10 exchanges" in text and "attackable " in text
    assert "fzoos-paper-ls10 not run" in text
    (row,) = [ln for ln in text.splitlines() if ln.startswith("| digits-p0.5-eps0.3-untargeted |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    head = [ln for ln in text.splitlines() if ln.startswith("| setting | K |")][0]
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[:5] == ["setting", "K", "fedsquare", "fzoos-paper", "fedzo"]
    assert cells[1] == "1" and "(λ=" in cells[2] and cells[3] == "skip"
    assert cells[cols.index("white-box")] == f"{wb['attackable']}/1"
    assert "- digits-p0.5-eps0.3-untargeted: @100 queries " in text

    # too few eligible images: recorded, the setting skipped, the grid goes on
    monkeypatch.setenv("IMAGES", "5000")
    monkeypatch.setenv("EPSILONS", "0.2")
    assert grid.main([str(out / "big"), *flags]) == 0
    (note,) = (out / "big" / "digits-p0.5-eps0.2-untargeted").glob("ineligible-k5000.txt")
    assert "fewer than the 5000 requested" in note.read_text()
    assert "too few eligible" in (out / "big" / "grid.log").read_text()


def test_a_stopped_grid_stops_and_a_failed_run_does_not_stop_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM reaches a run as SystemExit(143) (the CLI's handler): the grid must end
    there, not log a failure and go on; a crash or a bad flag (exit 2) is recorded."""
    import fedzoo_cli.main

    grid = _load("grid")
    g = grid.Grid(tmp_path, [])
    setting = tmp_path / "s"
    setting.mkdir()

    def stopped(argv: list[str]) -> int:
        raise SystemExit(143)

    monkeypatch.setattr(fedzoo_cli.main, "main", stopped)
    with pytest.raises(SystemExit):
        g.run(setting, "r1", [])

    def crash(argv: list[str]) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(fedzoo_cli.main, "main", crash)
    assert g.run(setting, "r2", []) == "failed"
    monkeypatch.setattr(fedzoo_cli.main, "main", lambda argv: (_ for _ in ()).throw(SystemExit(2)))
    assert g.run(setting, "r3", []) == "failed"
    failures = (tmp_path / "failures.txt").read_text()
    assert "r2: crash: RuntimeError: boom" in failures and "r3: exit 2" in failures
    assert "Traceback" in (setting / "r2.log").read_text()
