"""Attack and metric experiments on tiny hand-made problems: accounting, budgets, files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError
from fedzoo_attack import attack_run as E
from fedzoo_attack import metric_run as MR
from fedzoo_attack import objectives as O
from fedzoo_attack import stats as S
from fedzoo_cli.attack import ATTACK_METHODS

IMAGE = np.full((2, 2), 0.5, dtype=np.float32)  # d = 4


def linear_model(scale: float):  # noqa: ANN201
    """Logits [scale * sum of pixels, 2 * first pixel, 1] (3 classes).

    At the clean image the label 0 wins ([2 s, 1, 1]); with epsilon = 0.5 the point x
    maps to pixels x, so class 0 loses once scale * sum(x) < 1.
    """

    def logits(images: np.ndarray) -> np.ndarray:
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        return np.stack([scale * flat.sum(axis=1), 2.0 * flat[:, 0], np.ones(len(flat))], axis=1)

    return logits


MODELS = [linear_model(1.0), linear_model(1.2)]


def config(method: str, **extra: object) -> RunConfig:
    return RunConfig.from_mapping(
        {
            "method": method,
            "rounds": 12,
            "local-steps": 3,
            "lr": 0.1,
            "rgf-directions": 4,
            "rff-features": 64,
            "gp-history": 40,
            "sync-points": 5,
            "explore-points": 2,
            "init-points": 4,
            **extra,
        }
    )


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every point the attack objectives evaluate (the true query count)."""
    seen: list[int] = []
    original = O.AttackObjective._evaluate

    def counting(self: O.AttackObjective, X: np.ndarray) -> np.ndarray:
        seen.append(X.shape[0])
        return original(self, X)

    monkeypatch.setattr(O.AttackObjective, "_evaluate", counting)
    return seen


@pytest.mark.parametrize("method", ATTACK_METHODS)  # every black-box method
def test_attack_image_counts_every_query_and_stops_at_success(
    method: str, counted: list[int]
) -> None:
    out = E.attack_image(MODELS, IMAGE, 0, config(method), 0.5, image_id=7, num_classes=3)
    assert out.success and out.image == 7 and out.label == 0
    # Honest accounting: the engine's count is every point the black boxes saw; the
    # success checks (direct classifier calls) are not queries.
    assert out.final_queries == sum(counted)
    assert out.queries_to_success == out.final_queries  # stopped at the success round
    first = next(h for h in out.history if h["success"])
    assert (first["round"], first["queries"]) == (out.rounds_to_success, out.queries_to_success)
    assert not any(h["success"] for h in out.history[:-1])
    assert out.history[0] == {**out.history[0], "round": 0, "queries": 0, "success": False}
    check = O.attack_success(MODELS, IMAGE, 0, np.full(4, 0.5), 0.5, num_classes=3)
    assert out.history[0]["value"] == pytest.approx(check["margin"])
    assert 0 < out.linf <= 0.5 + 1e-6 and out.fooled_fraction > 0


def test_budget_is_a_hard_limit_and_late_successes_are_never_run(counted: list[int]) -> None:
    # lr 0.01 is too slow to succeed within 4 rounds; the budget ends the run first.
    slow = config("fedzo", lr=0.01)
    per_round = E.attack_image(
        MODELS, IMAGE, 0, slow.replace(rounds=1), 0.5, num_classes=3
    ).final_queries
    counted.clear()
    out = E.attack_image(MODELS, IMAGE, 0, slow, 0.5, budget=3 * per_round - 1, num_classes=3)
    # the third round could pass the budget: the run stops before it, every query counted
    assert out.rounds == 2 and out.final_queries == sum(counted) <= 3 * per_round - 1
    assert not out.success and out.queries_to_success is None
    # A success that would need more than the budget is never reached.
    fast = config("fedzo")
    free = E.attack_image(MODELS, IMAGE, 0, fast, 0.5, num_classes=3)
    assert free.success
    late = E.attack_image(
        MODELS, IMAGE, 0, fast, 0.5, budget=free.queries_to_success - 1, num_classes=3
    )
    assert not late.success and late.final_queries < free.queries_to_success
    assert not any(h["success"] for h in late.history)  # history.csv agrees with attack.csv
    assert late.predicted == late.final_predicted == 0  # the prediction recorded: not fooled


def test_continue_after_success_keeps_the_first_success() -> None:
    out = E.attack_image(
        MODELS, IMAGE, 0, config("fedzo", rounds=6), 0.5, stop_at_success=False, num_classes=3
    )
    assert out.rounds == 6 and out.success
    assert out.rounds_to_success is not None and out.rounds_to_success <= 6
    assert out.queries_to_success <= out.final_queries


def _check_at(x: np.ndarray, targeted: bool = False) -> dict:
    return O.attack_success(MODELS, IMAGE, 0, x, 0.5, targeted=targeted, num_classes=3)


def test_norms_and_fooled_fraction_are_those_of_the_first_success() -> None:
    # Run on after the first success: the later points move further from the image.
    out = E.attack_image(
        MODELS, IMAGE, 0, config("fedzo", rounds=6), 0.5, stop_at_success=False, num_classes=3
    )
    assert out.success and out.rounds_to_success < out.rounds
    assert out.point is not None and out.final_point is not None
    at, final = _check_at(out.point), _check_at(out.final_point)
    assert at["success"]  # the recorded point is the counted success ...
    first = out.history[out.rounds_to_success]
    assert first["success"] and first["queries"] == out.queries_to_success
    assert at["margin"] == pytest.approx(first["value"])  # ... of the first successful round
    assert (out.linf, out.l2, out.fooled_fraction, out.predicted) == pytest.approx(
        (at["linf"], at["l2"], at["fooled_fraction"], at["predicted"])
    )
    assert (out.final_linf, out.final_l2, out.final_fooled_fraction, out.final_predicted) == (
        pytest.approx((final["linf"], final["l2"], final["fooled_fraction"], final["predicted"]))
    )
    assert final["margin"] == pytest.approx(out.history[-1]["value"])
    assert out.linf < out.final_linf and out.l2 < out.final_l2  # a later, larger delta
    row = out.row()
    assert row["linf"] == out.linf and row["final_linf"] == out.final_linf


def test_a_success_past_the_budget_records_the_final_point(counted: list[int]) -> None:
    fast = config("fedzo")
    free = E.attack_image(MODELS, IMAGE, 0, fast, 0.5, num_classes=3)
    late = E.attack_image(
        MODELS, IMAGE, 0, fast, 0.5, budget=free.queries_to_success - 1, num_classes=3
    )
    assert not late.success and late.point is not None
    np.testing.assert_array_equal(late.point, late.final_point)
    assert late.linf == late.final_linf and late.predicted == late.final_predicted


def test_a_success_within_the_budget_is_measured_there_and_no_round_passes_it() -> None:
    slow = config("fedzo", rounds=6)
    free = E.attack_image(MODELS, IMAGE, 0, slow, 0.5, stop_at_success=False, num_classes=3)
    assert free.rounds_to_success is not None and free.rounds_to_success < free.rounds
    budget = free.history[free.rounds_to_success + 1]["queries"] - 1  # one round short
    out = E.attack_image(
        MODELS, IMAGE, 0, slow, 0.5, budget=budget, stop_at_success=False, num_classes=3
    )
    assert out.success and out.rounds == free.rounds_to_success and out.final_queries <= budget
    assert out.rounds_to_success == free.rounds_to_success
    assert out.linf == pytest.approx(_check_at(out.point)["linf"]) and out.linf == out.final_linf


def test_fo_is_refused() -> None:
    with pytest.raises(ConfigError, match="exact gradients"):
        E.attack_image(MODELS, IMAGE, 0, config("fo"), 0.5, num_classes=3)


def _outcome(q: int | None) -> E.ImageOutcome:
    return E.ImageOutcome(0, 0, q is not None, q, None, 0.0, 0.0, 0.0, q or 100, 1, 0.0, 0.0)


def test_success_statistics_by_hand() -> None:
    outs = [_outcome(q) for q in (100, 300, 200, None, 400)]
    assert S.success_rate_at(outs, 99) == 0.0
    assert S.success_rate_at(outs, 200) == pytest.approx(2 / 5)
    assert S.success_rate_at(outs, 10_000) == pytest.approx(4 / 5)
    assert S.queries_to_rate(outs, 0.4) == 200  # 2 of 5
    assert S.queries_to_rate(outs, 0.5) == 300  # ceil(2.5) = 3 of 5
    assert S.queries_to_rate(outs, 0.8) == 400
    assert S.queries_to_rate(outs, 0.9) is None  # 5 of 5 needed, one never fooled
    s = S.attack_method_summary(outs, budgets=(150, 1000))
    assert s["success_rate_at"] == {"150": 0.2, "1000": 0.8}
    assert s["median_queries_to_success"] == 250.0 and s["successes"] == 4
    xs, ys = S.success_curve(outs, 350)
    assert xs[-1] == 350 and ys[-1] == pytest.approx(3 / 5)


def test_run_attack_experiment_writes_the_files(tmp_path: Path) -> None:
    images = np.stack([IMAGE, IMAGE])
    summary = E.run_attack_experiment(
        MODELS,
        images,
        [0, 0],
        [3, 9],
        ["fzoos", "fedzo"],
        config("fzoos"),
        0.5,
        tmp_path,
        budget=5000,
        info={"dataset": "toy"},
        plot=False,
        num_classes=3,
    )
    assert set(summary["results"]) == {"fzoos", "fedzo"}
    assert summary["budgets"] == [5000]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["images"] == [3, 9] and on_disk["problem"] == {"dataset": "toy"}
    with open(tmp_path / "attack.csv") as fh:  # docs/design.md §6: all methods in --out
        every = list(csv.DictReader(fh))
    assert list(every[0])[:3] == ["method", "image", "label"]
    assert [(r["method"], r["image"]) for r in every] == [
        ("fzoos", "3"), ("fzoos", "9"), ("fedzo", "3"), ("fedzo", "9")
    ]
    for col in ("success", "queries_to_success", "linf"):
        assert col in every[0]
    with open(tmp_path / "history.csv") as fh:
        every_hist = list(csv.DictReader(fh))
    assert list(every_hist[0])[:4] == ["method", "image", "round", "queries"]
    for col in ("value", "bytes_up", "bytes_down", "wall_s"):
        assert col in every_hist[0]
    for method in ("fzoos", "fedzo"):
        with open(tmp_path / method / "attack.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["image"] for r in rows] == ["3", "9"]
        assert list(rows[0])[:4] == ["image", "label", "target", "success"]
        assert rows == [
            {k: v for k, v in r.items() if k != "method"} for r in every if r["method"] == method
        ]
        with open(tmp_path / method / "history.csv") as fh:
            hist = list(csv.DictReader(fh))
        assert hist == [
            {k: v for k, v in r.items() if k != "method"}
            for r in every_hist
            if r["method"] == method
        ]
        points = np.load(tmp_path / method / "points.npz")
        assert points["image"].tolist() == [3, 9] and points["x"].shape == (2, 4)
        for r, x in zip(rows, points["x"], strict=True):
            check = _check_at(x)
            assert r["success"] == str(int(check["success"]))
            assert float(r["linf"]) == pytest.approx(check["linf"])
        assert list(hist[0])[:5] == ["image", "round", "queries", "value", "success"]
        for r in rows:
            mine = [h for h in hist if h["image"] == r["image"]]
            assert mine[-1]["queries"] == r["final_queries"]
            if r["success"] == "1":
                first = next(h for h in mine if h["success"] == "1")
                assert first["queries"] == r["queries_to_success"]


def test_reporting_value_is_not_a_query() -> None:
    from fedzoo_attack.metric import metric_problem

    problem = metric_problem(3, 0.5, "f1", 0)
    before = [o.num_queries for o in problem.objectives]
    v = MR.reporting_value(problem, problem.x0)
    assert [o.num_queries for o in problem.objectives] == before
    direct = sum(w * o(problem.x0[None])[0] for w, o in zip(problem.weights, problem.objectives))
    assert v == pytest.approx(direct)


def test_metric_run_budget(tmp_path: Path) -> None:
    from fedzoo_attack.metric import metric_problem

    problem = metric_problem(3, 0.5, "f1", 0)
    cfg = RunConfig.from_mapping({"method": "fedzo", "rounds": 50, "local-steps": 2})
    out = MR.metric_run(problem, cfg, seed=0, budget=500)
    assert out.final_queries <= 500 and out.queries_at_budget == out.final_queries
    per_round = out.history[-1]["queries"] - out.history[-2]["queries"]
    assert out.final_queries + per_round > 500  # stopped before the round that could pass it
    assert out.value_at_budget == next(
        h["value"] for h in reversed(out.history) if h["queries"] <= 500
    )


def test_targeted_attack_reaches_the_target_class(counted: list[int]) -> None:
    # Target t = (0 + 1) mod 3 = 1, whose logit is 2 x_0: reached by raising the first
    # pixel and lowering the others.
    out = E.attack_image(MODELS, IMAGE, 0, config("fedzo"), 0.5, targeted=True, num_classes=3)
    assert out.success and out.final_queries == sum(counted)
    clean = O.attack_success(MODELS, IMAGE, 0, np.full(4, 0.5), 0.5, targeted=True, num_classes=3)
    assert not clean["success"] and out.history[0]["success"] is False
