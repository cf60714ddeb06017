"""Black-box objectives: the batch interface, counting, budgets, synthetic problems."""

from fedzoo.objectives.base import CallableObjective, CountingObjective, Objective, as_points
from fedzoo.objectives.problems import (
    PROBLEMS,
    FederatedProblem,
    SyntheticObjective,
    make_problem,
    problem_from_callables,
)

__all__ = [
    "PROBLEMS",
    "CallableObjective",
    "CountingObjective",
    "FederatedProblem",
    "Objective",
    "SyntheticObjective",
    "as_points",
    "make_problem",
    "problem_from_callables",
]
