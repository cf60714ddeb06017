"""What every method's client and server keep, and the query session of one exchange.

:class:`ClientState` and :class:`ServerState` hold the parts every method shares; a
method that keeps more subclasses them in its own module (:mod:`fedzoo.methods`) and
names the subclasses in its ``client_state`` / ``server_state`` attributes. Both
serialise to flat dicts of arrays (:meth:`to_arrays`), for Flower's records, client
snapshots and checkpoints; ``from_arrays`` on the base class builds the subclass of the
run's method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fedzoo.objectives.base import Objective
from fedzoo.payload import Payload

if TYPE_CHECKING:
    from fedzoo.config import RunConfig


@dataclass
class ClientState:
    """What a client keeps between exchanges, whatever its method.

    Attributes:
        dim: the dimension d.
        cached_x / cached_value: the last global point evaluated and f_i there.
        local_x: the end point of the last local training.
        total_queries: every query this client has made in the run (sent with each reply,
            so queries behind a reply that was lost are counted with the next one).
    """

    dim: int
    cached_x: np.ndarray | None = None
    cached_value: float | None = None
    local_x: np.ndarray | None = None
    total_queries: int = 0

    @classmethod
    def new(cls, config: RunConfig, dim: int) -> ClientState:
        """The state before the first exchange (subclasses add their parts)."""
        return cls(dim)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (absent parts omitted), for Flower state or disk."""
        out: dict[str, np.ndarray] = {
            "dim": np.array([self.dim], dtype=np.float64),
            "total-queries": np.array([self.total_queries], dtype=np.int64),
        }
        for key, value in (("cached-x", self.cached_x), ("local-x", self.local_x)):
            if value is not None:
                out[key] = np.asarray(value, dtype=np.float64)
        if self.cached_value is not None:
            out["cached-value"] = np.array([self.cached_value])
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray], config: RunConfig) -> None:
        """Fill the fields :meth:`to_arrays` wrote (subclasses extend it)."""
        self.cached_x = arrays.get("cached-x")
        self.local_x = arrays.get("local-x")
        if "cached-value" in arrays:
            self.cached_value = float(arrays["cached-value"][0])
        if "total-queries" in arrays:
            self.total_queries = int(arrays["total-queries"][0])

    def known_value(self, x: np.ndarray) -> float | None:
        """f_i(x) if this client already queried x and kept the value (the cached global
        point; methods may keep more, e.g. the candidates of their last exchange)."""
        if self.cached_x is not None and self.cached_value is not None and np.array_equal(self.cached_x, x):
            return self.cached_value
        return None

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: RunConfig) -> ClientState:
        """The state :meth:`to_arrays` wrote; called on :class:`ClientState` itself, it
        builds the state class of ``config.method``."""
        if cls is ClientState:
            from fedzoo.methods import get_method

            cls = get_method(config.method).client_state
        state = cls(int(arrays["dim"][0]))
        state.load_arrays(arrays, config)
        return state


@dataclass
class ServerState:
    """The global state: x after ``round`` completed rounds.

    ``query_totals`` holds each client's latest reported running total of queries, from
    which every exchange's query count is taken (:func:`fedzoo.protocol.account_queries`).
    ``best_x`` / ``best_value`` / ``lr_scale``: the incumbent and the local learning-rate
    scale of server-side step control (:mod:`fedzoo.step_control`; unused without it).
    """

    x: np.ndarray
    round: int = 0
    query_totals: dict[int, int] = field(default_factory=dict)
    best_x: np.ndarray | None = None
    best_value: float = float("inf")
    lr_scale: float = 1.0

    @classmethod
    def new(cls, config: RunConfig, x0: np.ndarray) -> ServerState:
        return cls(x=np.asarray(x0, dtype=np.float64).copy())

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"x": self.x.copy(), "round": np.array([self.round], dtype=np.float64)}
        if self.query_totals:
            ids = sorted(self.query_totals)
            out["query-total-ids"] = np.array(ids, dtype=np.int64)
            out["query-totals"] = np.array([self.query_totals[c] for c in ids], dtype=np.int64)
        if self.best_x is not None:
            out["best-x"] = self.best_x.copy()
            out["best-value"] = np.array([self.best_value])
            out["lr-scale"] = np.array([self.lr_scale])
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Fill the method's own fields (the base fields are read by :meth:`from_arrays`)."""

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: RunConfig) -> ServerState:
        """The state :meth:`to_arrays` wrote; called on :class:`ServerState` itself, it
        builds the state class of ``config.method``."""
        if cls is ServerState:
            from fedzoo.methods import get_method

            cls = get_method(config.method).server_state
        totals = {}
        if "query-total-ids" in arrays:
            totals = {int(c): int(t) for c, t in zip(arrays["query-total-ids"], arrays["query-totals"])}
        state = cls(x=np.asarray(arrays["x"], dtype=np.float64), round=int(arrays["round"][0]),
                    query_totals=totals)
        if "best-x" in arrays:
            state.best_x = np.asarray(arrays["best-x"], dtype=np.float64)
            state.best_value = float(arrays["best-value"][0])
            state.lr_scale = float(arrays["lr-scale"][0])
        state.load_arrays(arrays)
        return state

    def next(self, round_: int | None = None) -> ServerState:
        """A copy to update (arrays shared: updates replace them, never write in place)."""
        return dataclasses.replace(self, x=self.x.copy(), round=self.round if round_ is None else round_,
                                   query_totals=dict(self.query_totals))


class Session:
    """Queries one client's objective for one exchange: counts and records them.

    Every point handed to the objective is counted in ``num_queries`` (this exchange)
    and in the state's running total; a state with a ``history`` (surrogate methods)
    records the points and values too.
    """

    def __init__(self, objective: Objective, state: ClientState) -> None:
        self.objective, self.state, self.num_queries = objective, state, 0

    def query(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(X)
        if X.shape[0] == 0:
            return np.empty(0)
        y = self.objective(X)
        self.charge(X.shape[0])
        history = getattr(self.state, "history", None)
        if history is not None:
            history.add(X, y)
        return y

    def charge(self, n: int) -> None:
        """Count ``n`` queries made by other means (e.g. an exact gradient)."""
        self.num_queries += n
        self.state.total_queries += n

    def value_at(self, x: np.ndarray) -> float:
        """f_i(x), reusing the value the state knows (:meth:`ClientState.known_value`:
        the last global point evaluated, or a point the method kept)."""
        s = self.state
        known = s.known_value(x)
        if known is not None:
            s.cached_x, s.cached_value = x.copy(), known
            return known
        value = float(self.query(x[None, :])[0])
        s.cached_x, s.cached_value = x.copy(), value
        return value

    def counts(self) -> Payload:
        """This exchange's queries and the client's running total (reply keys)."""
        return {"num-queries": self.num_queries, "total-queries": self.state.total_queries}
