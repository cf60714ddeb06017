r"""The federated black-box attack: client margins, the problem, the success rule.

N clients each hold a classifier ``h_i`` (logits) and together search one perturbation
of a test image ``a`` with true label y. A point x in the unit box ``[0, 1]^d``
(d = number of pixel values, 784 for MNIST) maps to

.. math::  \delta = \epsilon (2x - 1) \in [-\epsilon, \epsilon]^d, \qquad
           a' = \mathrm{clip}(a + \delta, 0, 1),

so x = 0.5 is the unperturbed image. Client i's black box is a margin of its logits
``z = h_i(a')``, to be minimised:

- untargeted: :math:`f_i(x) = z_y - \max_{k \ne y} z_k` (negative once model i
  misclassifies),
- targeted to t = (y + 1) mod C: :math:`f_i(x) = \max_{k \ne t} z_k - z_t` (negative once
  model i predicts t).

The federation's objective is F = (1/N) sum_i f_i. An attack *succeeds* when the clients'
averaged logits (1/N) sum_i h_i(a') misclassify a' (untargeted) or predict t (targeted);
see :func:`attack_success`.

With a class portion P < 1, a model never trained on class y (or t) puts a very low
logit on it, so its margin is large and of fixed sign whatever the perturbation: for the
reference MNIST-5k models (N = 10, P = 0.5) F(x0) < 0 for *every* untargeted test image,
and F(x0) > 0 for every targeted one. Success is therefore judged by the averaged logits,
never by the sign of F. (Since the max of an average is at most the average of maxima,
the ensemble's own margin is >= F, so F < 0 is necessary, not sufficient, for an
untargeted success.)

Classifiers are torch modules (wrapped by :class:`fedzoo_attack.models.TorchClassifier`,
so torch is imported only when one is used) or any callable mapping float32 images
``n x H x W`` (or ``n x H x W x C``) in [0, 1] to logits ``n x C``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from fedzoo.errors import ConfigError, DomainError, ObjectiveError, ShapeError, UnknownNameError
from fedzoo.objectives.base import Objective, as_points
from fedzoo.objectives.problems import FederatedProblem

logger = logging.getLogger(__name__)

Classifier = Callable[[np.ndarray], np.ndarray]
SelectionCriterion = Literal["known", "all", "ensemble", "margin"]

#: One sentence per criterion of :func:`select_attack_images` (CLI help, summary.json).
SELECTION_RULES: dict[str, str] = {
    "known": "the clients' averaged logits and every client model trained on the image's "
    "class classify it correctly (models that never saw the class are not asked; "
    "with P = 1 this is 'all')",
    "all": "the clients' averaged logits and every client model classify it correctly "
    "(docs/design.md §7's wording; no image qualifies when P < 1)",
    "ensemble": "the clients' averaged logits classify it correctly",
    "margin": "the clients' averaged logits classify it correctly and F(x0) > 0 "
    "(the mean client margin at the clean image)",
}


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def as_classifier(
    model: Any, *, batch_size: int = 256, num_threads: int | None = None
) -> Classifier:
    """A numpy-in, numpy-out classifier from a torch module or a callable.

    A ``torch.nn.Module`` is wrapped in :class:`fedzoo_attack.models.TorchClassifier`
    (torch is already loaded when such an object exists); any other callable is used
    as is and must map images ``n x H x W [x C]`` to logits ``n x C``.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from fedzoo_attack.models import TorchClassifier

        return TorchClassifier(model, batch_size=batch_size, num_threads=num_threads)
    if callable(model):
        return model
    raise ConfigError(
        f"Expected a torch module or a callable images -> logits, got {type(model).__name__}."
    )


def _check_epsilon(epsilon: float) -> float:
    try:
        eps = float(epsilon)
    except (TypeError, ValueError):
        raise ConfigError(f"epsilon must be a positive number, got {epsilon!r}.") from None
    if not np.isfinite(eps) or eps <= 0:
        raise ConfigError(f"epsilon must be a positive finite number, got {epsilon!r}.")
    if eps > 1:
        logger.warning("epsilon = %g exceeds the pixel range [0, 1].", eps)
    return eps


def _check_image(image: Any) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim not in (2, 3):
        raise ShapeError(f"Expected one image of shape H x W or H x W x C, got shape {img.shape}.")
    if not np.all(np.isfinite(img)) or img.min() < 0 or img.max() > 1:
        raise DomainError(
            f"Image pixels must be finite and lie in [0, 1], got [{img.min():.4g}, {img.max():.4g}]."
        )
    return img


def _check_label(label: Any, num_classes: int) -> int:
    if int(label) != label or not 0 <= int(label) < num_classes:
        raise ConfigError(f"label must be an integer in 0..{num_classes - 1}, got {label!r}.")
    return int(label)


def target_class(label: int, num_classes: int = 10) -> int:
    """The targeted attack's class t = (y + 1) mod C."""
    return (int(label) + 1) % num_classes


def perturbed_images(image: np.ndarray, X: np.ndarray, epsilon: float) -> np.ndarray:
    """Images a' = clip(a + eps (2x - 1), 0, 1) for the rows x of X (n x d) -> n x image shape.

    Returned as float32; the perturbation is formed in float64 first.
    """
    X = np.asarray(X, dtype=np.float64)
    delta = epsilon * (2.0 * X - 1.0)
    out = np.clip(image.astype(np.float64)[None] + delta.reshape(X.shape[0], *image.shape), 0, 1)
    return out.astype(np.float32)


def margin(logits: np.ndarray, label: int | np.ndarray, targeted: bool = False) -> np.ndarray:
    """Attack margins of ``logits`` (n x C) for true label y; lower is better for the attacker.

    Untargeted: z_y - max_{k != y} z_k. Targeted (t = (y + 1) mod C): max_{k != t} z_k - z_t.
    Both are negative exactly when the attack succeeds on that model (ties count as not
    yet successful). ``label`` is one class for all rows or n classes, one per row.
    Returns n float64 values.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ShapeError(f"Expected logits as an n x C array with C >= 2, got shape {z.shape}.")
    n, num_classes = z.shape
    y = np.broadcast_to(np.asarray(label, dtype=np.int64), (n,))
    cls = (y + 1) % num_classes if targeted else y
    rows = np.arange(n)
    picked = z[rows, cls]
    others = z.copy()
    others[rows, cls] = -np.inf
    best_other = others.max(axis=1)
    return best_other - picked if targeted else picked - best_other


def _unpack_models(models: Any) -> tuple[list[Any], list[np.ndarray] | None]:
    """(list of models, their classes or None) from a ClientModels or a sequence."""
    classes = getattr(models, "client_classes", None)
    seq = list(getattr(models, "models", models))
    if not seq:
        raise ConfigError("Expected at least one client model.")
    return seq, classes


# --------------------------------------------------------------------------------------
# The client objective
# --------------------------------------------------------------------------------------
class AttackObjective(Objective):
    """Client i's attack margin as a black box on ``[0, 1]^d`` (see the module docstring).

    Args:
        model: the client's classifier (torch module or callable images -> logits).
        image: the attacked image, ``H x W`` or ``H x W x C`` in [0, 1].
        label: its true class y.
        epsilon: the L-infinity radius eps > 0 of the perturbation.
        targeted: targeted attack to (y + 1) mod C instead of untargeted.
        num_classes: C, checked against the logits.
        batch_size: images per forward pass.
        num_threads: torch threads during evaluation (default 1; see
            :func:`fedzoo_attack.models.torch_threads`).
        budget: optional query budget.
        name: a label for logs.

    Query cost: one per point. Evaluation is batched, float32, under ``torch.no_grad``.
    """

    def __init__(
        self,
        model: Any,
        image: Any,
        label: int,
        epsilon: float,
        *,
        targeted: bool = False,
        num_classes: int = 10,
        batch_size: int = 256,
        num_threads: int | None = None,
        budget: int | None = None,
        name: str = "",
    ) -> None:
        self.image = _check_image(image)
        super().__init__(self.image.size, budget=budget, name=name or "attack")
        self.label = _check_label(label, num_classes)
        self.epsilon = _check_epsilon(epsilon)
        self.targeted = bool(targeted)
        self.num_classes = int(num_classes)
        self.classifier = as_classifier(model, batch_size=batch_size, num_threads=num_threads)

    @property
    def target(self) -> int | None:
        """The target class of a targeted attack, else None."""
        return target_class(self.label, self.num_classes) if self.targeted else None

    def logits(self, X: np.ndarray) -> np.ndarray:
        """The classifier's logits (n x C) at the perturbed images of X (not a query)."""
        z = np.asarray(self.classifier(perturbed_images(self.image, X, self.epsilon)))
        if z.shape != (X.shape[0], self.num_classes):
            raise ObjectiveError(
                f"{self.name}: the classifier returned logits of shape {z.shape}, expected "
                f"({X.shape[0]}, {self.num_classes})."
            )
        return z

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        return margin(self.logits(X), self.label, self.targeted)


def attack_problem(
    models: Any,
    image: Any,
    label: int,
    epsilon: float,
    targeted: bool = False,
    *,
    weights: Sequence[float] | None = None,
    num_classes: int = 10,
    budget: int | None = None,
    batch_size: int = 256,
    num_threads: int | None = None,
    name: str = "attack",
) -> FederatedProblem:
    """The federated attack on one image as a :class:`FederatedProblem`.

    Args:
        models: the N client classifiers (a :class:`fedzoo_attack.models.ClientModels`,
            or a sequence of torch modules / callables).
        image: the attacked image (``H x W`` or ``H x W x C`` in [0, 1]).
        label: its true class.
        epsilon: L-infinity radius eps > 0.
        targeted: targeted attack to (y + 1) mod C.
        weights: client weights (default uniform 1/N).
        num_classes: C.
        budget: optional per-client query budget.
        batch_size, num_threads: evaluation settings of every client.
        name: the problem's label.

    Returns:
        A problem of dimension d = image size with x0 = 0.5 (no perturbation);
        ``optimum_value`` is unknown (None); ``info`` records label, target, epsilon,
        targeted, image shape.
    """
    seq, _ = _unpack_models(models)
    img = _check_image(image)
    eps = _check_epsilon(epsilon)
    y = _check_label(label, num_classes)
    objectives: list[Objective] = [
        AttackObjective(
            m,
            img,
            y,
            eps,
            targeted=targeted,
            num_classes=num_classes,
            batch_size=batch_size,
            num_threads=num_threads,
            budget=budget,
            name=f"{name}-client{i}",
        )
        for i, m in enumerate(seq)
    ]
    n = len(objectives)
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64)
    return FederatedProblem(
        objectives,
        w,
        np.full(img.size, 0.5),
        name=name,
        info={
            "label": y,
            "target": target_class(y, num_classes) if targeted else None,
            "epsilon": eps,
            "targeted": bool(targeted),
            "image_shape": list(img.shape),
            "num_clients": n,
        },
    )


def attack_success(
    models: Any,
    image: Any,
    label: int,
    x: Any,
    epsilon: float,
    targeted: bool = False,
    *,
    weights: Sequence[float] | None = None,
    num_classes: int = 10,
) -> dict[str, Any]:
    r"""Whether the perturbation encoded by x fools the federation (simulator-side check).

    The averaged logits :math:`\bar z = \sum_i w_i h_i(a')` decide: an untargeted
    attack succeeds when :math:`\arg\max \bar z \ne y`, a targeted one when
    :math:`\arg\max \bar z = t`. These
    evaluations call the classifiers directly; they are *not* queries and must not be
    fed back to an optimiser.

    Args:
        models, image, label, epsilon, targeted, weights, num_classes: as in
            :func:`attack_problem`.
        x: the point in the unit box (length d).

    Returns:
        ``success`` (bool), ``predicted`` (argmax of the averaged logits), ``label``,
        ``target`` (None if untargeted), ``ensemble_margin`` (the margin of the averaged
        logits: negative iff success, ties aside), ``fooled_fraction`` (share of client models whose
        own prediction is fooled by the same rule), ``margin`` (weighted mean of the
        client margins, i.e. F(x)), ``linf`` and ``l2`` (norms of the perturbation actually
        applied, a' - a, after clipping to [0, 1]).
    """
    seq, _ = _unpack_models(models)
    img = _check_image(image)
    eps = _check_epsilon(epsilon)
    y = _check_label(label, num_classes)
    X = as_points(x, img.size)
    if X.shape[0] != 1:
        raise ShapeError(f"attack_success expects one point, got {X.shape[0]}.")
    adv = perturbed_images(img, X, eps)
    logits = []
    for m in seq:
        z = np.asarray(as_classifier(m)(adv), dtype=np.float64)
        if z.shape != (1, num_classes):
            raise ObjectiveError(
                f"A classifier returned logits of shape {z.shape}, expected (1, {num_classes})."
            )
        logits.append(z[0])
    Z = np.stack(logits)
    w = np.full(len(seq), 1.0 / len(seq)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    avg = w @ Z
    t = target_class(y, num_classes) if targeted else None
    preds = Z.argmax(axis=1)
    fooled = preds == t if targeted else preds != y
    predicted = int(avg.argmax())
    success = predicted == t if targeted else predicted != y
    diff = (adv[0].astype(np.float64) - img.astype(np.float64)).ravel()
    return {
        "success": bool(success),
        "predicted": predicted,
        "label": y,
        "target": t,
        "fooled_fraction": float(fooled.mean()),
        "margin": float(w @ margin(Z, y, targeted)),
        "ensemble_margin": float(margin(avg[None], y, targeted)[0]),
        "linf": float(np.abs(diff).max()),
        "l2": float(np.linalg.norm(diff)),
    }


def select_attack_images(
    models: Any,
    images: np.ndarray,
    labels: np.ndarray,
    k: int,
    rng: np.random.Generator | int | None = None,
    *,
    criterion: SelectionCriterion = "known",
    client_classes: Sequence[np.ndarray] | None = None,
    targeted: bool = False,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Indices of k test images to attack, drawn at random among the eligible ones.

    An image is eligible when the attack has not succeeded before it starts, i.e. the
    clients' averaged logits predict its label, and, depending on ``criterion``:

    - ``"all"``: every client model predicts the label (the paper's wording). With a
      class portion P < 1 this is usually impossible: a model trained on int(10 P)
      classes almost never predicts a class it has not seen, so no image qualifies.
    - ``"known"`` (default): every client model *trained on the image's class* predicts
      the label. With P = 1 (or unknown client classes) this is exactly ``"all"``; with
      P < 1 it is the natural generalisation.
    - ``"ensemble"``: only the averaged-logit condition.
    - ``"margin"``: also F(x0) > 0, the weighted mean of the client margins at x0 (the
      paper's public code kept images with a non-negative average margin). With P < 1
      this is often impossible for untargeted attacks (see the module docstring).

    Eligible images among the 1000 of the MNIST-5k test split, reference models, N = 10:

    ======  =====  ===  ========  ===================================
    P       known  all  ensemble  margin (untargeted / targeted)
    ======  =====  ===  ========  ===================================
    0.5     737    0    796       0 / 796
    0.7     769    0    875       24 / 875
    ======  =====  ===  ========  ===================================

    Args:
        models: client models (a ``ClientModels`` also supplies their classes).
        images: candidate images (channels last), ``n x H x W [x C]`` in [0, 1].
        labels: their labels (length n).
        k: number of images wanted.
        rng: generator (or int seed) for the draw; ``None`` means seed 0.
        criterion: ``"known"``, ``"all"``, ``"ensemble"`` or ``"margin"``.
        targeted: whether the attack will be targeted (used by ``"margin"`` only).
        weights: client weights of the averaged logits and of F (default uniform).
        client_classes: the classes each model was trained on (default: from ``models``;
            when unknown every model is taken to know every class).

    Returns:
        k distinct int64 indices into ``images``, in the order drawn.

    Raises:
        ConfigError: k < 1, or fewer than k images are eligible (the count is given).
    """
    if criterion not in ("known", "all", "ensemble", "margin"):
        raise UnknownNameError(
            f"Unknown criterion {criterion!r}; expected 'known', 'all', 'ensemble' or 'margin'."
        )
    if int(k) != k or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}.")
    seq, classes = _unpack_models(models)
    classes = client_classes if client_classes is not None else classes
    labels = np.asarray(labels, dtype=np.int64)
    images = np.asarray(images, dtype=np.float32)
    if images.shape[0] != labels.shape[0]:
        raise ShapeError(f"{images.shape[0]} images but {labels.shape[0]} labels.")
    w = np.full(len(seq), 1.0 / len(seq)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    logits = np.stack([np.asarray(as_classifier(m)(images), dtype=np.float64) for m in seq])
    correct = logits.argmax(axis=2) == labels[None, :]  # N x n
    eligible = np.tensordot(w, logits, axes=1).argmax(axis=1) == labels
    if criterion == "all" or (criterion == "known" and classes is None):
        eligible &= correct.all(axis=0)
    elif criterion == "known":
        assert classes is not None
        knows = np.stack([np.isin(labels, c) for c in classes])  # N x n
        eligible &= np.all(correct | ~knows, axis=0)
    elif criterion == "margin":
        margins = np.stack([margin(z_i, labels, targeted) for z_i in logits])  # N x n
        eligible &= w @ margins > 0
    pool = np.flatnonzero(eligible)
    if pool.size < k:
        raise ConfigError(
            f"Only {pool.size} of {labels.size} images are eligible under criterion "
            f"{criterion!r}, fewer than the {k} requested"
            + (" (with P < 1 try criterion='known' or 'ensemble')." if criterion == "all" else ".")
        )
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    return rng.choice(pool, size=int(k), replace=False).astype(np.int64)
