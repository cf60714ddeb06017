r"""Non-differentiable metric optimisation on scikit-learn's digits (docs/design.md §7).

A one-hidden-layer MLP (64 -> h ReLU -> 10) is trained on one half of scikit-learn's
bundled digits; the other, held-out half is split among N clients by the class-portion
rule (:func:`fedzoo_attack.data.class_portion_split`). A point x in ``[0, 1]^p`` perturbs
the p = 10 h + 10 last-layer parameters (weights, then biases)

.. math::  \theta = \theta_0 + r (2x - 1), \qquad r = 0.2 \text{ by default},

and client i's black box is :math:`f_i(x) = 1 - M(y_i, \hat y_i(\theta))`, with M a macro
precision, recall, F1 or Jaccard score of the predictions on client i's held-out samples.
These metrics are piecewise constant in θ, so no useful gradient exists.

Like the paper's set-up, the MLP is deliberately under-trained (L-BFGS, 10 iterations:
held-out macro F1 about 0.84), leaving room for the search to improve the metric.

The macro metrics are implemented here in numpy (batched over many prediction vectors)
and agree with ``sklearn.metrics`` (``average="macro"``, ``zero_division=0``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fedzoo.errors import ConfigError, ShapeError, UnknownNameError
from fedzoo.objectives.base import Objective
from fedzoo.objectives.problems import FederatedProblem
from fedzoo_attack.data import class_portion_split, client_classes, load_digits_dataset

logger = logging.getLogger(__name__)

METRICS = ("precision", "recall", "f1", "jaccard")


# --------------------------------------------------------------------------------------
# Macro metrics
# --------------------------------------------------------------------------------------
def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise UnknownNameError(f"Unknown metric {metric!r}; expected one of {list(METRICS)}.")
    return metric


def macro_metric(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    metric: str = "f1",
    labels: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray | float:
    r"""Macro-averaged precision, recall, F1 or Jaccard score, for one or many predictions.

    Per class c with tp_c true positives, p_c predictions of c and t_c true members of c:
    precision tp/p, recall tp/t, F1 2 tp/(p + t), Jaccard tp/(p + t - tp); a 0/0 counts
    as 0 (scikit-learn's ``zero_division=0``). The macro score is the unweighted mean over
    ``labels`` or, by default, over the classes present in ``y_true`` or in that row's
    predictions (scikit-learn's default label set).

    Args:
        y_true: m true labels (non-negative integers).
        y_pred: m predicted labels, or an n x m array of n prediction vectors.
        metric: ``precision``, ``recall``, ``f1`` or ``jaccard``.
        labels: a fixed set of classes to average over (absent ones score 0).

    Returns:
        A float for 1-d ``y_pred``, else n float64 scores.
    """
    _check_metric(metric)
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    single = yp.ndim == 1
    yp = np.atleast_2d(yp)
    if yt.ndim != 1 or yp.ndim != 2 or yp.shape[1] != yt.shape[0]:
        raise ShapeError(
            f"Expected y_true of length m and y_pred of shape (m,) or (n, m); got "
            f"{yt.shape} and {np.asarray(y_pred).shape}."
        )
    if yt.size == 0:
        raise ShapeError("Cannot score an empty set of labels.")
    if yt.min() < 0 or yp.min() < 0:
        raise ConfigError("Labels must be non-negative integers.")
    lab = None if labels is None else np.unique(np.asarray(labels, dtype=np.int64))
    C = int(max(yt.max(), yp.max(), -1 if lab is None else lab.max())) + 1
    n = yp.shape[0]
    rows = np.arange(n)[:, None] * C
    pred_count = np.bincount((yp + rows).ravel(), minlength=n * C).reshape(n, C)
    hit = yp == yt[None, :]
    tp = np.bincount((yp + rows)[hit], minlength=n * C).reshape(n, C)
    true_count = np.bincount(yt, minlength=C)[None, :].astype(np.int64)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(num.shape, np.float64), where=den > 0)

    if metric == "precision":
        per_class = ratio(tp, pred_count)
    elif metric == "recall":
        per_class = ratio(tp, np.broadcast_to(true_count, tp.shape))
    elif metric == "f1":
        per_class = ratio(2.0 * tp, pred_count + true_count)
    else:
        per_class = ratio(tp.astype(np.float64), pred_count + true_count - tp)
    if lab is None:
        mask = (pred_count > 0) | (true_count > 0)
    else:
        mask = np.zeros((n, C), dtype=bool)
        mask[:, lab] = True
    scores = (per_class * mask).sum(axis=1) / mask.sum(axis=1)
    return float(scores[0]) if single else scores


def macro_scores(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None,
) -> dict[str, float]:
    """All four macro metrics of one prediction vector (see :func:`macro_metric`)."""
    return {m: float(macro_metric(y_true, y_pred, m, labels)) for m in METRICS}


# --------------------------------------------------------------------------------------
# The MLP
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitsMLP:
    """A trained 64 -> h (ReLU) -> C network as plain arrays.

    Attributes:
        W1: d_in x h, b1: h, W2: h x C, b2: C (float64).
    """

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray

    @property
    def hidden(self) -> int:
        return int(self.W2.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.W2.shape[1])

    @property
    def num_last_layer_params(self) -> int:
        """p = h C + C, the dimension of the metric problem."""
        return int(self.W2.size + self.b2.size)

    def last_layer(self) -> np.ndarray:
        """theta_0: W2 flattened row-major (h x C), then b2 (length p)."""
        return np.concatenate([self.W2.ravel(), self.b2])

    def features(self, X: np.ndarray) -> np.ndarray:
        """Hidden activations relu(X W1 + b1), m x h, for flattened inputs X (m x d_in)."""
        return np.maximum(np.asarray(X, np.float64) @ self.W1 + self.b1, 0.0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted classes for flattened inputs X (m x d_in)."""
        return (self.features(X) @ self.W2 + self.b2).argmax(axis=1)


def train_digits_mlp(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    hidden: int = 32,
    seed: int = 0,
    max_iter: int = 10,
    solver: str = "lbfgs",
) -> DigitsMLP:
    """Train the MLP with scikit-learn's ``MLPClassifier`` and return its arrays.

    Stopping early (the default ``max_iter = 10``) is intended, so scikit-learn's
    ``ConvergenceWarning`` is silenced for this call only (and logged at DEBUG).

    Args:
        images: m x 8 x 8 (or m x 64) inputs in [0, 1].
        labels: m labels covering every class.
        hidden: h, the hidden width.
        seed: ``random_state`` of the initialisation.
        max_iter: optimiser iterations.
        solver: ``lbfgs`` or ``adam``.
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "The metric problem needs scikit-learn: `pip install scikit-learn`."
        ) from err
    if int(hidden) != hidden or hidden < 1:
        raise ConfigError(f"hidden must be a positive integer, got {hidden!r}.")
    X = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    y = np.asarray(labels, dtype=np.int64)
    clf = MLPClassifier(
        hidden_layer_sizes=(int(hidden),),
        activation="relu",
        solver=solver,
        alpha=1e-4,
        max_iter=int(max_iter),
        random_state=int(seed),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X, y)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            logger.debug("MLP stopped after %d iterations by design: %s", clf.n_iter_, w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if list(clf.classes_) != list(range(len(clf.classes_))):
        raise ConfigError(
            f"Training labels must be 0..C-1 with every class present, got {clf.classes_}."
        )
    return DigitsMLP(
        np.asarray(clf.coefs_[0], np.float64),
        np.asarray(clf.intercepts_[0], np.float64),
        np.asarray(clf.coefs_[1], np.float64),
        np.asarray(clf.intercepts_[1], np.float64),
    )


# --------------------------------------------------------------------------------------
# The client objective and the problem
# --------------------------------------------------------------------------------------
class MetricObjective(Objective):
    """Client i's f_i(x) = 1 - macro metric of the MLP with perturbed last layer.

    Args:
        mlp: the trained network.
        images: the client's samples (m x 8 x 8 or m x 64).
        labels: their labels (length m).
        metric: ``precision``, ``recall``, ``f1`` or ``jaccard``.
        radius: r > 0; theta = theta_0 + r (2x - 1).
        labels_set: classes the macro average runs over (default: present classes,
            as scikit-learn does).
        budget: optional query budget.
        name: a label.

    Query cost: one per point; a batch of n points costs one n x m x C product.
    """

    def __init__(
        self,
        mlp: DigitsMLP,
        images: np.ndarray,
        labels: np.ndarray,
        metric: str = "f1",
        *,
        radius: float = 0.2,
        labels_set: Sequence[int] | None = None,
        budget: int | None = None,
        name: str = "",
    ) -> None:
        super().__init__(mlp.num_last_layer_params, budget=budget, name=name or f"metric-{metric}")
        self.metric = _check_metric(metric)
        if not (np.isfinite(radius) and radius > 0):
            raise ConfigError(f"radius must be a positive number, got {radius!r}.")
        X = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        self.labels = np.asarray(labels, dtype=np.int64)
        if X.shape[0] != self.labels.shape[0] or X.shape[0] == 0:
            raise ShapeError(
                f"Expected m >= 1 samples with m labels, got {X.shape[0]} and {self.labels.shape[0]}."
            )
        self.mlp = mlp
        self.radius = float(radius)
        self.labels_set = labels_set
        self.theta0 = mlp.last_layer()
        self._features = mlp.features(X)  # fixed: only the last layer moves

    def parameters(self, X: np.ndarray) -> np.ndarray:
        """Last-layer parameters theta (n x p) encoded by the rows of X."""
        return self.theta0 + self.radius * (2.0 * np.asarray(X, np.float64) - 1.0)

    def predictions(self, X: np.ndarray) -> np.ndarray:
        """Predicted classes (n x m) under the parameters encoded by X (not a query)."""
        h, c = self.mlp.hidden, self.mlp.num_classes
        theta = self.parameters(X)
        out = []
        for s in range(0, theta.shape[0], 256):
            chunk = theta[s : s + 256]
            W = chunk[:, : h * c].reshape(-1, h, c)
            b = chunk[:, h * c :]
            logits = np.einsum("mh,nhc->nmc", self._features, W) + b[:, None, :]
            out.append(logits.argmax(axis=2))
        return np.concatenate(out)

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        scores = macro_metric(self.labels, self.predictions(X), self.metric, self.labels_set)
        return 1.0 - np.asarray(scores, dtype=np.float64)


def metric_problem(
    num_clients: int = 5,
    portion: float = 0.5,
    metric: str = "f1",
    seed: int = 0,
    *,
    hidden: int = 32,
    radius: float = 0.2,
    max_iter: int = 10,
    average_over: Literal["present", "client"] = "present",
    budget: int | None = None,
) -> FederatedProblem:
    """The federated metric optimisation problem on scikit-learn's digits.

    The digits are split (fixed, stratified, 50/50) into a training half, on which the
    MLP is trained (initialisation seeded by ``seed``), and a held-out half, divided
    among the clients by the class-portion rule (shuffles seeded by ``seed``). Client i
    scores the MLP on its held-out samples. Weights are uniform and x0 = 0.5 (the trained
    parameters).

    Args:
        num_clients: N.
        portion: P; each client holds int(10 P) classes.
        metric: ``precision``, ``recall``, ``f1`` or ``jaccard``.
        seed: seed of the MLP and of the client split.
        hidden: h; the problem's dimension is p = 10 h + 10 (330 for h = 32).
        radius: r, the perturbation range of each parameter.
        max_iter: MLP training iterations (L-BFGS).
        average_over: classes of the macro average: ``"present"`` (scikit-learn's
            default and the paper's code: the client's classes plus any class the model
            predicts, so stray predictions of foreign classes cost a whole zero-score
            class each) or ``"client"`` (the client's own classes only).
        budget: optional per-client query budget.

    Returns:
        A :class:`FederatedProblem`; ``info`` records the configuration, each client's
        classes and sample count.
    """
    _check_metric(metric)
    if average_over not in ("present", "client"):
        raise ConfigError(f"average_over must be 'present' or 'client', got {average_over!r}.")
    data = load_digits_dataset(test_fraction=0.5, split_seed=0)
    mlp = train_digits_mlp(data.x_train, data.y_train, hidden=hidden, seed=seed, max_iter=max_iter)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4243]))
    parts = class_portion_split(data.y_test, num_clients, portion, rng)
    classes = client_classes(num_clients, portion)
    objectives: list[Objective] = [
        MetricObjective(
            mlp,
            data.x_test[idx],
            data.y_test[idx],
            metric,
            radius=radius,
            labels_set=classes[i] if average_over == "client" else None,
            budget=budget,
            name=f"metric-{metric}-client{i}",
        )
        for i, idx in enumerate(parts)
    ]
    info: dict[str, Any] = {
        "metric": metric,
        "num_clients": int(num_clients),
        "portion": float(portion),
        "seed": int(seed),
        "hidden": int(hidden),
        "radius": float(radius),
        "max_iter": int(max_iter),
        "average_over": average_over,
        "client_classes": [[int(c) for c in cl] for cl in classes],
        "num_samples": [int(idx.size) for idx in parts],
    }
    return FederatedProblem(
        objectives,
        np.full(len(objectives), 1.0 / len(objectives)),
        np.full(mlp.num_last_layer_params, 0.5),
        name=f"metric-{metric}",
        info=info,
    )
