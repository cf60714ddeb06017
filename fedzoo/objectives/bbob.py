r"""Federated BBOB problems: ``bbob:<function>`` from the ``coco-experiment`` package.

The 24 noiseless BBOB functions are taken from COCO's own implementation (the module
``cocoex``, the optional extra ``bbob``), never re-implemented. Client i of N holds
**instance** k_i of the *same* function f in dimension d; instances differ by their
shift of the optimum, rotations and offsets f_opt, which is the heterogeneity of the
federation. The global objective is the weighted (uniform) mean F = Σ_i p_i f_i.

* **Name**: ``bbob:f7`` or ``bbob:7`` (function 1..24, case-insensitive ``f``); the
  problem's ``name`` is the canonical ``bbob:f7``.
* **Domain**: BBOB's box [-5, 5]^d mapped to the unit box, x_bbob = -5 + 10 u.
* **Instances**: k_i = first + i with first = 1 + seed·N (``seed`` is the problem seed,
  ``--problem-seed`` / run-config ``problem-seed``): seed 0 gives instances 1..N, the ones to
  tune on; seed s ≥ 1 gives the disjoint block sN+1..sN+N, for held-out judging (with
  N = 5: seed 1 is instances 6-10, never one of 1-5). ``first_instance`` (keyword of
  :func:`bbob_problem`) picks another block directly.
* **Dimension**: d ≤ 40 uses the ``bbob`` suite (COCO's bare problem, any d in 1..40);
  d in {80, 160, 320, 640} uses the ``bbob-largescale`` suite (COCO's own large-scale
  variant with block-diagonal rotations, the only one COCO defines there). Other
  dimensions are refused: cocoex 2.8.2's ``bbob`` rotations overflow a fixed buffer past
  d ≈ 54 (a segmentation fault), so d = 300 is not offered; use 320.
* **Start point**: the box centre (x_bbob = 0, COCO's ``initial_solution``).
* **Optimum**: F* of the mean of several instances is unknown (each f_i has its own
  optimum), so ``optimum_value`` is None, as for ``paper-ackley``. Targets are relative:
  F_L + τ (F(x0) - F_L), with F_L the best value any compared run found (Moré and Wild's
  data profiles; simulations/benchmarks/bbob.py).
* **heterogeneity** is accepted (every problem factory takes it) and recorded, but unused:
  the instances are the heterogeneity.

``cocoex`` is imported only when a BBOB objective is first evaluated (never by
``import fedzoo``). A cocoex problem cannot be pickled: each objective keeps
(suite, function, dimension, instance) and builds its cocoex problem lazily in the process
that evaluates it (dropped when pickled). cocoex evaluates one point at a time; the
objective loops over the rows of a batch under a lock of its own (one cocoex problem is
never entered by two threads at once). Values are the raw BBOB values f_i (f_opt
included), not f_i - f_opt.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np

from fedzoo.errors import ConfigError, MissingDependencyError
from fedzoo.objectives.problems import SyntheticObjective  # problems imports this module lazily

#: The pin of the optional extra ``bbob``.
COCO_PIN = "coco-experiment==2.8.2"
#: Dimensions of the ``bbob-largescale`` suite used above 40.
LARGESCALE_DIMS = (80, 160, 320, 640)
MAX_BBOB_DIM = 40
NUM_FUNCTIONS = 24
#: BBOB's search box, mapped from the unit box.
LOWER, UPPER = -5.0, 5.0

_NAME = re.compile(r"^bbob:f?0*(\d+)$", re.IGNORECASE)

#: Function groups of the BBOB suite (for reports).
GROUPS: dict[str, tuple[int, ...]] = {
    "separable": (1, 2, 3, 4, 5),
    "moderate": (6, 7, 8, 9),
    "ill-conditioned": (10, 11, 12, 13, 14),
    "multimodal": (15, 16, 17, 18, 19),
    "weak-structure": (20, 21, 22, 23, 24),
}


def is_bbob_name(name: Any) -> bool:
    """True for a ``bbob:`` name with a valid function (``bbob:f7``, ``bbob:7``)."""
    if not isinstance(name, str):
        return False
    m = _NAME.match(name.strip())
    return bool(m) and 1 <= int(m.group(1)) <= NUM_FUNCTIONS


def parse_function(name: str) -> int:
    """The function number of ``bbob:f7`` / ``bbob:7``; ConfigError for anything else."""
    m = _NAME.match(name.strip()) if isinstance(name, str) else None
    if not m or not 1 <= int(m.group(1)) <= NUM_FUNCTIONS:
        raise ConfigError(
            f"Unknown BBOB problem {name!r}; expected 'bbob:f<k>' or 'bbob:<k>' with function "
            f"k in 1..{NUM_FUNCTIONS} (e.g. 'bbob:f7')."
        )
    return int(m.group(1))


def _import_cocoex() -> Any:
    try:
        import cocoex
    except ImportError as err:
        raise MissingDependencyError(
            "BBOB problems need the optional package coco-experiment (module cocoex), which is "
            f"not installed; install the 'bbob' extra (pip install -e '.[bbob]', or pip install "
            f"'{COCO_PIN}')."
        ) from err
    return cocoex


def suite_for(dim: int) -> str:
    """The COCO suite of dimension ``dim``; ConfigError where COCO defines none."""
    if 1 <= dim <= MAX_BBOB_DIM:
        return "bbob"
    if dim in LARGESCALE_DIMS:
        return "bbob-largescale"
    raise ConfigError(
        f"dim = {dim} is not available for BBOB problems; expected 1..{MAX_BBOB_DIM} (suite bbob) "
        f"or one of {', '.join(map(str, LARGESCALE_DIMS))} (suite bbob-largescale)."
    )


def _cocoex_problem(suite: str, function: int, dim: int, instance: int) -> Any:
    cocoex = _import_cocoex()
    if suite == "bbob":
        return cocoex.BareProblem("bbob", function, dim, instance), None
    s = cocoex.Suite(suite, "", f"function_indices:{function} dimensions:{dim} instance_indices:{instance}")
    if len(s) != 1:  # pragma: no cover - suite_for only offers defined dimensions
        raise ConfigError(f"COCO suite {suite!r} has no function {function} in d = {dim}.")
    return s.get_problem(0), s  # the suite is kept alive with its problem




class BBOBClient(SyntheticObjective):
    """One client's BBOB instance on the unit box: f_i(u) = bbob_{f,k}(-5 + 10 u).

    A closed form for reporting (``value``, uncounted, through the cocoex problem); no
    gradient. The cocoex problem is built on first use in each process.
    """

    def __init__(self, function: int, dim: int, instance: int, name: str = "") -> None:
        super().__init__(dim, name=name or f"bbob-f{function}-i{instance}")
        self.function, self.instance = int(function), int(instance)
        self.suite = suite_for(dim)
        self._lock = threading.Lock()
        self._problem: Any = None
        self._suite_ref: Any = None

    @property
    def problem_id(self) -> str:
        """COCO's id of the problem (builds it)."""
        with self._lock:
            return str(self._cocoex().id)

    def _cocoex(self) -> Any:
        if self._problem is None:
            self._problem, self._suite_ref = _cocoex_problem(self.suite, self.function, self.dim, self.instance)
        return self._problem

    def value(self, X: np.ndarray) -> np.ndarray:
        Z = LOWER + (UPPER - LOWER) * np.asarray(X, dtype=np.float64)
        if Z.ndim == 1:
            Z = Z[None, :]
        with self._lock:
            problem = self._cocoex()
            return np.array([float(problem(np.ascontiguousarray(z))) for z in Z], dtype=np.float64)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        raise ConfigError(
            f"BBOB problems have no exact gradient (client {self.name!r}); use a zeroth-order "
            "method, not one that needs exact gradients."
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_problem=None, _suite_ref=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def bbob_problem(
    function: int | str,
    dim: int = 10,
    clients: int = 5,
    heterogeneity: float = 0.0,
    seed: int = 0,
    *,
    first_instance: int | None = None,
) -> Any:
    """A federated BBOB problem: client i holds instance ``first + i`` of ``function``.

    ``function`` is 1..24 or a name (``bbob:f7``). ``first`` is ``first_instance`` or
    1 + seed·N (see the module doc). ``heterogeneity`` is recorded, not used.
    """
    from fedzoo.objectives.problems import FederatedProblem, check_problem_args

    f = parse_function(function) if isinstance(function, str) else int(function)
    if not 1 <= f <= NUM_FUNCTIONS:
        raise ConfigError(f"BBOB function must be in 1..{NUM_FUNCTIONS}, got {function!r}.")
    check_problem_args(clients, dim, heterogeneity, seed)
    suite = suite_for(dim)
    first = 1 + seed * clients if first_instance is None else int(first_instance)
    if first < 1 or first + clients - 1 > 2**31 - 1:
        raise ConfigError(
            f"BBOB instances {first}..{first + clients - 1} are out of range; expected instance "
            f"numbers in 1..{2**31 - 1} (problem seed {seed}, {clients} clients)."
        )
    instances = [first + i for i in range(clients)]
    objs = [BBOBClient(f, dim, k, name=f"bbob-f{f}-client{i}-i{k}") for i, k in enumerate(instances)]
    return FederatedProblem(
        objs,  # type: ignore[arg-type]
        np.full(clients, 1.0 / clients),
        np.full(dim, 0.5),
        name=f"bbob:f{f}",
        optimum_value=None,
        info={"dim": dim, "clients": clients, "heterogeneity": heterogeneity, "seed": seed,
              "function": f, "instances": instances, "suite": suite},
    )
