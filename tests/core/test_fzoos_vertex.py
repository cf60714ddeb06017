"""fzoos-vertex: FZooS's corrected local steps as Square-Attack steps on the L∞ ball's
vertices (merge of the kept squares, moves only to evaluated, no-worse vertices, the
correction's direction, accounting, checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo import protocol
from fedzoo.config import RunConfig
from fedzoo.engine import run_federation
from fedzoo.methods import get_method
from fedzoo.methods.square import stripes
from fedzoo.methods.square_local import merge
from fedzoo.objectives import make_problem
from fedzoo.objectives.base import CallableObjective
from fedzoo.results import client_queries_of


def cfg(**extra) -> RunConfig:
    return RunConfig.from_mapping({"method": "fzoos-vertex", "rounds": 8, "local-steps": 4,
                                   "square-radius": 0.2, **extra})


def test_registered_with_its_options() -> None:
    m = get_method("fzoos-vertex")
    assert set(m.options) == {"gamma", "square-shape", "square-p-init", "square-iterations", "square-radius",
                              "value-floor"}
    assert not m.has_sync and m.step_control == "none"


def test_merge_takes_every_kept_change_and_votes_where_clients_disagree() -> None:
    lo, hi = np.zeros(5), np.ones(5)
    start = np.array([0.0, 0.0, 1.0, 1.0, 0.5])
    a = np.array([1.0, 0.0, 1.0, 1.0, 1.0])  # changes 0 and 4 (to hi)
    b = np.array([1.0, 0.0, 0.0, 1.0, 0.0])  # changes 0, 2 and 4 (to lo)
    c = start.copy()  # kept nothing
    out = merge(start, [a, b, c], [0.5, 0.3, 0.2], lo, hi)
    # 0: both changers agree; 2: only b changed it; 4: a (0.5) outweighs b (0.3); 1, 3 kept
    np.testing.assert_array_equal(out, [1.0, 0.0, 0.0, 1.0, 1.0])
    out = merge(start, [a, b, c], [0.2, 0.6, 0.2], lo, hi)
    assert out[4] == 0.0  # now b outweighs a
    onto = np.full(5, 0.25)  # a rejected start: the same changes set onto another point
    np.testing.assert_array_equal(merge(start, [a, b, c], [0.5, 0.3, 0.2], lo, hi, onto=onto),
                                  [1.0, 0.25, 0.0, 0.25, 1.0])
    np.testing.assert_array_equal(merge(start, [start, start], [0.5, 0.5], lo, hi), start)


def _one_client_round(gamma: float, global_weights: np.ndarray | None, steps: int = 12):
    """One train exchange of one client whose f(x) = sum(x) on a 4 x 4 image (seed 2)."""
    config = RunConfig.from_mapping({"method": "fzoos-vertex", "local-steps": steps, "gamma": gamma,
                                     "square-shape": "4x4", "square-p-init": 0.3, "seed": 2})
    calls = []

    def f(X):
        calls.append(len(X))
        return X.sum(axis=1)

    objective = CallableObjective(f, 16)
    server = protocol.server_init(config, np.full(16, 0.5))
    if global_weights is not None:
        server.square_weights = global_weights
    msg = protocol.train_message(config, server)
    state = protocol.new_client_state(config, 16)
    state, reply = protocol.client_train(config, objective, state, msg, client_id=0)
    return msg, reply, calls


def test_without_correction_a_client_keeps_only_squares_that_lower_its_own_value() -> None:
    msg, reply, calls = _one_client_round(0.0, None)
    start = msg["vertex-start"]
    np.testing.assert_array_equal(start, stripes(RunConfig.from_mapping({"square-shape": "4x4", "seed": 2}), 16))
    assert start.sum() == 12  # seed 2: three columns of ink, one without
    assert reply["x"].sum() < start.sum()  # some square was kept, each one lowered f
    assert set(np.unique(reply["x"])) <= {0.0, 1.0}  # still a vertex
    assert reply["vertex-value"] == start.sum()
    # accounting: f(x0), f(v_1) and the 12 local steps, all counted
    assert sum(calls) == reply["num-queries"] == 1 + 1 + 12


def test_the_correction_follows_the_global_surrogate_against_the_own_value() -> None:
    # the global surrogate says "more ink is far better" (every block weight very negative):
    # with gamma > 0 squares that raise f_i (sum of x) are kept, since the surrogates predict
    # that the rest of the federation gains more than this client loses
    config = RunConfig.from_mapping({"method": "fzoos-vertex", "square-shape": "4x4"})
    from fedzoo.methods.square_surrogate import num_features

    w = np.full(num_features(config, 16), -1e3)
    msg, with_corr, _ = _one_client_round(1.0, w)
    _, without, _ = _one_client_round(0.0, w)
    start = msg["vertex-start"]
    assert with_corr["x"].sum() > start.sum() > without["x"].sum()


def test_the_global_point_only_moves_to_evaluated_points_no_worse_than_before() -> None:
    p = make_problem("quadratic", dim=12, clients=3, heterogeneity=0.5, seed=0)
    run = run_federation(p, cfg(rounds=10), workers=1, final_evaluation=False)
    rows = run.history[:-1]  # the last row has no report (no final evaluation exchange)
    reported = [row["reported_value"] for row in rows]
    assert all(b <= a for a, b in zip(reported, reported[1:]))  # never a worse point
    assert reported[-1] < reported[0]
    # the value at each global point is the one the clients reported there (evaluated)
    assert [row["value"] for row in rows] == pytest.approx(reported)
    for row in run.history[1:]:
        counts = client_queries_of(row)
        # f_i(v_r) and T local steps; round 1 also f_i(x0); later f_i(x_{r-1}) is known
        # (and f_i(v_r) too when no square was kept, v_r = x_{r-1})
        assert set(counts.values()) <= ({4 + 2} if row["round"] == 1 else {4 + 1, 4})
    assert run.num_queries == sum(o.num_queries for o in p.objectives)


def test_checkpoint_and_resume_give_the_uninterrupted_history(tmp_path) -> None:
    def problem():
        return make_problem("quadratic", dim=12, clients=3, heterogeneity=2.0, seed=1)

    config = cfg(rounds=6)
    full = run_federation(problem(), config, workers=1)
    run_federation(problem(), config.replace(rounds=3), checkpoint_dir=tmp_path, workers=1)
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as z:
        assert len(z.files) > 0
    resumed = run_federation(problem(), config, checkpoint_dir=tmp_path, resume=True, workers=2)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert np.array_equal(resumed.x, full.x)


def test_the_server_merges_only_the_squares_the_global_surrogate_predicts_to_help() -> None:
    from fedzoo.protocol import Aggregate

    config = RunConfig.from_mapping({"method": "fzoos-vertex", "square-shape": "4x4"})
    method = get_method("fzoos-vertex")
    state = method.server_state.new(config, np.full(16, 0.5))
    start = np.zeros(16)
    state.vertex_start = start.copy()
    w = np.where(np.arange(16) < 8, 1.0, -1.0)  # ink helps in the lower half, hurts above
    helps, hurts = start.copy(), start.copy()
    helps[9], hurts[2] = 1.0, 1.0
    replies = {c: {"x": x, "vertex-value": 1.0, "value-start": 2.0, "square-weights": w}
               for c, x in ((0, helps), (1, hurts))}
    agg = Aggregate(replies=replies, weights={0: 0.5, 1: 0.5}, rejected={})
    new = state.next(1)
    new.x = method.server_step(config, state, agg)
    method.aggregate_train(config, new, agg)
    np.testing.assert_array_equal(new.x, start)  # v_1 reported better than x0: it is the global point
    np.testing.assert_array_equal(new.square_weights, w)
    np.testing.assert_array_equal(new.vertex_start, helps)  # client 1's square is screened out
    # v_r rejected: the screened squares go onto x_{r-1} instead
    for r in replies.values():
        r["vertex-value"] = 3.0
    new = state.next(1)
    new.x = method.server_step(config, state, agg)
    method.aggregate_train(config, new, agg)
    np.testing.assert_array_equal(new.x, state.x)
    expected = np.full(16, 0.5)
    expected[9] = 1.0
    np.testing.assert_array_equal(new.vertex_start, expected)


def test_value_floor_is_validated_and_canonical() -> None:
    from fedzoo.errors import ConfigError

    assert RunConfig().value_floor == "" and RunConfig().floor_value() is None
    for given, expected in (("0", 0.0), (0, 0.0), (-5, -5.0), (" -2.5 ", -2.5), ("", None)):
        config = RunConfig.from_mapping({"value-floor": given})
        assert config.floor_value() == expected
        assert RunConfig.from_mapping(config.to_dict()) == config  # survives the run-config round trip
    for bad in ("nan", "inf", "-inf", "abc", True, 1e400, [0]):
        with pytest.raises(ConfigError, match="value-floor.*finite number"):
            RunConfig.from_mapping({"value-floor": bad})


def test_with_a_value_floor_the_server_compares_floored_values() -> None:
    from fedzoo.protocol import Aggregate

    # client 0 is already far below the floor and gains even more at v_r; client 1 (the one
    # the floor leaves in play) loses: raw F says v_r is better, the floored one says worse
    replies = {0: {"vertex-value": -50.0, "value-start": -20.0}, 1: {"vertex-value": 3.0, "value-start": 2.0}}
    agg = Aggregate(replies=replies, weights={0: 0.5, 1: 0.5}, rejected={})
    assert agg.weighted("vertex-value") < agg.weighted("value-start")
    assert agg.weighted("vertex-value", 0.0) == pytest.approx(1.5)
    assert agg.weighted("value-start", 0.0) == pytest.approx(1.0)
    method = get_method("fzoos-vertex")
    for floor, moves in (("", True), ("0", False)):
        config = RunConfig.from_mapping({"method": "fzoos-vertex", "square-shape": "4x4", "value-floor": floor})
        state = method.server_state.new(config, np.full(16, 0.5))
        x = method.server_step(config, state, agg)
        assert np.array_equal(x, state.vertex_start) is moves
    # fedsquare: the best candidate by floored values (client 0's gain at candidate 0 is
    # worth nothing below the floor; client 1 prefers candidate 1)
    sq = get_method("fedsquare")
    replies = {0: {"square-values": np.array([-90.0, -30.0]), "value-start": -20.0},
               1: {"square-values": np.array([2.5, 1.0]), "value-start": 2.0}}
    agg = Aggregate(replies=replies, weights={0: 0.5, 1: 0.5}, rejected={})
    from fedzoo.methods.square import _candidates

    for floor, best in (("", 0), ("0", 1)):
        config = RunConfig.from_mapping({"method": "fedsquare", "square-shape": "4x4", "square-candidates": 2,
                                         "value-floor": floor})
        state = sq.server_state.new(config, np.full(16, 0.5))
        np.testing.assert_array_equal(sq.server_step(config, state, agg), _candidates(config, state)[best])


def test_with_a_value_floor_a_client_below_it_follows_only_the_global_surrogate() -> None:
    # f_i = sum(x) - 100 is below the floor 0 everywhere: without a correction no local step
    # changes the floored value, so none is kept; the surrogate fitted on floored values is flat
    config = RunConfig.from_mapping({"method": "fzoos-vertex", "local-steps": 12, "gamma": 0.0,
                                     "square-shape": "4x4", "square-p-init": 0.3, "seed": 2, "value-floor": 0})
    objective = CallableObjective(lambda X: X.sum(axis=1) - 100.0, 16)
    server = protocol.server_init(config, np.full(16, 0.5))
    msg = protocol.train_message(config, server)
    state = protocol.new_client_state(config, 16)
    state, reply = protocol.client_train(config, objective, state, msg, client_id=0)
    np.testing.assert_array_equal(reply["x"], msg["vertex-start"])
    assert reply["vertex-value"] == msg["vertex-start"].sum() - 100.0  # reported raw
    np.testing.assert_allclose(reply["square-weights"], 0.0, atol=1e-9)
    # without the floor the same client keeps squares that lower its (raw) value
    _, raw = protocol.client_train(config.replace(value_floor=""), objective,
                                   protocol.new_client_state(config, 16), msg, client_id=0)
    assert raw["x"].sum() < msg["vertex-start"].sum()
