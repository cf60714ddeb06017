"""simulations/attack/summarize.py on fabricated `fedzoo attack` summaries."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "simulations" / "attack" / "summarize.py"


@pytest.fixture(scope="module")
def summarize() -> ModuleType:
    spec = importlib.util.spec_from_file_location("attack_summarize", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(method: str, q50: int | None, q90: int | None, rate: float) -> dict[str, Any]:
    return {
        "images": 10,
        "successes": round(10 * rate),
        "success_rate_at": {"5000": rate / 2, "10000": rate},
        "queries_to_50pct": q50,
        "queries_to_90pct": q90,
        "mean_queries_to_success": 4000.0 if rate else None,
        "median_queries_to_success": 3500.0 if rate else None,
        "median_round_s": 0.5,
        "config": {"method": method},
    }


def _write_run(
    root: Path, budget: int | None, fzoos: int | None, fedzo: int | None
) -> Path:
    """One run directory with a summary.json (and the attack.csv the CLI writes next to it)."""
    run = root / "p0.7-eps0.3"
    run.mkdir(parents=True)
    summary = {
        "command": "attack",
        "methods": ["fzoos", "fedzo"],
        "epsilon": 0.3,
        "targeted": False,
        "budget": budget,
        "budgets": [5000, 10000],
        "images": list(range(10)),
        "problem": {"dataset": "mnist5k", "num_clients": 10, "portion": 0.7},
        "results": {
            "fzoos": _result("fzoos", 3000, fzoos, 0.9 if fzoos else 0.6),
            "fedzo": _result("fedzo", 6000, fedzo, 0.9 if fedzo else 0.6),
        },
        "wall_s": 60.0,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "attack.csv").write_text("method,image,success,queries_to_success,linf\n")
    return root


def _ratio_line(summarize: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert summarize.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "| fzoos | p0.7-eps0.3 |" in out and "| fedzo | p0.7-eps0.3 |" in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("FedZO / FZooS queries to 90 %")]
    return line


def test_without_a_budget_a_missing_fedzo_90_percent_does_not_crash(
    summarize: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _ratio_line(summarize, _write_run(tmp_path, None, 4000, None), capsys)
    assert "not bounded" in line and "no budget" in line


def test_with_a_budget_the_ratio_is_a_lower_bound_set_by_the_budget(
    summarize: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _ratio_line(summarize, _write_run(tmp_path, 20000, 8000, None), capsys)
    assert "> 2.50x" in line and "lower bound" in line and "20000 / 8000" in line
    assert "did not reach 90 % within the budget of 20000" in line
    assert "never" not in line


def test_both_reaching_90_percent_gives_the_ratio(
    summarize: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _ratio_line(summarize, _write_run(tmp_path, 20000, 4000, 10000), capsys)
    assert "2.50x" in line and ">" not in line and "bound" not in line


def test_fzoos_missing_90_percent_gives_an_upper_bound(
    summarize: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _ratio_line(summarize, _write_run(tmp_path, 20000, None, 10000), capsys)
    assert "< 0.50x" in line and "upper bound" in line


def test_neither_reaching_90_percent(summarize: ModuleType) -> None:
    assert "neither reached 90 % within the budget of 20000" in summarize.ratio_line(
        None, None, 20000
    )
    assert "neither" in summarize.ratio_line(None, None, None)


def test_plot_names_are_per_problem_and_never_shared(summarize: ModuleType) -> None:
    used: set[str] = set()
    key = ("mnist5k", 10, 0.7, 0.3, False, (1, 2, 3), 20000)
    assert summarize.plot_name(key, used) == "mnist5k-n10-p0.7-eps0.3"  # as before
    assert summarize.plot_name(("digits", 10, 0.7, 0.3, True, (1,), 20000), used) == (
        "digits-n10-p0.7-eps0.3-targeted")
    # the same problem on other images (e.g. a run left in the same root): its own name
    other = ("mnist5k", 10, 0.7, 0.3, False, (4, 5), 3000)
    assert summarize.plot_name(other, used) == "mnist5k-n10-p0.7-eps0.3-k2-b3000"
    assert summarize.plot_name(other, used) == "mnist5k-n10-p0.7-eps0.3-k2-b3000-2"
