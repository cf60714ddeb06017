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

    def round_bound(self, clients: Iterable[int], replied_before: Mapping[int, int]) -> int:
        """The most queries round r can cost with these clients asked."""
        has_sync = get_method(self.config.method).has_sync
        total = 0
        for cid in clients:
            first = cid not in replied_before
            total += exchange_bound(self.config, self.dim, TRAIN, first)
            if has_sync:
                total += exchange_bound(self.config, self.dim, SYNC, False)
        return total

    def fits(self, spent: int, extra: int) -> bool:
        """``extra`` more queries (worst case) keep the run within the budget."""
        return spent + sum(self.unreported.values()) + extra <= self.budget

    def note(self, kind: str, asked: Iterable[int], accepted: Iterable[int],
             replied_before: Mapping[int, int]) -> None:
        """After an exchange: a client without an accepted reply may have spent up to its
        bound (charged with its next accepted reply, which clears it)."""
        ok = set(accepted)
        for cid in asked:
            if cid in ok:
                self.unreported.pop(cid, None)
            else:
                bound = exchange_bound(self.config, self.dim, kind, cid not in replied_before)
                self.unreported[cid] = self.unreported.get(cid, 0) + bound
