"""A hard query budget: the round driver never starts an exchange that could pass it.

Every method declares :meth:`~fedzoo.methods.base.Method.query_bound`, the most queries
one client may make in one exchange. Before round r the driver (:mod:`fedzoo.rounds`)
asks :meth:`QueryBudget.fits` whether

    spent + unreported + Σ_{i asked in round r} (train bound_i [+ sync bound_i])
          [+ N, when a final evaluation will follow]  <=  budget,

and stops before the round otherwise; the final evaluation (one query per client) is
skipped, never overrun, when it no longer fits. ``spent`` is the queries charged so far
(the clients' own counts, :func:`fedzoo.protocol.account_queries`); ``unreported`` is
the bound of every exchange whose reply was lost or rejected, kept until the client's
next accepted reply charges those queries, so a lost reply cannot hide spending.

So a run with a budget ends with at most ``budget`` queries, every one counted; it may
end below it (the next round could not be proved to fit). The same rule runs in process
and over Flower (one driver).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError
from fedzoo.methods import get_method

log = logging.getLogger(__name__)

TRAIN, SYNC = "train", "sync"


def exchange_bound(config: RunConfig, dim: int, kind: str, first: bool) -> int:
    """The method's bound for one client and one exchange (``evaluate``: 1).

    Raises:
        ConfigError: the method declares no bound (a budget cannot be guaranteed).
    """
    if kind == "evaluate":
        return 1
    bound = get_method(config.method).query_bound(config, dim, kind, first)
    if bound is None:
        raise ConfigError(
            f"Method {config.method!r} declares no query bound (Method.query_bound), so a run "
            "with a query budget cannot be kept within it; run it without a budget."
        )
    return int(bound)


@dataclass
class QueryBudget:
    """The stop rule of a run with ``budget`` queries (see the module doc)."""

    budget: int
    config: RunConfig
    dim: int
    unreported: dict[int, int] = field(default_factory=dict)
    #: clients counted only through refused replies so far: their first-exchange bound
    #: (an initial design) may still be due (a failed exchange keeps the state before it)
    never_accepted: set[int] = field(default_factory=set)

    def round_bound(self, clients: Iterable[int], replied_before: Mapping[int, int]) -> int:
        """The most queries round r can cost with these clients asked."""
        has_sync = get_method(self.config.method).has_sync
        total = 0
        for cid in clients:
            first = cid not in replied_before or cid in self.never_accepted
            total += exchange_bound(self.config, self.dim, TRAIN, first)
            if has_sync:
                total += exchange_bound(self.config, self.dim, SYNC, False)
        return total

    def fits(self, spent: int, extra: int) -> bool:
        """``extra`` more queries (worst case) keep the run within the budget."""
        return spent + sum(self.unreported.values()) + extra <= self.budget

    def note(self, kind: str, asked: Iterable[int], accepted: Iterable[int],
             replied_before: Mapping[int, int], counted: Iterable[int] = ()) -> None:
        """After an exchange: a client without an accepted reply may have spent up to its
        bound (charged with its next accepted reply, which clears it), unless the counts
        of its refused reply were charged (``counted``)."""
        ok, known = set(accepted), set(counted)
        for cid in asked:
            if cid in ok:
                self.unreported.pop(cid, None)
                self.never_accepted.discard(cid)
            elif cid in known:
                self.unreported.pop(cid, None)
                if cid not in replied_before:
                    self.never_accepted.add(cid)
            else:
                bound = exchange_bound(self.config, self.dim, kind,
                                       cid not in replied_before or cid in self.never_accepted)
                self.unreported[cid] = self.unreported.get(cid, 0) + bound


def rounds_for_budget(config: RunConfig, dim: int, num_clients: int, budget: int,
                      final_evaluation: bool = True) -> int:
    """The rounds a run with ``budget`` queries is set up for when no ``rounds`` is given:
    as many as fit with every round at its declared bound (the stop rule's bounds, the
    first round's initial designs and a final evaluation included), less the query at
    x_{r-1} after round 1 when every client takes part in every round (the client knows
    that value: it queried the point the server moved to), at least 1 and at most
    :data:`fedzoo.limits.MAX_ROUNDS`.

    Methods whose schedules span the run (e.g. fedsquare's square sizes) span these
    rounds. The budget stays the binding limit: the run may stop earlier, never later
    (:class:`QueryBudget`), and it ends within it whatever the rounds.

    Raises:
        ConfigError: the budget cannot pay for one round (and its final evaluation).
    """
    from fedzoo.limits import MAX_ROUNDS

    has_sync = get_method(config.method).has_sync
    clients = max(1, math.ceil(config.fraction * num_clients))
    # after round 1, with every client asked every round, f_i(x_{r-1}) is known to the
    # client (it queried the point the server moved to): one query less than the bound
    cached = 1 if clients == num_clients else 0

    def round_cost(first: bool) -> int:
        cost = exchange_bound(config, dim, TRAIN, first) - (0 if first else cached)
        if has_sync:
            cost += exchange_bound(config, dim, SYNC, False)
        return max(cost, 1) * clients

    reserve = num_clients if final_evaluation and not has_sync else 0
    first, later = round_cost(True), round_cost(False)
    if budget < first + reserve:
        raise ConfigError(
            f"A query budget of {budget} cannot pay for one round of {config.method!r} on "
            f"{num_clients} client(s) in dimension {dim}: the first round may cost up to "
            f"{first + reserve} queries (every client's initial exchange"
            + (", plus one final evaluation per client" if reserve else "")
            + f"); expected a budget of at least {first + reserve}.")
    return int(min(MAX_ROUNDS, 1 + (budget - first - reserve) // max(later, 1)))


def rounds_for_exchanges(config: RunConfig, max_exchanges: int, final_evaluation: bool = True) -> int:
    """The most rounds that fit in ``max_exchanges`` exchanges (server -> clients ->
    server message rounds: one per round, two with a sync exchange, and one for the final
    evaluation of a single-exchange method), for deployments where messages, not queries,
    are the cost.

    Raises:
        ConfigError: not even one round fits.
    """
    has_sync = get_method(config.method).has_sync
    per_round = 2 if has_sync else 1
    reserve = 1 if final_evaluation and not has_sync else 0
    rounds = (int(max_exchanges) - reserve) // per_round
    if rounds < 1:
        raise ConfigError(
            f"max-exchanges = {max_exchanges} cannot pay for one round of {config.method!r}: a round "
            f"takes {per_round} exchange(s)" + (" and the final evaluation one more" if reserve else "")
            + f"; expected at least {per_round + reserve}.")
    return rounds
