"""The budget contract at every entry point, and exact counts when replies are refused.

``fedzoo.minimize(..., budget=B)``, ``fedzoo run --budget`` and ``fedzoo compare
--budget`` give every method a hard budget of client queries; the callables themselves
count what they were given, and every count the run reports (``num_queries``,
history.csv, summary.json) equals it, also with a client whose replies the server
rejects (all of them) or whose objective raises (``on_client_error``).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import fedzoo
from fedzoo.errors import ConfigError, ObjectiveError
from fedzoo.methods import get_method, method_names
from fedzoo.results import client_queries_of, read_history
from fedzoo_cli.main import main
from tests.settings import LIGHT

LIGHT_SNAKE = {k.replace("-", "_"): v for k, v in LIGHT.items()}
#: Methods a user's callables can run (the exact-gradient reference needs synthetic ones).
BLACK_BOX_METHODS = [m for m in method_names() if not get_method(m).exact_gradients]


class Counted:
    """Client black boxes that count every point they are given; ``hostile`` clients
    return values the server must reject (1e300 + sum x)."""

    def __init__(self, centres, hostile=(), fail_after=None):
        self.points = [0] * len(centres)
        self.fns = []
        for i, c in enumerate(centres):
            self.fns.append(self._make(i, c, i in hostile, (fail_after or {}).get(i)))

    def _make(self, i, c, hostile, fail_after):
        def f(X):
            X = np.atleast_2d(X)
            self.points[i] += len(X)
            if fail_after is not None and self.points[i] > fail_after:
                raise RuntimeError(f"client {i}'s instrument went offline")
            if hostile:
                return 1e300 + X.sum(1)
            return ((X - c) ** 2).sum(1)
        return f

    @property
    def total(self) -> int:
        return sum(self.points)


def _check_counts(res, counted: Counted, budget: int | None = None) -> None:
    assert res.num_queries == counted.total  # exactly what the callables were given
    if budget is not None:
        assert counted.total <= budget
        assert res.summary["query_budget"] == budget
    by_client = res.summary["queries_by_client"]
    assert by_client == {str(i): n for i, n in enumerate(counted.points) if n}
    rows = res.history
    assert sum(sum(client_queries_of(r).values()) for r in rows) == rows[-1]["queries"] == counted.total


@pytest.mark.parametrize("method", BLACK_BOX_METHODS)
def test_minimize_keeps_the_budget_and_counts_a_rejected_client(method):
    counted = Counted([0.3, 0.6, 0.5], hostile={1})
    res = fedzoo.minimize(counted.fns, np.full(4, 0.5), method=method, budget=2000,
                          **LIGHT_SNAKE, popsize=6, square_candidates=3)
    _check_counts(res, counted, 2000)
    assert counted.points[1] > 0  # the rejected client was asked and is counted
    refused = res.summary["refused_queries_by_client"]
    assert refused.get("1", 0) == counted.points[1]  # and reported as refused
    assert any("rejected=" in r["notes"] and "1" in r["notes"] for r in res.history[1:])
    # the budget was used: the next round could not have fitted
    assert res.num_queries > 2000 // 4


def test_a_budget_without_rounds_sets_the_rounds_it_pays_for():
    from fedzoo.budget import rounds_for_budget
    from fedzoo.config import RunConfig

    counted = Counted([0.3, 0.6])
    res = fedzoo.minimize(counted.fns, np.full(4, 0.5), method="fedzo", budget=2000, local_steps=2)
    cfg = RunConfig.from_mapping({"method": "fedzo", "local-steps": 2})
    assert res.summary["config"]["rounds"] == rounds_for_budget(cfg, 4, 2, 2000)
    assert 2000 - res.num_queries < 2 * (1 + 2 * 4 + 1) + 2  # less than one more round was left
    with pytest.raises(ConfigError, match="cannot pay for one round"):
        fedzoo.minimize(counted.fns, np.full(4, 0.5), method="fedzo", budget=10)
    with pytest.raises(ConfigError, match=r"budget="):
        fedzoo.minimize(counted.fns, np.full(4, 0.5), max_queries=1000)
    with pytest.raises(ConfigError, match="whole number"):
        fedzoo.minimize(counted.fns, np.full(4, 0.5), budget=-3)


def test_api_errors_name_options_as_the_function_takes_them():
    with pytest.raises(ConfigError, match="'local_steps' = 0"):
        fedzoo.minimize([lambda X: X.sum(1)], np.full(3, 0.5), local_steps=0)
    with pytest.raises(ConfigError, match="'rff_features'"):
        fedzoo.minimize([lambda X: X.sum(1)], np.full(3, 0.5), rff_features=0)


@pytest.mark.parametrize("method", ["fedzo", "fzoos", "fedcma"])
def test_skip_a_client_that_raises_in_round_3(method):
    probe = Counted([0.3, 0.6, 0.5])
    fedzoo.minimize(probe.fns, np.full(4, 0.5), method=method, rounds=2, **LIGHT_SNAKE, popsize=6)
    # client 2 raises on its first batch past what rounds 1 and 2 cost it
    counted = Counted([0.3, 0.6, 0.5], fail_after={2: probe.points[2]})
    res = fedzoo.minimize(counted.fns, np.full(4, 0.5), method=method, rounds=5,
                          on_client_error="skip", **LIGHT_SNAKE, popsize=6)
    assert [r["round"] for r in res.history] == [0, 1, 2, 3, 4, 5]  # it completed
    _check_counts(res, counted)
    assert "2" in res.summary["client_failures"] and res.summary["client_failures"]["2"][0] == 3
    assert "failed=2" in res.history[3]["notes"]
    assert all(r["status"] == "ok" for r in res.history)
    # fail: the error carries the rows completed
    counted = Counted([0.3, 0.6, 0.5], fail_after={2: probe.points[2]})
    with pytest.raises(ObjectiveError, match="instrument went offline") as info:
        fedzoo.minimize(counted.fns, np.full(4, 0.5), method=method, rounds=5,
                        on_client_error="fail", **LIGHT_SNAKE, popsize=6)
    assert [r["round"] for r in info.value.partial.history] == [0, 1, 2]


def test_every_client_failing_ends_the_run_at_once():
    counted = Counted([0.3, 0.6], fail_after={0: 0, 1: 0})
    with pytest.raises(ObjectiveError, match="every client asked failed") as info:
        fedzoo.minimize(counted.fns, np.full(4, 0.5), method="fedzo", rounds=5)
    assert info.value.partial.num_queries == counted.total == 2


def test_progress_and_callback():
    seen, calls = [], []
    res = fedzoo.minimize([lambda X: ((X - 0.3) ** 2).sum(1)] * 2, np.full(3, 0.5), method="fedzo",
                          rounds=4, local_steps=2, progress=seen.append,
                          callback=lambda r, x, row: calls.append(r) or r == 3)
    assert [row["round"] for row in seen] == [1, 2, 3] and calls == [1, 2, 3]  # stopped at 3
    assert len(res.history) == 4
    assert res.best_value == min(r["reported_value"] for r in res.history if np.isfinite(r["reported_value"]))


def test_compare_api_at_equal_budgets(tmp_path):
    objs = [lambda X, c=c: ((X - c) ** 2).sum(1) for c in (0.3, 0.6)]
    comp = fedzoo.compare(objs, np.full(4, 0.5), methods=["fzoos", "fedzo", "fedcma"], budget=1500,
                          seeds=[0, 1], out_dir=tmp_path, **LIGHT_SNAKE, popsize=6)
    for method in ("fzoos", "fedzo", "fedcma"):
        for res in comp.results[method]:
            assert res.num_queries <= 1500
    assert set(comp.best_at()) == {"10%", "25%", "50%", "100%"}
    assert all(comp.best_at().values())
    assert "same budget of 1500" in str(comp)
    with open(tmp_path / "comparison.csv", newline="") as fh:
        assert [r["method"] for r in csv.DictReader(fh)] == ["fzoos", "fedzo", "fedcma"]
    assert (tmp_path / "fedcma" / "seed1" / "history.csv").is_file()


FAST = ["--problem", "quadratic", "--dim", "6", "--clients", "3", "--local-steps", "2",
        "--rff-features", "200", "--gp-history", "60", "--sync-points", "8", "--popsize", "6"]


def test_cli_run_budget(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", *FAST, "--method", "fzoos", "--budget", "900", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = read_history(out / "history.csv")
    assert summary["query_budget"] == 900 and summary["total_queries"] == rows[-1]["queries"] <= 900
    assert "of the budget of 900" in capsys.readouterr().out
    assert main(["run", *FAST, "--method", "fedzo", "--budget", "5", "--out", str(tmp_path / "s")]) == 2
    assert "--budget" in capsys.readouterr().err


def test_cli_compare_budget_is_fair_and_says_so(tmp_path, capsys):
    argv = ["compare", *FAST, "--methods", "fzoos,fedzo,fedprox,fedcma", "--budget", "2000",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "equal budgets: 2000 client queries per method" in out
    assert "Best within 10% of the budget" in out and "Best within 100% of the budget" in out
    with open(tmp_path / "comparison.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert all(int(r["total_queries"]) <= 2000 for r in table)
    # targets over all four methods: the lowest final value (whoever has it) reaches q=0.99
    lowest = min(table, key=lambda r: float(r["final_value"]))
    assert lowest["queries_to_q=0.99"] != ""
    for m in ("fzoos", "fedzo", "fedprox", "fedcma"):
        summary = json.loads((tmp_path / m / "summary.json").read_text())
        assert summary["query_budget"] == 2000


def test_cli_runs_a_users_objective_factory_with_a_budget(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_lab.py").write_text(
        "import numpy as np\n"
        "SEEN = {}\n"
        "def clients(partition_id, num_clients, shift=0.3):\n"
        "    def f(X):\n"
        "        SEEN[partition_id] = SEEN.get(partition_id, 0) + len(X)\n"
        "        return ((np.asarray(X) - shift - 0.1 * partition_id) ** 2).sum(1)\n"
        "    return f\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "r"
    argv = ["run", "--problem", "my_lab:clients", "--objective-options", '{"shift": 0.2}',
            "--dim", "5", "--clients", "3", "--method", "fedzo", "--local-steps", "2",
            "--budget", "400", "--out", str(out)]
    assert main(argv) == 0
    import my_lab

    summary = json.loads((out / "summary.json").read_text())
    assert summary["total_queries"] == sum(my_lab.SEEN.values()) <= 400
    assert summary["queries_by_client"] == {str(k): v for k, v in sorted(my_lab.SEEN.items())}
    assert main(["run", "--problem", "my_lab:nothing", "--dim", "5", "--clients", "2",
                 "--out", str(tmp_path / "x")]) == 2
    assert "has no attribute" in capsys.readouterr().err


@pytest.mark.parametrize(("method", "exchanges"), [("fedzo", 7), ("fzoos", 7), ("fedcma", 4)])
def test_max_exchanges_caps_the_messages(method, exchanges):
    from fedzoo.comparison import exchanges_per_row

    res = fedzoo.minimize([lambda X: ((X - 0.3) ** 2).sum(1)] * 2, np.full(4, 0.5), method=method,
                          max_exchanges=exchanges, **LIGHT_SNAKE, popsize=6)
    spent = exchanges_per_row(res.history, method)[-1]
    assert spent <= exchanges and spent >= exchanges - 1  # all it could use
    with pytest.raises(ConfigError, match="cannot pay for one round"):
        fedzoo.minimize([lambda X: X.sum(1)], np.full(3, 0.5), method="fzoos", max_exchanges=1)
