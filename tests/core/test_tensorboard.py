"""--tensorboard / tensorboard_dir: scalars per round, read back with TensorBoard's reader."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

import fedzoo  # noqa: E402
from fedzoo.results import client_queries_of, read_history  # noqa: E402
from fedzoo.tensorboard_log import TensorBoardReporter  # noqa: E402
from fedzoo_cli.main import main  # noqa: E402

FAST = ["--dim", "6", "--clients", "3", "--rounds", "4", "--local-steps", "2"]


def scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in ``logdir``: (step, value), last write wins."""
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        last = {}
        for event in acc.Scalars(tag):
            last[event.step] = event.value
        out[tag] = sorted(last.items())
    return out


def check_against_history(tags, rows) -> None:
    """The tags hold the history rows' numbers (float32 in the event files), row 0 (the
    start point, step 0) included; ``value_vs_queries`` holds the values at step =
    cumulative queries."""
    rounds = [r for r in rows if r["round"] > 0]
    assert [s for s, _ in tags["queries/total"]] == [r["round"] for r in rows]  # from step 0
    for tag, col in (("queries/total", "queries"), ("bytes/up", "bytes_up"), ("bytes/down", "bytes_down")):
        assert [v for _, v in tags[tag]] == pytest.approx([float(r[col]) for r in rows], rel=1e-6), tag
    for tag, col in (("time/seconds_per_round", "wall_s"), ("clients/replies", "clients")):
        assert [v for _, v in tags[tag]] == pytest.approx([float(r[col]) for r in rounds], rel=1e-6), tag
    for tag, col in (("value", "value"), ("reported_value", "reported_value")):
        want = [(r["round"], r[col]) for r in rows if math.isfinite(r[col])]
        assert [s for s, _ in tags[tag]] == [s for s, _ in want], tag
        assert [v for _, v in tags[tag]] == pytest.approx([v for _, v in want], rel=1e-6), tag
    by_queries = {}
    for r in rows:
        if math.isfinite(r["value"]):
            by_queries[int(r["queries"])] = r["value"]  # the last row at a count wins
    assert dict(tags["value_vs_queries"]) == pytest.approx(by_queries, rel=1e-6)
    cids = sorted({c for r in rounds for c in client_queries_of(r)})
    assert cids and all(f"queries/client_{c}" in tags for c in cids)
    for cid in cids:
        want = [float(client_queries_of(r).get(cid, 0)) for r in rounds if cid in client_queries_of(r)]
        assert [v for _, v in tags[f"queries/client_{cid}"]] == want


@pytest.mark.parametrize("method", ["fedzo", "fzoos"])
def test_fedzoo_run_tensorboard_writes_every_scalar_of_every_round(method, tmp_path):
    extra = ["--rff-features", "100", "--gp-history", "40", "--sync-points", "5", "--explore-points", "2"] \
        if method == "fzoos" else []
    out, tb = tmp_path / "run", tmp_path / "tb"
    assert main(["run", "--method", method, *FAST, *extra, "--out", str(out), "--tensorboard", str(tb)]) == 0
    check_against_history(scalars(tb), read_history(out / "history.csv"))


def test_compare_tensorboard_writes_one_run_per_method_and_seed(tmp_path):
    tb = tmp_path / "tb"
    assert main(["compare", "--methods", "fedzo,fedprox", *FAST, "--seeds", "0,1", "--out",
                 str(tmp_path / "cmp"), "--tensorboard", str(tb)]) == 0
    for m in ("fedzo", "fedprox"):
        for k in (0, 1):
            rows = read_history(tmp_path / "cmp" / m / f"seed{k}" / "history.csv")
            check_against_history(scalars(tb / m / f"seed{k}"), rows)


def test_minimize_tensorboard_dir_logs_reported_values_of_custom_objectives(tmp_path):
    result = fedzoo.minimize([lambda X: ((X - 0.2) ** 2).sum(1), lambda X: ((X - 0.6) ** 2).sum(1)],
                             np.full(3, 0.5), method="fedzo", rounds=3, local_steps=2,
                             tensorboard_dir=tmp_path / "tb")
    tags = scalars(tmp_path / "tb")
    check_against_history(tags, result.history)
    assert [s for s, _ in tags["value"]] == [0, 1, 2, 3]  # reported a round later, written in order


def test_the_reporter_writes_late_reports_in_step_order_and_skips_unreported_rows(tmp_path):
    rep = TensorBoardReporter(tmp_path)
    rows = [{"round": r, "queries": 10 * r, "bytes_up": r, "bytes_down": r, "wall_s": 0.1, "clients": 2,
             "client_queries": "", "value": math.nan, "reported_value": math.nan} for r in range(6)]
    rep.round(rows[1])
    rows[1]["value"] = rows[1]["reported_value"] = 5.0  # reported by round 2's replies
    rep.round(rows[2])
    rep.round(rows[3])  # round 2 never reported (no replies in round 3)
    rep.round(rows[4])
    rows[4]["value"] = rows[4]["reported_value"] = 3.0  # reported by the final evaluation
    rows[4]["queries"] += 2
    rep.finish(rows[:5])
    rep.close()
    tags = scalars(tmp_path)
    assert tags["value"] == [(1, 5.0), (4, 3.0)]
    assert tags["queries/total"][-1] == (4, 42.0)


def test_a_tensorboard_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["run", "--method", "fedzo", *FAST, "--out", str(tmp_path / "o"),
                 "--tensorboard", str(tmp_path / "f")]) == 2
    assert "TensorBoard directory" in capsys.readouterr().err
