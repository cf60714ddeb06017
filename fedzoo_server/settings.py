"""The Flower run-config: every :class:`~fedzoo.config.RunConfig` option plus the problem.

``[tool.flwr.app.config]`` in pyproject.toml holds every RunConfig option with its default
(kebab-case, as :meth:`RunConfig.to_dict` writes them) and the keys below, which describe
the federation rather than the algorithm. Both the ServerApp and the ClientApp read
``context.run_config`` through :func:`parse_run_config`, so both sides validate the same
options the same way (``RunConfig.from_mapping``) before anything is sent.

Federation keys:

* ``problem``: a registered synthetic problem (``quadratic``, ``ackley``, ``levy``, ...,
  or a BBOB function ``bbob:f1`` .. ``bbob:f24``, :mod:`fedzoo.objectives.bbob`) or
  ``custom``. With a registered problem the server takes x0 and the client weights from
  ``make_problem(problem, dim=, clients=, heterogeneity=, seed=problem-seed)`` and every
  client whose node config names no objective uses that problem's objective number
  ``partition-id``. With ``custom`` every node names its objective (node config
  ``objective`` or ``oracle``) or the run names a factory (``objective-factory``); the
  start point is the centre of the box and the weights are uniform unless ``x0`` and
  ``weights`` say otherwise.
* ``x0``, ``weights`` (``problem = "custom"`` only; "" = the default above): the start
  point, ``dim`` numbers in [0, 1] (or one number for every coordinate), and the
  clients' weights, ``num-clients`` numbers >= 0 with a positive sum (normalised to sum
  1; weight i belongs to partition i), each as comma-separated numbers (``"0.2,0.4"``)
  or a JSON list (``"[0.2, 0.4]"``) in a string.
* ``dim``, ``num-clients``, ``heterogeneity``, ``problem-seed``: the problem's d, N, C
  and seed. ``num-clients`` is also the number of partitions the server waits for.
* ``objective-factory``: with ``problem = "custom"``, ``"package.module:function"``, a
  factory every client whose node config names no objective calls as
  ``factory(partition_id=, num_clients=, **objective-options)`` to build its objective
  (:func:`fedzoo.objectives.loading.objective_from_factory`; imported from the app
  bundle, never evaluated as code); "" = none. E.g. the federated adversarial attack:
  ``fedzoo_attack.federation:objective_factory``, each client's CNN margin on one test
  image; the server needs no model (values are the clients' reports; success is judged
  by the caller on the saved global points).
* ``objective-options``: the factory's keyword arguments as a JSON object in a string
  (``'{"image": 853, "epsilon": 0.3}'``); "" = none. Checked here for syntax; what they
  mean is checked by the factory, on the clients, before round 1.
* ``query-budget``: if > 0, a hard limit on the clients' queries (all clients, every
  exchange, the final evaluation included): the round driver never starts a round whose
  declared worst case could pass it (:mod:`fedzoo.budget`), the same rule as
  ``fedzoo run --budget`` and ``fedzoo.minimize(budget=)``.
* ``final-evaluation``: ask every client for f_i(x_R) at the end when the last round has
  no reported value (methods without a sync exchange; N counted queries).
* ``save-points``: write the global point of every round to ``points.npy`` in
  ``out-dir`` ((rounds + 1) x dim), e.g. to judge an attack's success afterwards.
* ``out-dir``: where the ServerApp writes history.csv and summary.json (a relative path
  is taken from the working directory of the process that runs the ServerApp, i.e. the
  SuperLink's; use an absolute path).
* ``node-wait-timeout``: seconds to wait for ``num-clients`` partitions before round 1.
* ``round-timeout``: seconds to wait for the replies of one exchange; missing replies
  are skipped like error replies.
* ``checkpoint-dir``: if not empty, the ServerApp writes ``checkpoint.npz`` there after
  every round (atomic; :mod:`fedzoo.checkpoint`): global state, history rows, config.
* ``resume``: continue the run checkpointed in ``checkpoint-dir`` (same configuration
  except ``rounds`` and the timeouts) up to ``rounds`` rounds in total. Clients must
  have persisted their state (``client-state-dir`` or the node config ``state-dir``)
  for the resumed history to equal an uninterrupted one.
* ``client-state-dir``: if not empty, every client keeps snapshots of its state under
  ``<client-state-dir>/partition-<id>`` (:mod:`fedzoo_client.persistence`), so it survives a
  SuperNode restart or a new run that resumes this one. A node's own ``state-dir``
  (node config) takes precedence.
* ``tensorboard-dir``: if not empty, the ServerApp writes TensorBoard scalars per round
  there (value, reported value, queries, bytes, per-client queries, seconds per round;
  :mod:`fedzoo.tensorboard_log`, the ``tensorboard`` extra on the server). An absolute
  path, as for ``out-dir``.

Small-run overrides: the shipped defaults equal RunConfig's except the keys in
:data:`SMALL_RUN_OVERRIDES`, chosen so that a bare ``flwr run .`` finishes in about a
minute on a laptop (the paper's settings are one ``--run-config`` away).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError

CUSTOM_PROBLEM = "custom"

#: Keys of the run-config that are not RunConfig options, with their shipped defaults.
FEDERATION_DEFAULTS: dict[str, Any] = {
    "problem": "quadratic",
    "dim": 20,
    "num-clients": 3,
    "heterogeneity": 0.5,
    "problem-seed": 0,
    "out-dir": "runs/flower",
    "node-wait-timeout": 120.0,
    "round-timeout": 600.0,
    "checkpoint-dir": "",
    "resume": False,
    "client-state-dir": "",
    "query-budget": 0,
    "save-points": False,
    "final-evaluation": True,
    "objective-factory": "",
    "objective-options": "",
    "tensorboard-dir": "",
    "x0": "",
    "weights": "",
}

#: Run-config keys that may differ between a run and the run that resumes it; they do
#: not identify the run (client snapshots and checkpoints are keyed by the others).
VOLATILE_KEYS = ("rounds", "out-dir", "node-wait-timeout", "round-timeout", "resume",
                 "checkpoint-dir", "client-state-dir", "query-budget", "save-points",
                 "final-evaluation", "tensorboard-dir")

#: RunConfig options whose shipped default differs from RunConfig's (quick first run).
SMALL_RUN_OVERRIDES: dict[str, Any] = {"rounds": 10}


def shipped_defaults() -> dict[str, Any]:
    """What ``[tool.flwr.app.config]`` must hold (a test compares it with pyproject)."""
    return {**RunConfig().to_dict(), **SMALL_RUN_OVERRIDES, **FEDERATION_DEFAULTS}


@dataclass(frozen=True)
class FlowerSettings:
    """A validated run-config: the algorithm options and the federation."""

    config: RunConfig
    problem: str
    dim: int
    num_clients: int
    heterogeneity: float
    problem_seed: int
    out_dir: str
    node_wait_timeout: float
    round_timeout: float
    checkpoint_dir: str = ""
    resume: bool = False
    client_state_dir: str = ""
    query_budget: int = 0
    save_points: bool = False
    final_evaluation: bool = True
    objective_factory: str = ""
    objective_options: str = ""  # canonical JSON text (objective_options_text), "" = none
    tensorboard_dir: str = ""  # TensorBoard scalars per round there (fedzoo.tensorboard_log); "" = off
    x0: tuple[float, ...] | None = None  # custom start point (run-config x0); None = box centre
    weights: tuple[float, ...] | None = None  # custom weights, summing to 1; None = uniform

    @property
    def synthetic(self) -> bool:
        """A registered synthetic problem (the server can build it: x0, weights, F)."""
        return self.problem != CUSTOM_PROBLEM

    @property
    def objective_kwargs(self) -> dict[str, Any]:
        """The factory's keyword options (``objective-options``, parsed)."""
        from fedzoo.objectives.loading import parse_objective_options

        return parse_objective_options(self.objective_options)

    @property
    def objective_meta(self) -> dict[str, Any] | None:
        """What identifies the run's objective factory (JSON-ready), None without one:
        recorded in checkpoints next to :attr:`problem_key`."""
        if not self.objective_factory:
            return None
        return {"factory": self.objective_factory, "options": self.objective_kwargs}

    @property
    def problem_key(self) -> tuple[str, int, int, float, int]:
        return (self.problem, self.dim, self.num_clients, self.heterogeneity, self.problem_seed)


def _int(values: Mapping[str, Any], key: str, minimum: int) -> int:
    value = values[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"Run-config {key!r} = {value!r} is not allowed; expected an integer >= {minimum}."
        )
    return value


def _number(values: Mapping[str, Any], key: str, *, positive: bool) -> float:
    value = values[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        what = "a finite number > 0" if positive else "a finite number >= 0"
        raise ConfigError(f"Run-config {key!r} = {value!r} is not allowed; expected {what}.")
    return float(value)


def _string(values: Mapping[str, Any], key: str, what: str) -> str:
    value = values[key]
    if not isinstance(value, str):
        raise ConfigError(f"Run-config {key!r} = {value!r} is not allowed; expected {what}.")
    return value


def _check_objective_factory(values: Mapping[str, Any], problem: str) -> tuple[str, str]:
    """``objective-factory`` and ``objective-options``, checked for form (the factory
    checks what the options mean, on the clients): (spec, canonical options text)."""
    from fedzoo.objectives.loading import (
        CALLABLE_SPEC,
        objective_options_text,
        parse_objective_options,
    )

    spec = values["objective-factory"]
    if not isinstance(spec, str) or (spec and not CALLABLE_SPEC.match(spec)):
        raise ConfigError(
            f"Run-config 'objective-factory' = {spec!r} is not allowed; expected "
            '"package.module:function" or "" (none).'
        )
    options = parse_objective_options(values["objective-options"],
                                      what="Run-config 'objective-options'")
    if spec and problem != CUSTOM_PROBLEM:
        raise ConfigError(
            f"Run-config 'objective-factory' = {spec!r} is not allowed with problem = "
            f"{problem!r}; a factory builds the objectives of problem = {CUSTOM_PROBLEM!r}."
        )
    if options and not spec:
        raise ConfigError(
            f"Run-config 'objective-options' = {values['objective-options']!r} is not allowed "
            "without 'objective-factory' (they are the factory's keyword arguments)."
        )
    return spec, objective_options_text(options)


def _numbers(values: Mapping[str, Any], key: str, length: int, problem: str, *,
             unit_box: bool) -> tuple[float, ...] | None:
    """Run-config ``x0``/``weights``: comma-separated numbers or a JSON list in a string."""
    import json

    text = values[key]
    what = (f"{length} numbers in [0, 1] (or one for every coordinate)" if unit_box
            else f"{length} numbers >= 0 with a positive sum")
    what += ', comma-separated ("0.2,0.4") or a JSON list ("[0.2, 0.4]") in a string, or "" (default)'
    if not isinstance(text, str):
        raise ConfigError(f"Run-config {key!r} = {text!r} is not allowed; expected {what}.")
    if not text.strip():
        return None
    if problem != CUSTOM_PROBLEM:
        raise ConfigError(
            f"Run-config {key!r} = {text!r} is not allowed with problem = {problem!r} (the "
            f"problem defines it); {key!r} sets the start point and weights of problem = "
            f"{CUSTOM_PROBLEM!r}."
        )
    try:
        parsed = json.loads(text) if text.strip().startswith("[") else [
            float(part) for part in text.split(",")]
        numbers = [float(v) for v in parsed if not isinstance(v, (bool, str, list, dict))]
        if len(numbers) != len(parsed) or not parsed:
            raise ValueError("not a list of numbers")
    except (ValueError, TypeError) as err:
        raise ConfigError(f"Run-config {key!r} = {text!r} is not allowed ({err}); expected {what}.") from None
    if unit_box and len(numbers) == 1:
        numbers = numbers * length
    if len(numbers) != length:
        raise ConfigError(
            f"Run-config {key!r} = {text!r} has {len(numbers)} numbers; expected {what}.")
    arr = np.asarray(numbers)
    bad = ~np.isfinite(arr) | (arr < 0) | ((arr > 1) if unit_box else False)
    if bad.any() or (not unit_box and arr.sum() <= 0):
        where = f"{key}[{int(np.flatnonzero(bad)[0])}]" if bad.any() else "their sum"
        raise ConfigError(f"Run-config {key!r} = {text!r} is not allowed ({where} is out of "
                          f"range); expected {what}.")
    if not unit_box:
        arr = arr / arr.sum()
    return tuple(float(v) for v in arr)


def _check_limits(config: RunConfig, dim: int, num_clients: int) -> None:
    """Values each valid on its own with which the run could never work: the caps the
    in-process engine applies too (:meth:`fedzoo.config.RunConfig.check_limits`:
    ``min-replies`` above the clients asked per round, ``dim``, ``rff-features`` and the
    points a method holds at once against :data:`fedzoo.limits.MAX_ARRAY_ELEMENTS`, e.g.
    ``history-max x dim``, as a client's history travels as one array in its Flower
    state; robust aggregation with fewer than 3 clients asked)."""
    config.check_limits(dim, num_clients)


def parse_run_config(run_config: Mapping[str, Any]) -> FlowerSettings:
    """Validate a Flower run-config (missing keys take the shipped defaults).

    Every key has a rule (a test sweeps ``[tool.flwr.app.config]``): its type and range,
    and the combinations with which a run could never work (:func:`_check_limits`,
    :func:`_check_objective_factory`).

    Raises:
        ConfigError: an unknown key or a value out of range, naming both.
    """
    values = {**shipped_defaults(), **dict(run_config)}
    known = set(RunConfig.keys())
    unknown = sorted(k for k in values if k not in known and k not in FEDERATION_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"Unknown run-config key(s) {unknown}; expected RunConfig options "
            f"({', '.join(RunConfig.keys())}) or {sorted(FEDERATION_DEFAULTS)}."
        )
    config = RunConfig.from_mapping({k: v for k, v in values.items() if k in known})
    problem = values["problem"]
    if not isinstance(problem, str) or not problem:
        raise ConfigError(
            f"Run-config 'problem' = {problem!r} is not allowed; expected a problem name or 'custom'."
        )
    from fedzoo.objectives.problems import PROBLEMS

    if problem != CUSTOM_PROBLEM and problem not in PROBLEMS:
        raise ConfigError(
            f"Run-config 'problem' = {problem!r} is not allowed; expected one of "
            f"{PROBLEMS.names()} or {CUSTOM_PROBLEM!r}."
        )
    out_dir = values["out-dir"]
    if not isinstance(out_dir, str) or not out_dir:
        raise ConfigError(
            f"Run-config 'out-dir' = {out_dir!r} is not allowed; expected a directory path."
        )
    for key in ("checkpoint-dir", "client-state-dir", "tensorboard-dir"):
        if not isinstance(values[key], str):
            raise ConfigError(
                f"Run-config {key!r} = {values[key]!r} is not allowed; expected a directory "
                "path or \"\" (off)."
            )
    resume, save_points = values["resume"], values["save-points"]
    for key, flag in (("resume", resume), ("save-points", save_points),
                      ("final-evaluation", values["final-evaluation"])):
        if not isinstance(flag, bool):
            raise ConfigError(f"Run-config {key!r} = {flag!r} is not allowed; expected true or false.")
    if resume and not values["checkpoint-dir"]:
        raise ConfigError(
            "Run-config 'resume' = true needs 'checkpoint-dir', the directory of the checkpoint "
            "to resume from."
        )
    num_clients = _int(values, "num-clients", 1)
    dim = _int(values, "dim", 1)
    _check_limits(config, dim, num_clients)
    heterogeneity = _number(values, "heterogeneity", positive=False)
    problem_seed = _int(values, "problem-seed", 0)
    if problem != CUSTOM_PROBLEM:  # the synthetic problem's own limits, as make_problem's
        from fedzoo.objectives.problems import check_problem_args

        try:
            check_problem_args(num_clients, dim, heterogeneity, problem_seed)
        except ConfigError as err:
            raise ConfigError(f"Run-config {err}") from err
    factory, options = _check_objective_factory(values, problem)
    return FlowerSettings(
        config=config,
        problem=problem,
        dim=dim,
        num_clients=num_clients,
        heterogeneity=heterogeneity,
        problem_seed=problem_seed,
        out_dir=out_dir,
        node_wait_timeout=_number(values, "node-wait-timeout", positive=True),
        round_timeout=_number(values, "round-timeout", positive=True),
        checkpoint_dir=values["checkpoint-dir"],
        resume=resume,
        client_state_dir=values["client-state-dir"],
        query_budget=_int(values, "query-budget", 0),
        save_points=save_points,
        final_evaluation=values["final-evaluation"],
        objective_factory=factory,
        objective_options=options,
        tensorboard_dir=values["tensorboard-dir"],
        x0=_numbers(values, "x0", dim, problem, unit_box=True),
        weights=_numbers(values, "weights", num_clients, problem, unit_box=False),
    )


def run_identity(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The run-config without :data:`VOLATILE_KEYS`, defaults filled in (JSON-ready).

    Two runs with the same identity are the same computation (one may resume the other).
    """
    values = {**shipped_defaults(), **dict(run_config)}
    # x0/weights join the identity only when set: runs from before they existed keep theirs
    return {k: values[k] for k in sorted(values)
            if k not in VOLATILE_KEYS and not (k in ("x0", "weights") and values[k] == "")}


def run_key(run_config: Mapping[str, Any]) -> str:
    """A short stable hash of :func:`run_identity` (names client snapshot directories)."""
    import hashlib
    import json

    text = json.dumps(run_identity(run_config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def start_point(settings: FlowerSettings) -> tuple[np.ndarray, np.ndarray]:
    """(x0, weights) of the federation: the problem's, or the box centre and 1/N (custom
    objectives, from node configs or a factory; for the attack the centre is the
    unperturbed image), or the run-config's ``x0`` and ``weights``."""
    if not settings.synthetic:
        n = settings.num_clients
        x0 = np.array(settings.x0) if settings.x0 is not None else np.full(settings.dim, 0.5)
        w = np.array(settings.weights) if settings.weights is not None else np.full(n, 1.0 / n)
        return x0, w
    problem = build_problem(settings)
    return problem.x0.copy(), problem.weights.copy()


_PROBLEMS: dict[tuple[str, int, int, float, int], Any] = {}


def build_problem(settings: FlowerSettings) -> Any:
    """The registered synthetic problem of the run-config (cached per process)."""
    if not settings.synthetic:
        raise ConfigError(f"Run-config problem = {settings.problem!r} is not a synthetic problem.")
    key = settings.problem_key
    if key not in _PROBLEMS:
        from fedzoo.objectives.problems import make_problem

        _PROBLEMS[key] = make_problem(
            settings.problem,
            dim=settings.dim,
            clients=settings.num_clients,
            heterogeneity=settings.heterogeneity,
            seed=settings.problem_seed,
        )
    return _PROBLEMS[key]


def resolve_out_dir(settings: FlowerSettings) -> Path:
    return Path(settings.out_dir).expanduser().resolve()


def config_table() -> str:
    """The body of ``[tool.flwr.app.config]`` (``python -m fedzoo_server.settings`` prints it)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return f'"{v}"' if isinstance(v, str) else repr(v)

    return "".join(f"{k} = {value(v)}\n" for k, v in shipped_defaults().items())


if __name__ == "__main__":
    print(config_table(), end="")
