"""Attack margins, the success rule and image selection, checked by hand on tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo.errors import BudgetExceededError, ConfigError, DomainError, ShapeError
from fedzoo.objectives.problems import FederatedProblem
from fedzoo_attack import objectives as O

IMAGE = np.full((2, 2), 0.5, dtype=np.float32)  # d = 4


def linear_model(images: np.ndarray) -> np.ndarray:
    """Logits [sum of pixels, 2 * first pixel, 1] for each image (3 classes)."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    return np.stack([flat.sum(axis=1), 2.0 * flat[:, 0], np.ones(len(flat))], axis=1)


def constant_model(logits: list[float]):  # noqa: ANN201
    z = np.asarray(logits, np.float64)
    return lambda images: np.tile(z, (len(images), 1))


def test_margin_by_hand() -> None:
    z = np.array([[2.0, 1.0, 1.5], [0.0, 3.0, 1.0]])
    np.testing.assert_allclose(O.margin(z, 0), [2.0 - 1.5, 0.0 - 3.0])
    # targeted to t = 1: max_{k != 1} z_k - z_1
    np.testing.assert_allclose(O.margin(z, 0, targeted=True), [2.0 - 1.0, 1.0 - 3.0])
    # per-row labels: row 0 has t = (2 + 1) mod 3 = 0, row 1 has t = 2
    np.testing.assert_allclose(O.margin(z, np.array([2, 1]), targeted=True), [1.5 - 2.0, 3.0 - 1.0])


def test_attack_objective_by_hand() -> None:
    obj = O.AttackObjective(linear_model, IMAGE, 0, 0.1, num_classes=3)
    assert obj.dim == 4
    X = np.array(
        [
            [0.5, 0.5, 0.5, 0.5],  # delta = 0: pixels 0.5, logits [2, 1, 1]
            [1.0, 1.0, 1.0, 1.0],  # delta = +0.1: pixels 0.6, logits [2.4, 1.2, 1]
            [1.0, 0.0, 0.0, 0.0],  # pixels [0.6, 0.4, 0.4, 0.4]: logits [1.8, 1.2, 1]
        ]
    )
    np.testing.assert_allclose(obj(X), [1.0, 1.2, 0.6], atol=1e-6)
    assert obj.num_queries == 3
    targeted = O.AttackObjective(linear_model, IMAGE, 0, 0.1, targeted=True, num_classes=3)
    assert targeted.target == 1
    np.testing.assert_allclose(targeted(X), [2.0 - 1.0, 2.4 - 1.2, 1.8 - 1.2], atol=1e-6)


def test_perturbation_is_clipped_to_pixel_range() -> None:
    image = np.array([[0.95, 0.0], [0.5, 0.5]], np.float32)
    adv = O.perturbed_images(image, np.array([[1.0, 0.0, 0.5, 1.0]]), 0.1)
    np.testing.assert_allclose(adv[0], [[1.0, 0.0], [0.5, 0.6]], atol=1e-6)
    assert adv.dtype == np.float32


def test_attack_objective_torch_matches_numpy() -> None:
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1, 1, 1], [2, 0, 0, 0], [0, 0, 0, 0]]))
        layer.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    model = torch.nn.Sequential(torch.nn.Flatten(), layer)
    X = np.random.default_rng(0).uniform(size=(7, 4))
    a = O.AttackObjective(model, IMAGE, 0, 0.1, num_classes=3)(X)
    b = O.AttackObjective(linear_model, IMAGE, 0, 0.1, num_classes=3)(X)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_success_uses_averaged_logits() -> None:
    fooled = constant_model([0.0, 3.0, 0.0])  # predicts 1
    correct = constant_model([2.0, 0.0, 0.0])  # predicts 0
    x = np.full(4, 0.5)
    res = O.attack_success([fooled, correct], IMAGE, 0, x, 0.1, num_classes=3)
    # averaged logits [1, 1.5, 0]: argmax 1 != 0 -> success; one of two models fooled
    assert res["success"] and res["predicted"] == 1 and res["fooled_fraction"] == 0.5
    assert res["margin"] == pytest.approx(0.5 * (0 - 3) + 0.5 * (2 - 0))
    assert res["ensemble_margin"] == pytest.approx(1.0 - 1.5)
    assert res["linf"] == 0.0 and res["l2"] == 0.0
    tgt = O.attack_success([fooled, correct], IMAGE, 0, x, 0.1, targeted=True, num_classes=3)
    assert tgt["success"] and tgt["target"] == 1
    # weighting the correct model more flips the decision: [1.5, 0.75, 0]
    res = O.attack_success([fooled, correct], IMAGE, 0, x, 0.1, weights=[0.25, 0.75], num_classes=3)
    assert not res["success"] and res["predicted"] == 0


def test_success_reports_applied_perturbation_norms() -> None:
    image = np.array([[0.95, 0.5], [0.5, 0.5]], np.float32)
    res = O.attack_success([linear_model], image, 0, np.ones(4), 0.1, num_classes=3)
    delta = np.array([0.05, 0.1, 0.1, 0.1])  # first pixel clipped at 1
    assert res["linf"] == pytest.approx(0.1, abs=1e-6)
    assert res["l2"] == pytest.approx(np.linalg.norm(delta), abs=1e-6)
    assert not res["success"]  # logits [~2.45, 2, 1] still predict 0


def test_attack_problem_structure_and_budget() -> None:
    prob = O.attack_problem([linear_model, linear_model], IMAGE, 0, 0.1, num_classes=3, budget=3)
    assert isinstance(prob, FederatedProblem)
    assert prob.dim == 4 and prob.num_clients == 2
    np.testing.assert_allclose(prob.x0, 0.5)
    np.testing.assert_allclose(prob.weights, [0.5, 0.5])
    assert prob.info["epsilon"] == 0.1 and prob.info["target"] is None
    assert prob.objectives[0](prob.x0)[0] == pytest.approx(1.0)
    prob.objectives[0](np.full((2, 4), 0.5))
    with pytest.raises(BudgetExceededError):
        prob.objectives[0](prob.x0)


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), "big"])
def test_bad_epsilon_is_a_config_error(eps: object) -> None:
    with pytest.raises(ConfigError, match="epsilon"):
        O.AttackObjective(linear_model, IMAGE, 0, eps, num_classes=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="epsilon"):
        O.attack_problem([linear_model], IMAGE, 0, eps, num_classes=3)  # type: ignore[arg-type]


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="label"):
        O.AttackObjective(linear_model, IMAGE, 3, 0.1, num_classes=3)
    with pytest.raises(DomainError):
        O.AttackObjective(linear_model, IMAGE + 1, 0, 0.1, num_classes=3)
    with pytest.raises(ShapeError):
        O.AttackObjective(linear_model, np.zeros(4), 0, 0.1, num_classes=3)
    with pytest.raises(DomainError):  # points outside the unit box are refused by Objective
        O.AttackObjective(linear_model, IMAGE, 0, 0.1, num_classes=3)(np.full(4, 1.5))


def test_select_attack_images_criteria() -> None:
    # 3 classes; images are 2 x 2 with pixel value = class / 2 (first pixel carries it)
    labels = np.array([0, 1, 2, 0, 1, 2])
    images = np.repeat(labels.astype(np.float32)[:, None, None] / 2, 2, axis=1).repeat(2, axis=2)

    def knows(classes: list[int]):  # noqa: ANN202
        def model(imgs: np.ndarray) -> np.ndarray:
            y = np.rint(imgs[:, 0, 0] * 2).astype(int)
            z = np.zeros((len(imgs), 3))
            known = np.isin(y, classes)
            pred = np.where(known, y, classes[0])  # confident when it knows the class
            z[np.arange(len(imgs)), pred] = np.where(known, 2.0, 1.0)
            return z

        return model

    models = [knows([0, 1]), knows([1, 2])]
    classes = [np.array([0, 1]), np.array([1, 2])]
    with pytest.raises(ConfigError, match="Only 2 of 6"):  # only class 1 is known to both
        O.select_attack_images(models, images, labels, 3, 0, criterion="all")
    picked = O.select_attack_images(models, images, labels, 2, 0, criterion="all")
    assert sorted(labels[picked].tolist()) == [1, 1]
    # "known": each model that knows the class is right and the average agrees
    # (class 0: avg [1, 0.5, 0]; class 2: avg [0.5, 0, 1]).
    picked = O.select_attack_images(
        models, images, labels, 6, np.random.default_rng(1), client_classes=classes
    )
    assert sorted(picked.tolist()) == list(range(6))
    with pytest.raises(ConfigError, match="k must be"):
        O.select_attack_images(models, images, labels, 0, 0)
