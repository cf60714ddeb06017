"""Surrogates checked against math: finite differences, exact kernels, known gradients."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo.objectives import make_problem
from fedzoo.surrogates import (
    GaussianProcess,
    GPHyper,
    RandomFourierFeatures,
    fit_hyperparameters,
    fit_rff_weights,
    squared_distances,
)
from fedzoo.surrogates.gp import negative_log_marginal_likelihood
from fedzoo.surrogates.kernels import KERNELS
from fedzoo.surrogates.rff import RFFFitCache, fit_rff_weights_cached


def central_difference(f, x, h=1e-5):
    E = np.eye(x.size)
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in E])


def rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("kernel", ["se", "matern52"])
def test_gp_mean_gradient_matches_central_differences(kernel):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 12))
    y = np.sin(3 * X.sum(1)) + X[:, 0] ** 2
    gp = GaussianProcess(X, y, GPHyper(0.7, 1.5, 1e-3), kernel=kernel)
    for _ in range(3):
        q = rng.uniform(size=12)
        fd = central_difference(lambda z: gp.predict_mean(z[None])[0], q)
        assert rel_err(gp.mean_gradient(q[None])[0], fd) <= 1e-6


@pytest.mark.parametrize("kernel", ["se", "matern52"])
def test_gradient_uncertainty_trace_equals_trace_of_full_covariance(kernel):
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(30, 8))
    gp = GaussianProcess(X, rng.standard_normal(30), GPHyper(0.5, 2.0, 1e-2), kernel=kernel, center=X[0])
    Q = rng.uniform(size=(5, 8))
    traces = gp.gradient_uncertainty_trace(Q)
    exact = [np.trace(gp.gradient_covariance(q)) for q in Q]
    np.testing.assert_allclose(traces, exact, rtol=1e-8)
    # far from all data the trace returns to the prior d * s^2 * kappa, with kappa the
    # variance of a partial derivative: -d^2 k(delta)/d delta_j^2 at 0, here by a central
    # second difference of the kernel itself (unit variance, l = 0.5)
    h = 1e-3 * 0.5
    kappa = 2.0 * (1.0 - gp.kernel.value(np.array(h * h), 0.5)) / h**2
    closed = {"se": 1 / 0.5**2, "matern52": 5 / (3 * 0.5**2)}[kernel]  # 1/l^2 and 5/(3 l^2)
    assert kappa == pytest.approx(closed, rel=1e-5)
    far = gp.gradient_uncertainty_trace(np.full((1, 8), 50.0))[0]
    assert far == pytest.approx(8 * 2.0 * kappa, rel=1e-5)
    assert np.trace(gp.gradient_covariance(np.full(8, 50.0))) == pytest.approx(8 * 2.0 * closed, rel=1e-9)


@pytest.mark.parametrize("kernel", ["se", "matern52"])
def test_marginal_likelihood_gradient_matches_central_differences(kernel):
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(25, 5))
    y = np.cos(X @ np.arange(1, 6))
    y = (y - y.mean()) / y.std()
    R2 = squared_distances(X, X)
    theta = np.log([0.6, 1.3, 1e-2])
    _, grad = negative_log_marginal_likelihood(theta, R2, y, kernel)
    fd = central_difference(lambda t: negative_log_marginal_likelihood(t, R2, y, kernel)[0], theta)
    assert rel_err(grad, fd) <= 1e-6


def test_hyperparameter_fit_stays_in_bounds_and_improves_likelihood():
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(60, 4))
    y = np.sin(4 * X[:, 0]) + 0.5 * X[:, 1]
    h = fit_hyperparameters(X, y, rng=rng, restarts=3)
    Xc = X - X.mean(0)
    ys = (y - y.mean()) / y.std()
    R2 = squared_distances(Xc, Xc)
    fitted = negative_log_marginal_likelihood(h.as_log(), R2, ys)[0]
    default = negative_log_marginal_likelihood(np.log([1.0, 1.0, 1e-3]), R2, ys)[0]
    assert fitted <= default
    assert h.lengthscale > 0 and 1e-6 <= h.noise_var <= 1.0


def test_rff_jacobian_and_gradient_match_central_differences():
    rng = np.random.default_rng(4)
    rff = RandomFourierFeatures(dim=7, num_features=300, lengthscale=0.8, seed=11)
    x = rng.uniform(size=7)
    w = rng.standard_normal(300)
    J_fd = np.stack([central_difference(lambda z, k=k: rff.features(z[None])[0, k], x) for k in range(300)])
    assert rel_err(rff.jacobian(x), J_fd) <= 1e-6
    g_fd = central_difference(lambda z: rff.predict(z[None], w)[0], x)
    assert rel_err(rff.gradient(x, w), g_fd) <= 1e-6
    assert rel_err(rff.gradient(x, w, single=True), g_fd) <= 1e-5  # float32 fast path


@pytest.mark.parametrize("M", [500, 2000, 8000])
def test_rff_kernel_approximates_exact_kernel_within_c_over_sqrt_m(M):
    rng = np.random.default_rng(5)
    X = rng.uniform(size=(40, 6))
    rff = RandomFourierFeatures(6, M, lengthscale=0.9, seed=M)
    Phi = rff.features(X)
    exact = np.exp(-0.5 * squared_distances(X, X) / 0.9**2)
    # each entry is a mean of M bounded terms (|2 cos cos| <= 2): std <= 1/sqrt(M);
    # the max over 1600 entries stays below ~4.5 std
    assert np.max(np.abs(Phi @ Phi.T - exact)) <= 4.5 / np.sqrt(M)


def test_rff_same_seed_same_features_different_seed_different():
    a = RandomFourierFeatures(5, 50, 1.0, seed=3)
    b = RandomFourierFeatures(5, 50, 1.0, seed=3)
    c = RandomFourierFeatures(5, 50, 1.0, seed=4)
    assert np.array_equal(a.V, b.V) and np.array_equal(a.b, b.b)
    assert not np.array_equal(a.V, c.V)


def test_rff_ridge_fit_recovers_a_function_in_its_span():
    rng = np.random.default_rng(6)
    rff = RandomFourierFeatures(3, 200, 1.0, seed=1)
    w_true = rng.standard_normal(200)
    X = rng.uniform(size=(150, 3))
    w = fit_rff_weights(rff, X, rff.predict(X, w_true) + 4.0, ridge=1e-6)
    Xt = rng.uniform(size=(50, 3))
    pred = rff.predict(Xt, w)
    truth = rff.predict(Xt, w_true)
    # the constant offset is dropped (it has no gradient); shapes agree up to it
    assert np.corrcoef(pred, truth)[0, 1] > 0.99
    x = rng.uniform(size=3)
    g, g_true = rff.gradient(x, w), rff.gradient(x, w_true)
    assert g @ g_true / np.linalg.norm(g) / np.linalg.norm(g_true) > 0.95


def _surrogate_cosine(n: int, seed: int) -> float:
    problem = make_problem("quadratic", dim=300, clients=5, heterogeneity=0.5, seed=0)
    f = problem.objectives[0]
    rng = np.random.default_rng(seed)
    x = problem.x0
    X = np.clip(x + rng.uniform(-0.01, 0.01, size=(n, 300)), 0, 1)
    y = f.value(X)
    gp = GaussianProcess(X, y, fit_hyperparameters(X, y, rng=rng, restarts=2), center=x)
    g, g_true = gp.mean_gradient(x)[0], f.gradient(x[None])[0]
    return float(g @ g_true / np.linalg.norm(g) / np.linalg.norm(g_true))


def test_surrogate_gradient_of_quadratic_from_450_local_queries_has_cosine_above_095():
    assert _surrogate_cosine(450, seed=0) >= 0.95


def test_surrogate_gradient_with_fewer_points_than_dimensions_follows_sqrt_n_over_d():
    # with n < d random points the gradient is only identified on their span:
    # E cos ~ sqrt(n/d); for n=150, d=300 that is 0.707
    cosines = [_surrogate_cosine(150, seed=s) for s in range(2)]
    assert all(abs(c - np.sqrt(150 / 300)) < 0.12 for c in cosines), cosines


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernel_derivative_variance_and_gradient_factor_match_kernel_derivatives(kernel):
    """kappa(l) = -d^2 k/d delta_j^2 at 0 (finite differences of the kernel), and
    dk(x, x')/dx = -h (x - x') for the grad factor h, at several lengthscales."""
    k = KERNELS[kernel]
    for ls in (0.1, 0.7, 3.0):
        step = 1e-3 * ls
        fd = 2.0 * (1.0 - k.value(np.array(step * step), ls)) / step**2
        assert k.derivative_variance(ls) == pytest.approx(fd, rel=1e-5)
        r = 0.3 * ls
        dk = (k.value(np.array((r + step) ** 2), ls) - k.value(np.array((r - step) ** 2), ls)) / (2 * step)
        assert -k.grad_factor(np.array(r * r), ls) * r == pytest.approx(dk, rel=1e-5)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_value_and_dlog_l_equal_the_separate_functions(kernel):
    k = KERNELS[kernel]
    R2 = np.random.default_rng(8).uniform(0, 3, size=(20, 20))
    value, dlog_l = k.value_and_dlog_l(R2, 0.7)
    np.testing.assert_allclose(value, k.value(R2, 0.7), rtol=1e-13)
    np.testing.assert_allclose(dlog_l, k.dlog_l(R2, 0.7), rtol=1e-12, atol=1e-300)


def test_cached_rff_fit_reuses_rows_and_agrees_with_a_fresh_fit():
    rng = np.random.default_rng(9)
    rff = RandomFourierFeatures(12, 3000, 1.0, seed=2)
    X, y, ids = rng.uniform(size=(400, 12)), rng.standard_normal(400), np.arange(100, 500)
    first = slice(0, 250)
    w_plain = fit_rff_weights(rff, X[first], y[first], ridge=1e-3)
    w, cache = fit_rff_weights_cached(rff, X[first], y[first], ids[first], None, ridge=1e-3)
    assert np.array_equal(w, w_plain)  # no cache: exactly the plain fit
    sel = rng.permutation(np.arange(150, 400))[:240]  # 100 cached rows, 140 new, shuffled
    w2, cache2 = fit_rff_weights_cached(rff, X[sel], y[sel], ids[sel], cache, ridge=1e-3)
    fresh = fit_rff_weights(rff, X[sel], y[sel], ridge=1e-3)
    # reused float32 rows differ from recomputed ones by float32 rounding only: the gap
    # is of the order of the float32 fit's own gap to the exact float64 fit
    Phi = rff.features(X[sel])
    ys = (y[sel] - y[sel].mean()) / y[sel].std()
    exact = y[sel].std() * Phi.T @ np.linalg.solve(Phi @ Phi.T + 1e-3 * np.eye(240), ys)
    rounding = np.linalg.norm(fresh - exact)
    assert rounding <= 1e-3 * np.linalg.norm(exact)
    assert np.linalg.norm(w2 - fresh) <= 3 * rounding
    assert np.array_equal(cache2.ids, ids[sel])
    Phi32 = rff.features32(X[sel])
    np.testing.assert_allclose(cache2.gram, Phi32 @ Phi32.T, rtol=1e-4, atol=1e-5)
    # the cache survives serialisation; a cache of another feature map is ignored
    back = RFFFitCache.from_arrays(cache2.to_arrays())
    assert back.key == cache2.key and np.array_equal(back.gram, cache2.gram)
    other = RandomFourierFeatures(12, 3000, 1.0, seed=3)
    w_other, _ = fit_rff_weights_cached(other, X[sel], y[sel], ids[sel], cache2, ridge=1e-3)
    assert np.array_equal(w_other, fit_rff_weights(other, X[sel], y[sel], ridge=1e-3))
