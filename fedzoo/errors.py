"""One small error hierarchy for the whole project.

Every error a user can trigger with bad input derives from :class:`FedZooError` and
also from the matching built-in (``ValueError``, ``KeyError``, ...), so callers can catch
either. Messages say what was wrong and what is expected.
"""

from __future__ import annotations

from typing import Any


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


class ResultsWriteError(FedZooError, OSError):
    """A result file (history.csv, summary.json, ...) could not be written: a full disk,
    a read-only file system, a directory removed while the run went on. An ``OSError``
    too (``errno``, ``strerror`` and ``filename`` are the system's); the message says
    what failed, where, and what to do."""

    @classmethod
    def of(cls, err: OSError, path: Any) -> ResultsWriteError:
        """The error of writing ``path`` that failed with ``err``."""
        return cls(err.errno, err.strerror or str(err), str(path))

    def __str__(self) -> str:
        return os_error_text(self, action="cannot write")


#: What to do about the errors a file system gives most often (errno name -> hint).
_OS_ERROR_HINTS = {
    "ENOSPC": "the file system is full: free space on it, or choose a directory on another one",
    "EDQUOT": "the disk quota is used up: free space, or choose another directory",
    "EROFS": "the file system is read-only: choose a writable directory",
    "EACCES": "permission denied: choose a directory you can write, or change its permissions",
    "EPERM": "not permitted: choose a directory you can write, or change its permissions",
    "ENOENT": "it does not exist (or its directory was removed while the command ran)",
    "ENAMETOOLONG": "the path is too long: a name may have at most 255 bytes, a path 4096",
    "ENOTDIR": "a part of the path is a file, not a directory",
    "EISDIR": "it is a directory, where a file is expected",
    "EEXIST": "it exists already",
    "EIO": "the device reported an input/output error",
}


def short_path(path: Any, limit: int = 120) -> str:
    """``path`` as text, its middle elided when longer than ``limit`` characters (a
    message stays one readable line)."""
    text = str(path)
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...({len(text)} characters)...{text[-limit // 3:]}"


def os_error_text(err: OSError, *, action: str = "", with_path: bool = True) -> str:
    """One line on a failed file operation: ``[action] 'path': reason (errno N, NAME); hint``.

    ``action`` (e.g. "cannot write") precedes the path; the path is shortened
    (:func:`short_path`; left out with ``with_path=False``); the hint says what to do
    for the common errnos.
    """
    import errno as errno_module

    name = errno_module.errorcode.get(err.errno or 0, "")
    reason = err.strerror or (str(err.args[0]) if err.args else type(err).__name__)
    code = f" (errno {err.errno}, {name})" if err.errno else ""
    where = f"{short_path(err.filename)!r}: " if err.filename and with_path else ""
    if err.filename2 and with_path:
        where = f"{short_path(err.filename)!r} -> {short_path(err.filename2)!r}: "
    hint = _OS_ERROR_HINTS.get(name)
    return f"{action + ' ' if action else ''}{where}{reason}{code}" + (f"; {hint}." if hint else ".")
