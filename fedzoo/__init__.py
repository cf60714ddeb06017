"""fedzoo: federated zeroth-order optimisation (FZooS and baselines).

``import fedzoo`` loads numpy and scipy only; Flower, gRPC and torch live in optional
modules imported where they are used. The public names below are resolved lazily so that
entry points can configure the process (e.g. BLAS threads) before numpy is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "minimize": "fedzoo.api",
    "compare": "fedzoo.comparison",
    "Comparison": "fedzoo.comparison",
    "METHODS": "fedzoo.config",
    "RunConfig": "fedzoo.config",
    "RunResult": "fedzoo.engine",
    "run_federation": "fedzoo.engine",
    "FedZooError": "fedzoo.errors",
    "CallableObjective": "fedzoo.objectives",
    "FederatedProblem": "fedzoo.objectives",
    "Objective": "fedzoo.objectives",
    "make_problem": "fedzoo.objectives",
    "problem_from_callables": "fedzoo.objectives",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fedzoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
