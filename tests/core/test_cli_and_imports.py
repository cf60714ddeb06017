"""The command line and the import contract, through real subprocesses where it matters."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from fedzoo_cli.main import main

FAST = ["--dim", "8", "--clients", "3", "--rounds", "3", "--local-steps", "2", "--rff-features", "100",
        "--gp-history", "40", "--sync-points", "5", "--explore-points", "2"]


def test_import_fedzoo_loads_no_flower_grpc_or_torch():
    code = ("import sys, fedzoo; fedzoo.minimize; fedzoo.run_federation; import fedzoo_cli.main; "
            "print(' '.join(m for m in ('flwr', 'grpc', 'torch', 'ray', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_cli_entry_module_loads_no_numpy_before_main_sets_the_blas_environment():
    code = ("import sys, fedzoo_cli.main; "
            "print(' '.join(m for m in ('numpy', 'scipy', 'fedzoo_attack', 'fedzoo_server', 'fedzoo_launch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_run_writes_history_and_summary_as_in_the_design(tmp_path, capsys):
    assert main(["run", "--method", "fzoos", *FAST, "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3]
    for col in ("round", "queries", "value", "bytes_up", "bytes_down", "wall_s"):
        assert col in rows[0]
    assert int(rows[0]["queries"]) == 0 and int(rows[-1]["bytes_up"]) > 0
    assert list(rows[0])[-4:] == ["participants", "client_queries", "status", "notes"]  # docs/design.md §6.2 order
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("config", "method", "final_value", "total_queries", "total_bytes", "wall_s", "versions"):
        assert key in summary
    assert summary["total_queries"] == int(rows[-1]["queries"]) == sum(summary["queries_by_client"].values())
    assert "final value" in capsys.readouterr().out


COMPARISON_COLUMNS = ["method", "final_value", "best_value", "total_queries", "exchanges",
                      "best_at_10%", "best_at_25%", "best_at_50%", "best_at_100%",
                      *(f"{axis}_to_{t}" for t in ("q=0.5", "q=0.9", "q=0.99", "runner-up")
                        for axis in ("queries", "exchanges")),
                      "seconds_per_round", "gradients"]


def test_compare_prints_a_table_and_writes_csv_and_png(tmp_path, capsys, monkeypatch):
    import fedzoo.plots

    figures = []
    build = fedzoo.plots.comparison_figure

    def spy(*args, **kwargs):
        figures.append(build(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(fedzoo.plots, "comparison_figure", spy)
    assert main(["compare", "--methods", "fzoos,fedzo,scaffold2,fo", *FAST, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "to runner-up" in out and "to q=0.9" in out and "fzoos" in out and "scaffold2" in out
    assert "equal rounds" in out and "not equal queries" in out  # which axis was equalised
    assert "What this shows:" in out and "Lowest final value:" in out
    assert "fo (exact gradients)" in out  # fo is labelled as the first-order reference
    with open(tmp_path / "comparison.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COMPARISON_COLUMNS
        table = list(reader)
    assert [r["method"] for r in table] == ["fzoos", "fedzo", "scaffold2", "fo"]
    assert [r["gradients"] for r in table] == ["zeroth-order"] * 3 + ["exact (reference)"]
    # the runner-up target: the lowest final value of the methods other than the winner,
    # over all methods run (the exact-gradient reference included)
    finals = sorted({float(r["final_value"]) for r in table})
    target = finals[1]
    second = next(r for r in table if float(r["final_value"]) == target)
    assert int(second["queries_to_runner-up"]) <= int(second["total_queries"])
    for r in table:  # exchanges: one per round, two with a sync exchange, +1 final evaluation
        assert int(r["exchanges"]) in (3, 4, 6)
    lowest = min(table, key=lambda r: float(r["final_value"]))  # reaches q=0.99 of its own way
    assert int(lowest["queries_to_q=0.99"]) <= int(lowest["total_queries"])
    for r in table:  # a closer target is never reached earlier
        qs = [r[f"queries_to_q={q}"] for q in ("0.5", "0.9", "0.99")]
        reached = [int(q) for q in qs if q != ""]
        assert reached == sorted(reached)
    assert all(float(r["seconds_per_round"]) > 0 for r in table)
    # the plot: two panels, value against cumulative queries and against exchanges
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    (fig,) = figures
    assert len(fig.axes) == 2
    assert [ax.get_xlabel() for ax in fig.axes] == [
        "cumulative queries (all clients)", "cumulative exchanges (server-client message rounds)"]
    styles = {(line.get_linestyle(), line.get_marker()) for line in fig.axes[0].get_lines()}
    assert len(styles) == 4  # curves that coincide stay visible
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["fzoos", "fedzo", "scaffold2", "fo (exact gradients)"]
    assert (tmp_path / "fedzo" / "history.csv").exists()


def test_compare_without_matplotlib_prints_the_table_writes_the_csv_then_fails_clearly(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    argv = ["compare", "--methods", "fedzo,fedprox", *FAST, "--rounds", "2", "--out", str(tmp_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "to q=0.5" in captured.out and "fedprox" in captured.out  # the table
    assert "matplotlib" in captured.err and "'plot' extra" in captured.err
    assert "comparison.png was not written" in captured.err
    assert "Traceback" not in captured.err
    with open(tmp_path / "comparison.csv", newline="") as fh:
        assert [r["method"] for r in csv.DictReader(fh)] == ["fedzo", "fedprox"]
    assert not (tmp_path / "comparison.png").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run", "--method", "fedzo", "--problem", "sphere", "--out", "x"], "Unknown problem 'sphere'"),
        (["compare", "--methods", "fzoos,magic", "--out", "x"], "Unknown method(s) ['magic']"),
        (["run", "--method", "fedzo", "--rounds", "0", "--out", "x"], "--rounds = 0"),
        (["run", "--method", "fedzo", "--dim", "-2", "--out", "x"], "dim must be a positive integer"),
        (["run", "--method", "fedzo", "--lr", "-0.1", "--out", "x"], "--lr = -0.1"),
        (["run", "--method", "fzoos", "--gp-history", "0", "--out", "x"], "--gp-history = 0"),
        (["compare", "--methods", "fedzo", "--local-steps", "0", "--out", "x"], "--local-steps = 0"),
        (["run", "--method", "fedzo", "--min-replies", "9", "--out", "x"], "--min-replies = 9"),
    ],
)
def test_bad_cli_input_exits_2_with_a_clear_message(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err
    assert "_" not in err.split("error:")[1].split("=")[0]  # flags, never snake_case
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_cli_resume_refuses_fewer_rounds_than_the_checkpoint(tmp_path, capsys):
    part = tmp_path / "part"
    assert main(["run", "--method", "fedzo", *FAST, "--checkpoint", "--out", str(part)]) == 0
    history = (part / "history.csv").read_text()
    capsys.readouterr()
    assert main(["run", "--resume", str(part), "--rounds", "2"]) == 2
    err = capsys.readouterr().err
    assert "--rounds" in err and "rounds = 2" in err and "after round 3" in err
    assert (part / "history.csv").read_text() == history  # nothing rewritten
    assert main(["run", "--resume", str(part), "--rounds", "3"]) == 0  # equal: just finishes
    assert (part / "history.csv").read_text().splitlines()[:4] == history.splitlines()[:4]


def test_console_script_runs(tmp_path):
    exe = [sys.executable, "-m", "fedzoo_cli"]
    out = subprocess.run([*exe, "run", "--method", "fedzo", *FAST, "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "round   3/3" in out.stderr  # progress per round


def test_cli_resume_continues_a_checkpointed_run(tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["run", "--method", "fedzo", *FAST, "--rounds", "4", "--out", str(full)]) == 0
    assert main(["run", "--method", "fedzo", *FAST, "--rounds", "2", "--checkpoint", "--out", str(part)]) == 0
    assert main(["run", "--resume", str(part), "--rounds", "4"]) == 0
    a = list(csv.DictReader(open(full / "history.csv")))
    b = list(csv.DictReader(open(part / "history.csv")))
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k != "wall_s"} == {k: v for k, v in rb.items() if k != "wall_s"}
    assert main(["run", "--resume", str(tmp_path / "none")]) == 2
    assert "No checkpoint" in capsys.readouterr().err


def test_methods_lists_every_registered_method_with_its_options(capsys):
    from fedzoo.methods import methods
    from fedzoo_cli.main import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for m in methods():
        assert f"{m.name}  ({type(m).__module__})\n    {m.summary}" in out
    assert "gp-history=300" in out and "prox-mu=1.0" in out  # options with their defaults
