"""Server-side step control (fedzoo.step_control): the incumbent and the lr scale come
from reported values only; the point a run returns is the best reported one and the last
history row is F there; no extra exchange, every query counted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedzoo import protocol, step_control
from fedzoo.config import RunConfig
from fedzoo.engine import run_federation
from fedzoo.objectives import CountingObjective, make_problem
from tests.settings import SMALL_RUN


def test_judge_keeps_the_best_rejects_worse_and_scales_the_lr():
    cfg = RunConfig.from_mapping({"method": "fedzo", "step-control": "incumbent", "step-shrink": 0.5})
    st = protocol.server_init(cfg, np.full(3, 0.5))
    assert step_control.judge(cfg, st, st.x, 2.0) and st.best_value == 2.0 and st.lr_scale == 1.0
    worse = np.full(3, 0.4)
    assert not step_control.judge(cfg, st, worse, 3.0)
    assert st.lr_scale == 0.5 and np.array_equal(st.best_x, np.full(3, 0.5))
    assert step_control.judge(cfg, st, np.full(3, 0.5), 2.0) and st.lr_scale == 0.5  # incumbent again
    assert step_control.judge(cfg, st, np.full(3, 0.6), 1.0) and st.best_value == 1.0
    back = protocol.ServerState.from_arrays(st.to_arrays(), cfg)
    assert back.best_value == 1.0 and back.lr_scale == 0.5 and np.array_equal(back.best_x, st.best_x)


def test_auto_is_the_methods_choice_and_none_turns_it_off():
    assert step_control.active(RunConfig.from_mapping({"method": "fzoos"}))
    assert not step_control.active(RunConfig.from_mapping({"method": "fzoos-paper"}))
    assert not step_control.active(RunConfig.from_mapping({"method": "fedzo"}))
    assert step_control.active(RunConfig.from_mapping({"method": "fedzo", "step-control": "incumbent"}))
    assert not step_control.active(RunConfig.from_mapping({"method": "fzoos", "step-control": "none"}))


def test_partial_replies_are_never_compared():
    assert step_control.complete({0: 1, 1: 1}, {0: 0.5, 1: 0.5})
    assert not step_control.complete({0: 1}, {0: 0.5, 1: 0.5})


@pytest.mark.parametrize("method", ["fzoos", "fedzo", "scaffold1"])
def test_the_returned_point_is_the_best_reported_and_the_last_row_is_f_there(method):
    p = make_problem("quadratic", dim=8, clients=3, heterogeneity=1.0, seed=2)
    p.objectives = [CountingObjective(o) for o in p.objectives]
    counted = p
    cfg = RunConfig.from_mapping({**SMALL_RUN, "method": method, "rounds": 8, "lr": 0.2,
                                  "step-control": "incumbent"})
    res = run_federation(counted, cfg, workers=1)
    last = res.history[-1]
    assert last["value"] == pytest.approx(p.global_value(res.x), rel=1e-12)
    assert last["reported_value"] == pytest.approx(p.global_value(res.x), rel=1e-9)
    reported = [r["reported_value"] for r in res.history if not math.isnan(r["reported_value"])]
    assert last["reported_value"] == pytest.approx(min(reported), rel=1e-12)  # the best reported
    assert res.num_queries == sum(o.points_seen for o in counted.objectives)  # all counted


def test_a_large_lr_is_tamed_where_the_paper_rule_drifts():
    p = make_problem("quadratic", dim=10, clients=3, heterogeneity=0.5, seed=0)
    base = {**SMALL_RUN, "method": "fedzo", "rounds": 12, "lr": 0.3, "step-start": 1}
    plain = run_federation(p, RunConfig.from_mapping({**base, "step-control": "none"}), workers=1)
    ctrl = run_federation(p, RunConfig.from_mapping({**base, "step-control": "incumbent"}), workers=1)
    values = [r["value"] for r in ctrl.history]
    assert values[-1] == min(values)  # the run returns the best point it was told about
    assert values[-1] < 0.5 * min(r["value"] for r in plain.history)  # lr halving lets it converge
    # a rejected step costs one round: the point goes back to the incumbent at once
    back = [i for i in range(2, len(values)) if values[i] == values[i - 2] and values[i - 1] > values[i]]
    assert back


def test_step_start_scales_the_first_rounds_and_every_rejection_halves_it():
    cfg = RunConfig.from_mapping({"method": "fedzo", "step-control": "incumbent", "step-start": 8,
                                  "step-grow": 2.0})
    st = protocol.server_init(cfg, np.full(3, 0.5))
    assert protocol.train_message(cfg, st)["lr-scale"] == 8.0
    assert step_control.judge(cfg, st, st.x, 2.0)
    assert protocol.train_message(cfg, st)["lr-scale"] == 8.0  # growth is capped at the start
    assert not step_control.judge(cfg, st, np.full(3, 0.4), 3.0)
    assert not step_control.judge(cfg, st, np.full(3, 0.3), 2.5)
    assert protocol.train_message(cfg, st)["lr-scale"] == 2.0
    assert step_control.judge(cfg, st, np.full(3, 0.6), 1.0)
    assert protocol.train_message(cfg, st)["lr-scale"] == 4.0
    # without step control the option changes nothing: no lr-scale is sent
    off = cfg.replace(step_control="none")
    assert "lr-scale" not in protocol.train_message(off, protocol.server_init(off, np.full(3, 0.5)))


def test_step_start_is_the_same_as_a_larger_lr_with_step_control():
    p = make_problem("quadratic", dim=10, clients=3, heterogeneity=0.5, seed=1)
    base = {**SMALL_RUN, "method": "fedzo", "rounds": 6, "step-control": "incumbent"}
    wide = run_federation(p, RunConfig.from_mapping({**base, "lr": 0.01, "step-start": 10}), workers=1)
    plain = run_federation(p, RunConfig.from_mapping({**base, "lr": 0.1, "step-start": 1}), workers=1)
    small = run_federation(p, RunConfig.from_mapping({**base, "lr": 0.01, "step-start": 1}), workers=1)
    np.testing.assert_array_equal(wide.x, plain.x)
    assert not np.array_equal(wide.x, small.x)
    with pytest.raises(Exception, match="step-start"):
        RunConfig.from_mapping({"step-start": 0})
