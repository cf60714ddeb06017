"""The round driver: one loop for every transport (threads in-process, Flower's Grid).

A round r (docs/design.md §2) is, whatever carries the messages:

1. sample the clients of the round (:func:`fedzoo.protocol.sample_clients`);
2. **train**: send ``train_message``, aggregate the replies (server step, the method's
   combination of its fields, query accounting); the replies' ``value-start`` report
   F(x_{r-1}) for the previous row;
3. **sync** (methods with ``has_sync``): send ``sync_message``, aggregate; its values
   report F(x_r) for this round's row;
4. append the history row (queries, bytes, participants, per-client queries), write
   the checkpoint when asked, log, call ``on_round``; stop early when ``on_round``
   says so. With a query budget the driver never starts a round that could pass it
   (:mod:`fedzoo.budget`: the methods' declared per-exchange bounds), so a run ends
   with at most ``query_budget`` queries, every one counted.

A round in which fewer than ``min-replies`` clients could work (no valid train reply,
with the default) is a **failed** round: its history row says so (``status``), and so
does the run's ``summary.json``; what single clients lacked (rejected or missing
replies, a dropped correction) goes to the row's ``notes``.

After the last round, a single-exchange method's F(x_R) is unknown: the **evaluate**
exchange asks every client for f_i(x_R) (N counted queries), charged to the last row.

The driver never reads F: it sees only what the clients reply. A :class:`Transport`
moves one message to a list of clients and returns their replies (missing or failed
ones left out) and the payload bytes each way; :mod:`fedzoo.engine` implements it with
threads, :mod:`fedzoo_server.app` with Flower messages. Both therefore run this same loop, and
the same seed gives the same history (``wall_s`` aside).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fedzoo import protocol
from fedzoo.budget import QueryBudget
from fedzoo.checkpoint import Checkpoint, save_checkpoint
from fedzoo.config import RunConfig
from fedzoo.methods import get_method
from fedzoo.payload import Payload
from fedzoo.results import ROUND_FAILED, ROUND_OK, HistoryRecorder
from fedzoo.state import ServerState

log = logging.getLogger(__name__)

TRAIN, SYNC, EVALUATE = "train", "sync", "evaluate"

#: Called after every round with (round, server state, history row); True stops the run.
RoundHook = Callable[[int, ServerState, dict[str, Any]], "bool | None"]


class Transport(Protocol):
    """Carries one exchange to clients and brings back their replies."""

    def exchange(
        self, kind: str, message: Payload, round_: int, clients: list[int]
    ) -> tuple[dict[int, Any], int, int]:
        """Send ``message`` (exchange ``kind``: train, sync or evaluate) to ``clients``.

        Returns the replies by client id (clients without a usable reply left out), the
        bytes sent down (message size x clients addressed) and up (replies).
        """
        ...

    def before_round(self, round_: int, first: bool) -> None:
        """Called before each round (e.g. to admit nodes that reconnected)."""
        ...

    def client_arrays(self) -> list[dict[str, np.ndarray]]:
        """The clients' states for a checkpoint (empty where the clients keep their own)."""
        ...


@dataclass
class RoundDriver:
    """Runs rounds of ``config.method`` over a transport and records the history.

    Attributes:
        config: the validated run configuration.
        transport: moves the messages.
        weights: client weights p_i by client id.
        recorder: the history rows (row 0 written by the caller, or restored rows).
        server: the server state after the rows recorded so far.
        on_round: see :data:`RoundHook`.
        query_budget: a hard limit on the cumulative queries (0: no budget): a round
            (and the final evaluation) starts only if its worst case fits
            (:class:`fedzoo.budget.QueryBudget`).
        reserve_evaluation: keep N queries of the budget for a final evaluation that the
            caller runs after :meth:`run` (None: when ``run`` is asked to evaluate).
        checkpoint_dir / checkpoint_meta: write an atomic checkpoint after every round,
            identified by ``checkpoint_meta`` (plus ``rounds``) and the run's ``run_id``.
    """

    config: RunConfig
    transport: Transport
    weights: Mapping[int, float]
    recorder: HistoryRecorder
    server: ServerState
    on_round: RoundHook | None = None
    query_budget: int = 0
    checkpoint_dir: str | Path | None = None
    checkpoint_meta: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    reserve_evaluation: bool | None = None
    _budget: QueryBudget | None = field(default=None, init=False, repr=False)

    @property
    def num_clients(self) -> int:
        return len(self.weights)

    def run_round(self, r: int, first: bool = False) -> dict[str, Any]:
        """Round r: train (and sync), aggregation, the history row; returns the row."""
        config, rec = self.config, self.recorder
        t0 = time.perf_counter()
        self.transport.before_round(r, first)
        clients = protocol.sample_clients(config, r, sorted(self.weights))
        msg = protocol.train_message(config, self.server)
        before = dict(self.server.query_totals)
        replies, down, up = self.transport.exchange(TRAIN, msg, r, clients)
        self.server, agg = protocol.aggregate_train(config, self.server, replies, self.weights)
        if self._budget is not None:
            self._budget.note(TRAIN, clients, agg.replies, before, agg.counted)
        queries = agg.num_queries
        if agg.replies:
            rec.report(r - 1, agg.weighted("value-start"))
        sagg = None
        if get_method(config.method).has_sync:
            smsg = protocol.sync_message(config, self.server)
            sreplies, sdown, sup = self.transport.exchange(SYNC, smsg, r, clients)
            self.server, sagg = protocol.aggregate_sync(config, self.server, sreplies, self.weights)
            if self._budget is not None:
                self._budget.note(SYNC, clients, sagg.replies, self.server.query_totals, sagg.counted)
            down, up, queries = down + sdown, up + sup, queries + sagg.num_queries
        failed = len(agg.replies) < config.min_replies
        notes = exchange_notes(TRAIN, clients, replies, agg)
        if sagg is not None:
            notes += exchange_notes(SYNC, clients, sreplies, sagg)
        row = rec.end_round(r, self.server.x, queries, up, down, time.perf_counter() - t0, agg.replies,
                            protocol.client_query_counts(agg, sagg),
                            status=ROUND_FAILED if failed else ROUND_OK, notes=";".join(notes))
        if failed:
            log.warning("round %d failed: %d valid train repl(ies) from the %d client(s) asked, "
                        "fewer than min-replies = %d; the global state did not move [%s]",
                        r, len(agg.replies), len(clients), config.min_replies, row["notes"])
        if sagg is not None and sagg.replies:
            rec.report(r, sagg.reported())
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, Checkpoint(
                r, self.server.to_arrays(), self.transport.client_arrays(), rec.rows,
                {**self.checkpoint_meta, "rounds": config.rounds}, self.run_id))
        log.info(
            "round %d/%d: %s queries=%d clients=%d/%d [%s] (%.2fs)",
            r, config.rounds, value_text(rec.rows), row["queries"], row["clients"],
            len(clients), row["participants"], row["wall_s"],
        )
        raise_if_all_failed(TRAIN, r, clients, agg)
        if sagg is not None:
            raise_if_all_failed(SYNC, r, clients, sagg)
        return row

    def run(self, first: int = 1, *, final_evaluation: bool = True) -> ServerState:
        """Rounds ``first`` .. ``config.rounds`` (or until stopped), then, if asked and
        the last row has no reported value, the final evaluation."""
        if self.query_budget:
            self._budget = QueryBudget(self.query_budget, self.config, self.server.x.size)
        reserve = final_evaluation if self.reserve_evaluation is None else self.reserve_evaluation
        if reserve and get_method(self.config.method).has_sync:
            reserve = False  # the sync exchange reports F(x_R): no evaluation follows
        for r in range(first, self.config.rounds + 1):
            if not self._round_fits(r, reserve):
                break
            row = self.run_round(r, first=r == first)
            stop = self.on_round is not None and bool(self.on_round(r, self.server, row))
            if self.query_budget and row["queries"] >= self.query_budget:
                log.info("query budget %d reached after round %d", self.query_budget, r)
                stop = True
            if stop:
                break
        if final_evaluation and math.isnan(self.recorder.rows[-1]["reported_value"]):
            self.evaluate_final()
        return self.server

    def _round_fits(self, r: int, reserve: bool) -> bool:
        """Round r's worst case (plus N for a final evaluation) fits the budget."""
        if self._budget is None:
            return True
        clients = protocol.sample_clients(self.config, r, sorted(self.weights))
        extra = self._budget.round_bound(clients, self.server.query_totals)
        if reserve:
            extra += self.num_clients
        spent = int(self.recorder.rows[-1]["queries"])
        if self._budget.fits(spent, extra):
            return True
        log.info("query budget %d: stopping before round %d (%d spent, up to %d more)",
                 self.query_budget, r, spent, extra)
        return False

    def evaluate_final(self) -> None:
        """f_i(x_R) from every client, charged to the last row (N counted queries); skipped
        when it could pass the query budget."""
        rec = self.recorder
        if self.query_budget:
            budget = self._budget or QueryBudget(self.query_budget, self.config, self.server.x.size)
            if not budget.fits(int(rec.rows[-1]["queries"]), self.num_clients):
                log.warning("query budget %d: no final evaluation (it could pass the budget)",
                            self.query_budget)
                return
        t0 = time.perf_counter()
        last = rec.rows[-1]["round"]
        self.transport.before_round(last, False)
        replies, down, up = self.transport.exchange(
            EVALUATE, protocol.evaluate_message(self.server), last, sorted(self.weights)
        )
        self.server, agg = protocol.aggregate_evaluate(self.config, self.server, replies, self.weights)
        rec.add_to_last(agg.num_queries, up, down, time.perf_counter() - t0, agg.queries_by_client)
        rec.note_last(";".join(exchange_notes(EVALUATE, sorted(self.weights), replies, agg)))
        if agg.moved_to is not None:  # step control: the run returns the incumbent
            rec.move_last(self.server.x)
        if agg.replies:
            rec.report(last, agg.reported())
        raise_if_all_failed(EVALUATE, last, sorted(self.weights), agg)


def raise_if_all_failed(kind: str, round_: int, asked: list[int], agg: protocol.Aggregate) -> None:
    """End the run when every client asked failed in an exchange (their exchanges raised:
    :class:`~fedzoo.protocol.FailedReply`, ``on-client-error = skip``), after the round
    was recorded with their queries: nothing could work, and another round would only
    repeat it."""
    if asked and len(agg.failed) == len(asked):
        from fedzoo.errors import ObjectiveError

        first = agg.failed[min(agg.failed)]
        raise ObjectiveError(f"every client asked failed in the {kind} exchange of round {round_} "
                             f"(on-client-error = skip leaves out single clients, not all); the "
                             f"first: {first}")


def exchange_notes(kind: str, asked: list[int], replies: Mapping[int, Any],
                   agg: protocol.Aggregate) -> list[str]:
    """History notes of one exchange: ``<kind>-rejected=ids`` (replies that failed
    validation), ``<kind>-failed=ids`` (clients whose exchange raised, left out with
    ``on-client-error = skip``), ``<kind>-missing=ids`` (asked, no reply),
    ``<kind>-refused-queries=id:n,...`` (queries charged behind rejected or failed
    replies: counted, not aggregated) and, for train, ``correction-dropped=ids``
    (clients that stepped without the global correction)."""
    notes = []
    missing = sorted(set(asked) - set(replies))
    for what, ids in (("rejected", sorted(agg.rejected)), ("failed", sorted(agg.failed)),
                      ("missing", missing)):
        if ids:
            notes.append(f"{kind}-{what}=" + ",".join(map(str, ids)))
    refused = {c: n for c, n in sorted(agg.refused_queries.items()) if n}
    if refused:
        notes.append(f"{kind}-refused-queries=" + ",".join(f"{c}:{n}" for c, n in refused.items()))
    dropped = sorted(c for c, reply in agg.replies.items() if reply.get(protocol.CORRECTION_DROPPED))
    if dropped:
        notes.append("correction-dropped=" + ",".join(map(str, dropped)))
    return notes


def value_text(rows: list[dict[str, Any]]) -> str:
    """The last row's values for the log: ``value=... reported=...``; where the value is
    not known yet (a single-exchange method learns F(x_r) in the next round), say so
    and show the previous round's reported value."""
    row = rows[-1]
    value, reported = float(row["value"]), float(row["reported_value"])
    if math.isfinite(value):
        return f"value={value:.6g} reported=" + (f"{reported:.6g}" if math.isfinite(reported)
                                                 else "not-yet")
    prev = float(rows[-2]["reported_value"]) if len(rows) > 1 else math.nan
    before = f" (round {rows[-2]['round']}: {prev:.6g})" if math.isfinite(prev) else ""
    return f"value not reported yet{before}"


def restore(ckpt: Checkpoint, config: RunConfig, recorder: HistoryRecorder) -> tuple[ServerState, int]:
    """The server state and rows of a checkpoint; returns (state, rounds done)."""
    recorder.rows = ckpt.rows
    return ServerState.from_arrays(ckpt.server, config), ckpt.round
