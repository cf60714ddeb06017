"""How a node says that its objective cannot load, so the server can end the run at once.

A ClientApp exception reaches the ServerApp only as an error reply whose reason is text
(``"<class '...'>:<'message'>"`` from the SuperNode, a traceback in tests). The ClientApp's
``query.describe`` handler therefore raises :class:`ObjectiveLoadError`, whose one-line
message names the partition (:func:`objective_failure`); the server reads the partition
and the cause back with :func:`parse_objective_failure` and fails the run with that error
instead of waiting ``node-wait-timeout`` for a node that will never serve the partition.
"""

from __future__ import annotations

import re

from fedzoo.errors import ConfigError

_PATTERN = re.compile(r"Partition (\d+) cannot load its objective: (.*?)(?:'>)?$")


class ObjectiveLoadError(ConfigError):
    """A SuperNode's objective (node config ``objective``/``oracle``, a factory, a
    registered problem) failed to load or is invalid; the message names the partition."""


def objective_failure(pid: int, err: BaseException) -> ObjectiveLoadError:
    """The error the describe handler raises for partition ``pid`` (one line)."""
    cause = " ".join(str(err).split()) or "no message"
    name = type(err).__name__
    text = cause if isinstance(err, ConfigError) else f"{name}: {cause}"
    return ObjectiveLoadError(f"Partition {pid} cannot load its objective: {text}")


def parse_objective_failure(reason: str) -> tuple[int, str] | None:
    """(partition id, cause) from an error reply's reason, None for other errors."""
    for line in reversed([ln.strip() for ln in reason.strip().splitlines() if ln.strip()]):
        match = _PATTERN.search(line)
        if match:
            return int(match.group(1)), match.group(2).strip().rstrip(".")
    return None


_STATE_PATTERN = re.compile(r"(Partition \d+ cannot use its saved state: .*?)(?:'>)?$")


class ClientStateError(ConfigError):
    """A client's saved state (its snapshot under ``client-state-dir`` / ``state-dir``)
    is refused: damaged, of another run or partition, or missing where the server says
    the partition has state. The server ends the run with it (one line)."""


def client_state_failure(pid: int, err: BaseException) -> ClientStateError:
    """The error an exchange handler raises when partition ``pid``'s state is refused."""
    return ClientStateError(f"Partition {pid} cannot use its saved state: {' '.join(str(err).split())}")


def parse_client_state_failure(reason: str) -> str | None:
    """The one-line message of a :class:`ClientStateError` in an error reply's reason."""
    for line in reversed([ln.strip() for ln in reason.strip().splitlines() if ln.strip()]):
        match = _STATE_PATTERN.search(line)
        if match:
            return match.group(1).strip()
    return None
