"""Which black box a Flower client queries: from its node config and the run-config.

Three sources, chosen per node (first match wins):

1. ``node_config["oracle"] = "host:port"`` — a remote black box served by
   ``fedzoo oracle serve`` / ``python -m fedzoo_oracle.cli serve`` (gRPC, see
   :mod:`fedzoo_oracle.client`); TLS when ``node_config["oracle-root-cert"]`` names a PEM file.
   gRPC is imported only here.
2. ``node_config["objective"] = "package.module:function"`` — a Python callable
   ``f(X) -> y`` (X: n x d in the unit box, y: n values) imported with :mod:`importlib`
   (never evaluated as code) and wrapped in :class:`~fedzoo.objectives.base.CallableObjective`
   with the run-config ``dim``.
3. otherwise the run-config ``problem``: a registered synthetic problem built with
   ``dim``, ``num-clients``, ``heterogeneity`` and ``problem-seed`` (objective number
   ``partition-id``), or, with ``problem = "custom"``, the run-config's
   ``objective-factory`` called as ``factory(partition_id=, num_clients=,
   **objective-options)`` (:func:`fedzoo.objectives.loading.objective_from_factory`;
   e.g. the attack, ``fedzoo_attack.federation:objective_factory``: that client's CNN
   margin on the image the options name).

Node-config keys: :data:`NODE_CONFIG_KEYS` (any other key is refused, naming the allowed
ones); ``oracle-timeout`` is the deadline of each try of a remote call in seconds (finite,
> 0; default 30).

``partition-id`` (node config, an integer in [0, num-clients)) is required in every case:
it is the client id that seeds the client's randomness, so a deployment reproduces the
in-process engine. Objectives are cached per process (a simulation runs many virtual
clients in one process; a deployed SuperNode starts a fresh process per message).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from typing import Any

from fedzoo.errors import ConfigError
from fedzoo.objectives.base import CallableObjective, Objective
from fedzoo.objectives.loading import load_callable as _load_callable
from fedzoo.objectives.loading import objective_from_factory
from fedzoo_server.settings import CUSTOM_PROBLEM, FlowerSettings, build_problem

PARTITION_ID = "partition-id"
OBJECTIVE = "objective"
ORACLE = "oracle"
ORACLE_ROOT_CERT = "oracle-root-cert"
ORACLE_TIMEOUT = "oracle-timeout"
STATE_DIR = "state-dir"  # see fedzoo_client.persistence
NUM_PARTITIONS = "num-partitions"  # set by Flower's simulation engine (not used here)

#: Every node-config key a fedzoo client reads, plus the ones Flower's simulation engine
#: puts there itself (``partition-id``, ``num-partitions``). Any other key is refused:
#: a typo (``state_dir``) would otherwise be ignored silently.
NODE_CONFIG_KEYS = (PARTITION_ID, NUM_PARTITIONS, OBJECTIVE, ORACLE, ORACLE_ROOT_CERT,
                    ORACLE_TIMEOUT, STATE_DIR)
DEFAULT_ORACLE_TIMEOUT_S = 30.0

_ADDRESS = re.compile(r"^[\w.\-\[\]:]+:\d{1,5}$")
_CACHE: dict[tuple[Any, ...], Objective] = {}
_LOCK = threading.Lock()


def check_node_config(node_config: Mapping[str, Any]) -> None:
    """Refuse unknown node-config keys and a malformed ``oracle-timeout``.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    unknown = sorted(k for k in node_config if k not in NODE_CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"Unknown node-config key(s) {unknown}; expected some of {list(NODE_CONFIG_KEYS)} "
            "(--node-config \"partition-id=0 state-dir='/var/lib/fedzoo'\")."
        )
    oracle_timeout(node_config)
    parts = node_config.get(NUM_PARTITIONS)
    if parts is not None and (isinstance(parts, bool) or not isinstance(parts, int) or parts < 1):
        raise ConfigError(
            f"Node config 'num-partitions' = {parts!r} is not allowed; expected an integer >= 1."
        )


def oracle_timeout(node_config: Mapping[str, Any]) -> float:
    """The node config's ``oracle-timeout`` in seconds (default 30): finite and > 0."""
    value = node_config.get(ORACLE_TIMEOUT, DEFAULT_ORACLE_TIMEOUT_S)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"Node config 'oracle-timeout' = {value!r} is not allowed; expected a finite number "
            "of seconds > 0 (the deadline of each try of a remote oracle call)."
        )
    return float(value)


def partition_id(node_config: Mapping[str, Any], settings: FlowerSettings) -> int:
    """The node's partition id, checked against ``num-clients``, after the whole node
    config is checked (:func:`check_node_config`; every handler asks for it first)."""
    check_node_config(node_config)
    if PARTITION_ID not in node_config:
        raise ConfigError(
            "The node config has no 'partition-id'; start the SuperNode with "
            "--node-config 'partition-id=<0..num-clients-1>'."
        )
    pid = node_config[PARTITION_ID]
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < settings.num_clients:
        raise ConfigError(
            f"Node config 'partition-id' = {pid!r} is not allowed; expected an integer in "
            f"[0, {settings.num_clients - 1}] (run-config num-clients = {settings.num_clients})."
        )
    return pid


def objective_kind(node_config: Mapping[str, Any]) -> str:
    """``oracle``, ``callable`` or ``problem``: where this node's objective comes from."""
    if ORACLE in node_config and OBJECTIVE in node_config:
        raise ConfigError("The node config names both 'oracle' and 'objective'; give one.")
    if ORACLE in node_config:
        return "oracle"
    if OBJECTIVE in node_config:
        return "callable"
    return "problem"


def load_callable(spec: Any) -> Any:
    """Import the node config's ``objective = "package.module:function"``."""
    return _load_callable(spec, what="Node config 'objective'")


def _remote(node_config: Mapping[str, Any]) -> Objective:
    address = node_config[ORACLE]
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ConfigError(
            f"Node config 'oracle' = {address!r} is not allowed; expected 'host:port'."
        )
    root_cert = node_config.get(ORACLE_ROOT_CERT)
    if root_cert is not None and not isinstance(root_cert, str):
        raise ConfigError(
            f"Node config 'oracle-root-cert' = {root_cert!r} must be the path of a PEM file."
        )
    timeout = oracle_timeout(node_config)
    from fedzoo_oracle.client import RemoteOracle  # imports grpc: only for remote objectives

    return RemoteOracle(address, root_certificates=root_cert or None, timeout_s=timeout)


def load_objective(settings: FlowerSettings, node_config: Mapping[str, Any], pid: int) -> Objective:
    """This node's objective (cached per process), with its dimension checked.

    Raises:
        ConfigError: a malformed node config or an objective of the wrong dimension.
        ObjectiveError: the remote oracle cannot be reached.
    """
    kind = objective_kind(node_config)
    if kind == "oracle":
        key: tuple[Any, ...] = (kind, node_config[ORACLE], node_config.get(ORACLE_ROOT_CERT))
    elif kind == "callable":
        key = (kind, node_config[OBJECTIVE], settings.dim)
    else:
        key = (kind, *settings.problem_key, settings.objective_factory,
               settings.objective_options, pid)
    with _LOCK:
        objective = _CACHE.get(key)
        if objective is None:
            if kind == "oracle":
                objective = _remote(node_config)
            elif kind == "callable":
                spec = node_config[OBJECTIVE]
                objective = CallableObjective(load_callable(spec), settings.dim, name=str(spec))
            elif settings.problem == CUSTOM_PROBLEM and settings.objective_factory:
                objective = objective_from_factory(
                    settings.objective_factory, settings.objective_kwargs, partition_id=pid,
                    num_clients=settings.num_clients, dim=settings.dim,
                    what="Run-config 'objective-factory'",
                )
            elif settings.problem == CUSTOM_PROBLEM:
                raise ConfigError(
                    "Run-config problem = 'custom' needs an 'objective-factory' or every node "
                    "to name its objective: node config 'objective' (module:function) or "
                    "'oracle' (host:port)."
                )
            else:
                objective = build_problem(settings).objectives[pid]
            _CACHE[key] = objective
    if objective.dim != settings.dim:
        raise ConfigError(
            f"The {kind} objective {objective.name!r} has dimension {objective.dim}; the run-config "
            f"says dim = {settings.dim}."
        )
    return objective
