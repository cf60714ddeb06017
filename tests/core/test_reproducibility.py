"""summary.json records how to repeat a run; fedzoo run --config repeats it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fedzoo
from fedzoo.provenance import git_state
from fedzoo.results import read_history
from fedzoo_cli.main import main

FAST = ["--dim", "6", "--clients", "3", "--rounds", "3", "--local-steps", "2"]
ROOT = Path(__file__).resolve().parents[2]


def same_history(a, b) -> None:
    """Equal histories, wall_s aside."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k != "wall_s"} == pytest.approx(
            {k: v for k, v in rb.items() if k != "wall_s"}, nan_ok=True)


def test_summary_records_the_command_line_the_commit_and_the_packages(tmp_path):
    argv = ["run", "--method", "fedzo", *FAST, "--lr", "0.02", "--out", str(tmp_path)]
    assert main(argv) == 0
    prov = json.loads((tmp_path / "summary.json").read_text())["provenance"]
    assert prov["invocation"] == {"argv": ["fedzoo", *argv]}
    assert prov["packages"]["numpy"] == np.__version__ and prov["packages"]["fedzoo"]
    assert "python" in prov["packages"]
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        assert prov["git"]["commit"] == head and isinstance(prov["git"]["dirty"], bool)
    else:
        assert prov["git"] is None


def test_summary_of_minimize_records_the_call(tmp_path):
    def sphere(X):
        return ((X - 0.3) ** 2).sum(1)

    fedzoo.minimize([sphere, sphere], np.full(3, 0.5), method="fedzo", rounds=2, lr=0.05, out_dir=tmp_path)
    call = json.loads((tmp_path / "summary.json").read_text())["provenance"]["invocation"]
    assert call["api"] == "fedzoo.minimize"
    args = call["arguments"]
    assert args["x0"] == [0.5, 0.5, 0.5] and args["rounds"] == 2 and args["lr"] == 0.05
    assert args["objectives"][0].endswith("sphere") and args["out_dir"] == str(tmp_path)


def test_run_config_summary_json_repeats_the_run(tmp_path):
    first = tmp_path / "first"
    assert main(["run", "--method", "fzoos", "--problem", "ackley", "--dim", "5", "--clients", "3",
                 "--heterogeneity", "2", "--seed", "4", "--problem-seed", "7", "--rounds", "3",
                 "--local-steps", "2", "--rff-features", "120", "--gp-history", "30", "--lr", "0.03",
                 "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert main(["run", "--config", str(first / "summary.json"), "--out", str(again)]) == 0
    a, b = (json.loads((d / "summary.json").read_text()) for d in (first, again))
    assert a["config"] == b["config"] and a["problem"] == b["problem"]
    same_history(read_history(first / "history.csv"), read_history(again / "history.csv"))
    assert b["provenance"]["invocation"]["argv"][2:4] == ["--config", str(first / "summary.json")]


def test_run_config_toml_sets_options_and_flags_win(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('method = "fedprox"\nproblem = "levy"\ndim = 5\nclients = 2\nrounds = 2\n'
                    'local-steps = 2\nprox_mu = 0.5\nseed = 3\n'
                    f'out = "{(tmp_path / "from-file").as_posix()}"\n')
    assert main(["run", "--config", str(toml), "--rounds", "3"]) == 0
    summary = json.loads((tmp_path / "from-file" / "summary.json").read_text())
    assert summary["method"] == "fedprox" and summary["problem"]["name"] == "levy"
    assert summary["config"]["prox-mu"] == 0.5 and summary["config"]["seed"] == 3
    assert summary["rounds"] == 3  # the command line wins


@pytest.mark.parametrize(("content", "words"), [
    ('bogus-option = 1\n', "--bogus-option"),
    ('lr = "fast"\n', "--lr"),
    ('rounds = [\n', "not valid TOML"),
    ('resume = "x"\n', "--resume"),
])
def test_run_config_refuses_bad_files_clearly(content, words, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert words in capsys.readouterr().err


def test_run_config_refuses_a_summary_of_custom_objectives(tmp_path, capsys):
    fedzoo.minimize([lambda X: X.sum(1)], np.full(2, 0.5), method="fedzo", rounds=1, out_dir=tmp_path / "r")
    assert main(["run", "--config", str(tmp_path / "r" / "summary.json"), "--out", str(tmp_path / "o")]) == 2
    assert "provenance.invocation" in capsys.readouterr().err


def test_git_state_is_none_outside_a_checkout(monkeypatch, tmp_path):
    import fedzoo.provenance as prov

    git_state.cache_clear()
    monkeypatch.setattr(prov, "__file__", str(tmp_path / "pkg" / "provenance.py"))
    try:
        assert prov.git_state() is None
    finally:
        git_state.cache_clear()
