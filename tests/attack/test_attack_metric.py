"""Macro metrics against scikit-learn and the metric-optimisation problem."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo.errors import ConfigError, ShapeError, UnknownNameError
from fedzoo_attack import metric as MT

sk = pytest.importorskip("sklearn.metrics")

SKLEARN = {
    "precision": sk.precision_score,
    "recall": sk.recall_score,
    "f1": sk.f1_score,
    "jaccard": sk.jaccard_score,
}


@pytest.mark.parametrize("metric", MT.METRICS)
@pytest.mark.parametrize("seed", range(6))
def test_macro_metric_matches_sklearn(metric: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 60))
    y_true = rng.integers(0, int(rng.integers(1, 7)), size=m)
    y_pred = rng.integers(0, int(rng.integers(1, 9)), size=m)  # may predict absent classes
    expected = SKLEARN[metric](y_true, y_pred, average="macro", zero_division=0)
    assert MT.macro_metric(y_true, y_pred, metric) == pytest.approx(expected, abs=1e-12)
    labels = np.arange(8)
    expected = SKLEARN[metric](y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert MT.macro_metric(y_true, y_pred, metric, labels) == pytest.approx(expected, abs=1e-12)


def test_macro_metric_batched_equals_rowwise() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, size=40)
    preds = rng.integers(0, 7, size=(9, 40))
    preds[0] = y_true  # a perfect row
    for metric in MT.METRICS:
        batched = MT.macro_metric(y_true, preds, metric)
        assert batched.shape == (9,)
        rowwise = [MT.macro_metric(y_true, p, metric) for p in preds]
        np.testing.assert_allclose(batched, rowwise)
        assert batched[0] == 1.0


def test_macro_metric_errors() -> None:
    with pytest.raises(UnknownNameError):
        MT.macro_metric([0], [0], "accuracy")
    with pytest.raises(ShapeError):
        MT.macro_metric([0, 1], [0], "f1")
    with pytest.raises(ShapeError):
        MT.macro_metric([], [], "f1")
    assert MT.macro_scores([0, 1, 1], [0, 1, 0]) == {
        m: pytest.approx(SKLEARN[m]([0, 1, 1], [0, 1, 0], average="macro", zero_division=0))
        for m in MT.METRICS
    }


@pytest.fixture(scope="module")
def problem():  # noqa: ANN201
    return MT.metric_problem(num_clients=5, portion=0.4, metric="f1", seed=0)


def test_metric_problem_structure(problem) -> None:  # noqa: ANN001
    assert problem.dim == 32 * 10 + 10 == 330
    assert problem.num_clients == 5
    np.testing.assert_allclose(problem.x0, 0.5)
    assert all(len(c) == 4 for c in problem.info["client_classes"])
    assert sum(problem.info["num_samples"]) == 898  # the held-out half, each sample once
    values = [obj(problem.x0)[0] for obj in problem.objectives]
    assert all(0.0 <= v <= 1.0 for v in values)


def test_metric_objective_matches_sklearn_at_x0_and_perturbs_last_layer(problem) -> None:  # noqa: ANN001
    obj = problem.objectives[2]
    mlp = obj.mlp
    X_client = obj._features  # hidden features of the client's samples
    pred0 = (X_client @ mlp.W2 + mlp.b2).argmax(axis=1)
    expected = 1.0 - sk.f1_score(obj.labels, pred0, average="macro", zero_division=0)
    assert obj(problem.x0)[0] == pytest.approx(expected)
    # x = 1 adds +0.2 to every last-layer parameter: biases shift equally (argmax
    # unchanged by the bias part) -- compare with an explicit computation.
    x = np.random.default_rng(0).uniform(size=330)
    theta = mlp.last_layer() + 0.2 * (2 * x - 1)
    W = theta[:320].reshape(32, 10)
    b = theta[320:]
    pred = (X_client @ W + b).argmax(axis=1)
    expected = 1.0 - sk.f1_score(obj.labels, pred, average="macro", zero_division=0)
    assert obj(x)[0] == pytest.approx(expected)


def test_metric_problem_options_and_errors() -> None:
    p = MT.metric_problem(10, 0.5, "jaccard", 1, hidden=8, average_over="client")
    assert p.dim == 90
    assert p.objectives[0].labels_set is not None
    with pytest.raises(UnknownNameError):
        MT.metric_problem(metric="auc")
    with pytest.raises(ConfigError):
        MT.metric_problem(portion=0.0)
    with pytest.raises(ConfigError):
        MT.metric_problem(average_over="all")  # type: ignore[arg-type]
