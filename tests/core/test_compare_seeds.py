"""fedzoo compare --seeds: every method for every seed, median and min-max."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fedzoo.results import read_history
from fedzoo_cli.main import _spread, comparison_table, comparison_table_seeds, main, parse_seeds

FAST = ["--dim", "6", "--clients", "3", "--rounds", "3", "--local-steps", "2"]


def test_seeds_run_every_method_for_every_seed_and_report_median_and_range(tmp_path, capsys, monkeypatch):
    import fedzoo.plots

    figures = []
    build = fedzoo.plots.comparison_figure_seeds
    monkeypatch.setattr(fedzoo.plots, "comparison_figure_seeds",
                        lambda *a, **k: figures.append(build(*a, **k)) or figures[-1])
    assert main(["compare", "--methods", "fedzo,fedprox", *FAST, "--seeds", "0,1,2",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    runs = {}
    for m in ("fedzo", "fedprox"):
        runs[m] = []
        for k in (0, 1, 2):
            summary = json.loads((tmp_path / m / f"seed{k}" / "summary.json").read_text())
            assert summary["config"]["seed"] == k and summary["problem"]["seed"] == k
            runs[m].append(read_history(tmp_path / m / f"seed{k}" / "history.csv"))
    with open(tmp_path / "comparison.csv", newline="") as fh:
        table = {r["method"]: r for r in csv.DictReader(fh)}
    assert list(table) == ["fedzo", "fedprox"]
    for m, histories in runs.items():
        finals = [h[-1]["value"] for h in histories]
        row = table[m]
        assert row["seeds"] == "0;1;2"
        assert float(row["final_value_median"]) == pytest.approx(np.median(finals))
        assert float(row["final_value_min"]) == pytest.approx(min(finals))
        assert float(row["final_value_max"]) == pytest.approx(max(finals))
        for target in ("runner-up", "q=0.5", "q=0.9", "q=0.99"):
            assert f"queries_to_{target}_median" in row and f"queries_to_{target}_reached" in row
        # the per-seed numbers are those of single-seed tables over the same runs
        single = [comparison_table({n: runs[n][i] for n in runs})[0] for i in range(3)]
        per_seed = [next(r for r in tab if r["method"] == m)["queries_to_q=0.5"] for tab in single]
        med, lo, hi, got = _spread(per_seed)
        assert row["queries_to_q=0.5_reached"] == f"{got}/3"
        assert row["queries_to_q=0.5_median"] == ("" if med is None else str(med))
    assert "median [min-max] over the seeds" in out and "What this shows:" in out
    assert (tmp_path / "comparison.png").is_file()
    ax_q, ax_r = figures[0].axes
    assert len(ax_q.lines) == 2 and len(ax_q.collections) == 2  # a median line and a band each
    x, y = ax_r.lines[0].get_data()
    gaps = np.array([[r["value"] for r in h] for h in runs["fedzo"]])
    optimum = [json.loads((tmp_path / "fedzo" / f"seed{k}" / "summary.json").read_text())["problem"]
               ["optimum_value"] for k in range(3)]
    assert np.allclose(y, np.median(np.maximum(gaps - np.array(optimum)[:, None], 1e-12), 0))


def test_without_seeds_the_layout_and_the_table_stay_single_seed(tmp_path, capsys):
    assert main(["compare", "--methods", "fedzo", *FAST, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fedzo" / "history.csv").is_file()
    with open(tmp_path / "comparison.csv", newline="") as fh:
        assert "final_value" in next(csv.DictReader(fh))


def test_spread_counts_never_as_infinity_for_the_median():
    assert _spread([100, 300, 200]) == (200, 100, 300, 3)
    assert _spread([100, None, 200]) == (200, 100, None, 2)  # median of 100, 200, inf
    assert _spread([100, None, None]) == (None, 100, None, 1)
    assert _spread([None, None]) == (None, None, None, 0)


def test_comparison_table_seeds_names_targets_per_seed():
    def rows(values, step=10):
        return [{"round": i, "queries": i * step, "value": v, "wall_s": 0.1} for i, v in enumerate(values)]

    runs = {"fedzo": [rows([4.0, 2.0, 1.0]), rows([8.0, 6.0, 5.0])],
            "fedprox": [rows([4.0, 3.0, 2.0]), rows([8.0, 4.0, 2.0])]}
    table, targets = comparison_table_seeds(runs, [0, 1])
    assert targets["runner-up"] == [2.0, 5.0]  # per seed: the best final of the non-winners
    fedzo = table[0]
    assert fedzo["final_value_median"] == 3.0 and fedzo["final_value_min"] == 1.0
    # seed 0: fedzo reaches fedprox's 2.0 after 10 queries; seed 1: its own 5.0 after 20
    assert fedzo["queries_to_runner-up_reached"] == "2/2"
    assert (fedzo["queries_to_runner-up_min"], fedzo["queries_to_runner-up_max"]) == (10, 20)
    assert fedzo["exchanges_to_runner-up_median"] == 1.5  # one exchange per round


@pytest.mark.parametrize(("text", "seeds"), [("0,1,2", [0, 1, 2]), ("3", [3]), ("0-3", [0, 1, 2, 3]),
                                             (" 5, 7 ", [5, 7])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("argv", [["--seeds", "a,b"], ["--seeds", "1,1"], ["--seeds", "-1"],
                                  ["--seeds", "0,1", "--seed", "3"]])
def test_bad_seeds_are_refused_before_any_run(argv, tmp_path, capsys):
    assert main(["compare", "--methods", "fedzo", *FAST, *argv, "--out", str(tmp_path / "o")]) == 2
    assert "--seed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
