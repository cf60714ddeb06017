"""fedsquare: the Square Attack as a federated method (schedule, stripes, squares,
greedy acceptance on reported values, accounting, shapes)."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo.config import RunConfig
from fedzoo.engine import run_federation
from fedzoo.errors import ConfigError
from fedzoo.methods import get_method
from fedzoo.methods.square import candidates, image_shape, p_selection, stripes
from fedzoo.objectives import make_problem
from fedzoo.results import client_queries_of


def cfg(**extra) -> RunConfig:
    return RunConfig.from_mapping({"method": "fedsquare", "rounds": 12, **extra})


def test_registered_with_its_options() -> None:
    m = get_method("fedsquare")
    assert set(m.options) == {"square-candidates", "square-shape", "square-p-init", "square-iterations",
                              "square-radius", "value-floor"}
    assert not m.has_sync


def test_schedule_is_the_reference_p_selection_rescaled() -> None:
    n = 1000  # iteration i maps to 10 i
    assert p_selection(0.8, 0, n) == 0.8 and p_selection(0.8, 1, n) == 0.8  # <= 10
    assert p_selection(0.8, 2, n) == 0.4 and p_selection(0.8, 5, n) == 0.4  # (10, 50]
    assert p_selection(0.8, 6, n) == 0.2 and p_selection(0.8, 20, n) == 0.2  # (50, 200]
    assert p_selection(0.8, 50, n) == pytest.approx(0.8 / 8)
    assert p_selection(0.8, 999, n) == pytest.approx(0.8 / 512)
    assert p_selection(0.8, 2 * n, n) == 0.8  # past the end, as the reference


def test_shapes() -> None:
    assert image_shape(cfg(), 12) == (1, 12, 1)
    assert image_shape(cfg(**{"square-shape": "3x4"}), 12) == (3, 4, 1)
    assert image_shape(cfg(**{"square-shape": "2x2x3"}), 12) == (2, 2, 3)
    with pytest.raises(ConfigError, match="square-shape"):
        image_shape(cfg(**{"square-shape": "28x28"}), 12)
    p = make_problem("quadratic", dim=12, clients=2, seed=0)
    with pytest.raises(ConfigError, match="square-shape"):
        run_federation(p, cfg(**{"square-shape": "5x5"}), workers=1)


def test_stripes_and_squares_are_vertices() -> None:
    config = cfg(**{"square-shape": "6x5x2", "square-candidates": 4, "square-p-init": 0.3})
    x = stripes(config, 60)
    img = x.reshape(6, 5, 2)
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert np.all(img == img[:1])  # constant down each column: vertical stripes
    first = candidates(config, np.full(60, 0.5), 1, started=False)
    np.testing.assert_array_equal(first[0], x)  # round 1: the stripes and squares of them
    C = candidates(config, x, 2)
    assert C.shape == (4, 60) and set(np.unique(C)) <= {0.0, 1.0}
    np.testing.assert_array_equal(C, candidates(config, x, 2))  # a pure function of the state
    for c in C:
        diff = np.any(c.reshape(6, 5, 2) != img, axis=2)
        assert diff.any()  # every square changes the incumbent ...
        rows, cols = np.nonzero(diff)
        assert rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4  # ... inside one square


def test_greedy_progress_and_accounting() -> None:
    p = make_problem("quadratic", dim=10, clients=3, heterogeneity=0.5, seed=0)
    lam = 3
    run = run_federation(p, cfg(**{"square-candidates": lam}), workers=1, final_evaluation=False)
    values = [row["value"] for row in run.history[1:]]  # from round 1 (the stripes' round)
    assert all(b <= a for a, b in zip(values, values[1:]))  # greedy: F never increases
    assert values[-1] < values[0]
    for row in run.history[1:]:
        counts = client_queries_of(row)
        # round 1: the stripes and the candidates; later the value at x_{r-1} is known
        assert set(counts.values()) == {lam + 1 if row["round"] == 1 else lam}
    assert run.num_queries == sum(o.num_queries for o in p.objectives)


def test_partial_participation_and_repeatability() -> None:
    p = make_problem("quadratic", dim=10, clients=4, heterogeneity=2.0, seed=1)
    c = cfg(fraction=0.5, **{"square-candidates": 2})
    a = run_federation(p, c, workers=1)
    b = run_federation(make_problem("quadratic", dim=10, clients=4, heterogeneity=2.0, seed=1), c, workers=2)
    assert [r["value"] for r in a.history] == [r["value"] for r in b.history]
    assert [r["queries"] for r in a.history] == [r["queries"] for r in b.history]


def test_fzoos_square_surrogates() -> None:
    from fedzoo.methods.square_surrogate import block_matrix, fit_weights

    config = cfg(**{"square-shape": "14x14"})
    B = block_matrix(config, 196)
    assert B.shape == (196, 49) and np.allclose(B.sum(axis=0), 1.0)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(300, 196)).astype(float)
    w = rng.standard_normal(49)
    w_hat = fit_weights(X @ B, 3.0 + X @ B @ w)
    assert np.corrcoef(w, w_hat)[0, 1] > 0.95  # a linear margin is recovered
    p = make_problem("quadratic", dim=10, clients=3, heterogeneity=0.5, seed=0)
    run = run_federation(p, RunConfig.from_mapping({"method": "fzoos-square", "rounds": 10,
                                                     "square-candidates": 2}), workers=1)
    values = [row["value"] for row in run.history]
    assert all(b <= a for a, b in zip(values, values[1:-1])) and run.num_queries == sum(
        o.num_queries for o in p.objectives)


def test_fzoos_square_fits_its_surrogate_on_floored_values() -> None:
    from fedzoo import protocol
    from fedzoo.objectives.base import CallableObjective

    # f = sum(x) - 200 lies below the floor 0 everywhere: the floored values are all 0, so
    # the uploaded surrogate is flat; without the floor it tracks sum(x) (positive weights)
    objective = CallableObjective(lambda X: X.sum(axis=1) - 200.0, 64)
    weights = {}
    for floor in ("", "0"):
        config = RunConfig.from_mapping({"method": "fzoos-square", "square-shape": "8x8", "square-candidates": 5,
                                         "square-p-init": 0.3, "seed": 1, "value-floor": floor})
        server = protocol.server_init(config, np.full(64, 0.5))
        msg = protocol.train_message(config, server)
        _, reply = protocol.client_train(config, objective, protocol.new_client_state(config, 64), msg,
                                         client_id=0)
        assert np.all(reply["square-values"] < -100.0)  # the replies stay raw
        weights[floor] = np.asarray(reply["square-weights"])
    np.testing.assert_allclose(weights["0"], 0.0, atol=1e-9)
    assert np.abs(weights[""]).max() > 1e-3 and weights[""].sum() > 0
