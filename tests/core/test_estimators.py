"""Finite-difference gradient estimators checked against math: RGF's d/Q scaling and
unbiasedness, orthonormal directions, base-value reuse, coordinate differences at the box."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo import protocol
from fedzoo.config import RunConfig
from fedzoo.estimators import coordinate_gradient, orthonormal_directions, rgf_gradient
from fedzoo.objectives import CallableObjective


class Recorder:
    """f(X) = X a + c (or a quadratic), recording every batch it is given."""

    def __init__(self, a, c=0.3, H=None):
        self.a, self.c, self.H = np.asarray(a, dtype=float), c, H
        self.batches = []

    def __call__(self, X):
        X = np.atleast_2d(X)
        self.batches.append(X.copy())
        y = X @ self.a + self.c
        if self.H is not None:
            y = y + 0.5 * np.einsum("ij,jk,ik->i", X, self.H, X)
        return y

    def grad(self, x):
        return self.a + (self.H @ x if self.H is not None else 0.0)

    @property
    def points(self):
        return sum(len(b) for b in self.batches)


@pytest.mark.parametrize(("dim", "num"), [(12, 5), (12, 12), (4, 9)])
def test_rgf_directions_are_orthonormal_and_at_most_d(dim, num):
    U = orthonormal_directions(np.random.default_rng(0), dim, num)
    assert U.shape == (min(dim, num), dim)
    np.testing.assert_allclose(U @ U.T, np.eye(min(dim, num)), atol=1e-12)


def test_rgf_with_q_equal_d_is_exact_on_a_linear_function():
    # U orthogonal: (d/Q) U^T U a = a, whatever the draw
    a = np.random.default_rng(1).standard_normal(8)
    f = Recorder(a)
    x = np.full(8, 0.4)
    g = rgf_gradient(f, x, float(f(x)[0]), np.random.default_rng(2), 8, 0.01)
    np.testing.assert_allclose(g, a, rtol=1e-9, atol=1e-9)


def test_rgf_mean_approaches_the_gradient_with_the_d_over_q_scaling():
    """E[(d/Q) U^T U] = I for Q orthonormal uniformly random directions, so the mean of
    many estimates on a linear function is its gradient; without d/Q it would be (Q/d) a."""
    d, Q, n = 10, 3, 4000
    a = np.linspace(-1.0, 2.0, d)
    f = Recorder(a)
    x = np.full(d, 0.5)
    fx = float(f(x)[0])
    rng = np.random.default_rng(3)
    G = np.stack([rgf_gradient(f, x, fx, rng, Q, 0.01) for _ in range(n)])
    mean, sem = G.mean(0), G.std(0) / np.sqrt(n)
    assert np.all(np.abs(mean - a) <= 5 * sem)
    # the projection on a has mean |a|^2 (scale 1), far from Q/d = 0.3
    assert (G @ a).mean() / (a @ a) == pytest.approx(1.0, abs=0.05)
    # each single estimate is (d/Q) U^T U a: its component along a is (d/Q)|U a|^2
    assert np.all(G @ a >= 0)


def test_rgf_on_a_quadratic_is_unbiased_up_to_the_forward_difference_bias():
    """Forward differences add mu/2 u^T H u per direction: the mean estimate is
    grad f + (d/Q) E[sum_j (mu/2)(u_j^T H u_j) u_j] = grad f + O(mu)."""
    d, Q, n, mu = 6, 2, 4000, 1e-3
    rng = np.random.default_rng(4)
    B = rng.standard_normal((d, d))
    f = Recorder(rng.standard_normal(d), H=B @ B.T)
    x = np.full(d, 0.5)
    G = np.stack([rgf_gradient(f, x, float(f(x)[0]), rng, Q, mu) for _ in range(n)])
    sem = G.std(0) / np.sqrt(n)
    # |(d/Q) sum_j (mu/2) (u_j^T H u_j) u_j| <= (d/Q) Q (mu/2) |H| = d mu |H| / 2
    bias_bound = d * mu / 2 * np.linalg.norm(f.H, 2)
    assert np.all(np.abs(G.mean(0) - f.grad(x)) <= 5 * sem + bias_bound)


def test_rgf_reuses_the_base_value_and_queries_q_points():
    f = Recorder(np.arange(1.0, 7.0))
    x = np.full(6, 0.5)
    rgf_gradient(f, x, 123.0, np.random.default_rng(5), 4, 0.01)
    assert f.points == 4  # Q points, none of them x itself: the base value was passed in
    assert not np.any(np.all(f.batches[0] == x, axis=1))
    # the estimate is built on the base value given: a base off by 1 shifts it by
    # -(d/Q) (1/mu) sum_j s_j u_j
    rng_a, rng_b = np.random.default_rng(6), np.random.default_rng(6)
    fx = float(f(x)[0])
    g1 = rgf_gradient(f, x, fx, rng_a, 4, 0.01)
    g2 = rgf_gradient(f, x, fx + 1.0, rng_b, 4, 0.01)
    U = orthonormal_directions(np.random.default_rng(6), 6, 4)
    np.testing.assert_allclose(g2 - g1, -(6 / 4) / 0.01 * U.sum(0), rtol=1e-9)


def test_a_local_step_costs_q_queries_when_the_base_is_known_and_q_plus_1_otherwise():
    """Per client and round (T = 1): the base f(x_{r-1}) is one query unless the client
    already evaluated that exact point (cache), then the Q directional points."""
    Q, d = 4, 6
    cfg = RunConfig.from_mapping({"method": "fedzo", "local-steps": 1, "rgf-directions": Q})
    f = CallableObjective(Recorder(np.ones(d)), d)
    state = protocol.new_client_state(cfg, d)
    msg = protocol.train_message(cfg, protocol.server_init(cfg, np.full(d, 0.5)))
    state, reply = protocol.client_train(cfg, f, state, msg, 0)
    assert reply["num-queries"] == Q + 1 == f.num_queries
    state, reply = protocol.client_train(cfg, f, state, msg, 0)  # same x: base value cached
    assert reply["num-queries"] == Q and f.num_queries == 2 * Q + 1


def test_coordinate_differences_are_exact_on_a_linear_function_and_cost_d_queries():
    a = np.array([1.5, -2.0, 0.25, 3.0])
    f = Recorder(a)
    x = np.array([0.2, 0.5, 0.7, 0.1])
    g = coordinate_gradient(f, x, float(f(x)[0]), 0.01)
    np.testing.assert_allclose(g, a, rtol=1e-9)
    assert len(f.batches[-1]) == 4
    np.testing.assert_allclose(f.batches[-1], x + 0.01 * np.eye(4))  # forward steps inside


def test_coordinate_differences_step_backward_at_the_upper_face():
    a = np.array([1.5, -2.0, 0.25])
    f = Recorder(a)
    x = np.array([1.0, 0.995, 0.0])  # on the upper face, within mu of it, on the lower face
    g = coordinate_gradient(f, x, float(f(x)[0]), 0.01)
    np.testing.assert_allclose(g, a, rtol=1e-9)  # still exact on a linear function
    P = f.batches[-1]
    np.testing.assert_allclose(P[0], [0.99, 0.995, 0.0])  # backward: x - mu e_0
    np.testing.assert_allclose(P[1], [1.0, 0.985, 0.0])  # backward: forward would leave
    np.testing.assert_allclose(P[2], [1.0, 0.995, 0.01])  # forward from the lower face
    assert np.all((P >= 0) & (P <= 1))
    # on a quadratic the backward difference has the opposite O(mu) bias: f'' mu / 2
    q = Recorder(np.zeros(3), c=0.0, H=2 * np.eye(3))  # f = |x|^2, f'' = 2
    g = coordinate_gradient(q, x, float(q(x)[0]), 0.01)
    np.testing.assert_allclose(g, 2 * x + np.array([-0.01, -0.01, 0.01]), atol=1e-9)
