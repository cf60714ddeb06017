"""One small error hierarchy for the whole project.

Every error a user can trigger with bad input derives from :class:`FedZooError` and
also from the matching built-in (``ValueError``, ``KeyError``, ...), so callers can catch
either. Messages say what was wrong and what is expected.
"""

from __future__ import annotations


class FedZooError(Exception):
    """Base class of every error raised on purpose by fedzoo."""


class ConfigError(FedZooError, ValueError):
    """A configuration key has a value outside its allowed range or type."""


class ShapeError(FedZooError, ValueError):
    """An array does not have the expected shape."""


class NonFiniteError(FedZooError, ValueError):
    """An array holds NaN or Inf where finite numbers are required."""


class DomainError(FedZooError, ValueError):
    """A point lies outside the unit box [0, 1]^d."""


class BudgetExceededError(FedZooError, RuntimeError):
    """A query would exceed an objective's query budget (nothing was evaluated)."""


class ObjectiveError(FedZooError, RuntimeError):
    """A black-box objective failed or returned something unusable."""


class PayloadError(FedZooError, ValueError):
    """A message payload is malformed (missing key, wrong shape or dtype, non-finite)."""


class UnknownNameError(FedZooError, KeyError):
    """A name (method, problem, kernel, ...) is not in its registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UncountedAccessError(FedZooError, AttributeError):
    """An attribute would reach a black box without being counted (counting wrappers)."""


class MissingDependencyError(FedZooError, ImportError):
    """An optional dependency (an extra of the package) is not installed."""
