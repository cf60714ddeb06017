"""The fedzoo Flower ClientApp: decode, call :mod:`fedzoo.protocol`, encode.

Message types (the ServerApp in ``fedzoo_server/app.py`` sends them):

* ``query.describe`` — before round 1: reply ``{partition-id, dim, objective-kind,
  fedzoo-version}`` (transport metadata; no query). The server maps node ids to
  partition ids with it.
* ``train`` — :func:`fedzoo.protocol.client_train`.
* ``query.sync`` — :func:`fedzoo.protocol.client_sync` (fzoos, scaffold1).
* ``query.evaluate`` — :func:`fedzoo.protocol.client_evaluate`.

Every reply carries the protocol payload (``fedzoo.arrays`` / ``fedzoo.scalars``, see
:mod:`fedzoo_server.records`) and the sender's ``partition-id`` in ``fedzoo.meta``, which the
server cross-checks against the mapping from ``query.describe``.

The client's :class:`~fedzoo.protocol.ClientState` lives in ``context.state`` as the
ArrayRecord ``fedzoo.client-state`` (``state.to_arrays()``); it is written back when a
handler succeeds. A failed exchange leaves the stored state as it was except the running
total of queries, which counts the queries the failed exchange made (so the server
charges them with the client's next accepted reply; :func:`handle`). When the node
config names ``state-dir`` (or the run-config ``client-state-dir``), the state is also
kept on disk (:mod:`fedzoo_client.persistence`) and read from there before every exchange, so
it survives a SuperNode restart and carries over into a run that resumes this one. Any
exception (a failing objective, an invalid message) becomes an error reply, which the
server logs and skips. Which objective a node queries is described in
:mod:`fedzoo_client.objectives`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedzoo import __version__, protocol
from fedzoo._malloc import retain_freed_memory
from fedzoo._threads import blas_threads
from fedzoo.errors import ConfigError
from fedzoo_client.objectives import STATE_DIR, load_objective, objective_kind, partition_id
from fedzoo_client.persistence import SnapshotError, StateStore, phase_of
from fedzoo_server.failures import client_state_failure, objective_failure
from fedzoo_server.records import (
    EVALUATE,
    STATE_KEY,
    arrays_to_record,
    content_meta,
    content_to_payload,
    payload_to_content,
    record_to_arrays,
)
from fedzoo_server.settings import FlowerSettings, parse_run_config, run_key

app = ClientApp()
log = logging.getLogger(__name__)

_SETTINGS: dict[tuple[tuple[str, Any], ...], FlowerSettings] = {}


def settings_of(context: Context) -> FlowerSettings:
    """The validated run-config of this run (parsed once per process and run-config)."""
    key = tuple(sorted(context.run_config.items()))
    if key not in _SETTINGS:
        _SETTINGS[key] = parse_run_config(context.run_config)
    return _SETTINGS[key]


def load_state(context: Context, settings: FlowerSettings) -> protocol.ClientState:
    """This node's state from ``context.state`` (a fresh one before the first exchange)."""
    if STATE_KEY in context.state:
        arrays = record_to_arrays(context.state[STATE_KEY], source="client state")
        return protocol.ClientState.from_arrays(arrays, settings.config)
    return protocol.new_client_state(settings.config, settings.dim)


def save_state(context: Context, state: protocol.ClientState) -> None:
    context.state[STATE_KEY] = arrays_to_record(state.to_arrays())


ClientFn = Callable[..., tuple[protocol.ClientState, dict[str, Any]]]


def state_store(context: Context, settings: FlowerSettings, pid: int,
                run_id: str | None = None) -> StateStore | None:
    """The node's on-disk state (node config ``state-dir``, else ``client-state-dir``) for
    the run ``run_id`` (the id the ServerApp sends; snapshots of other runs are refused)."""
    root = context.node_config.get(STATE_DIR, settings.client_state_dir)
    if root in ("", None):
        return None
    if not isinstance(root, str):
        raise ConfigError(
            f"Node config 'state-dir' = {root!r} is not allowed; expected a directory path."
        )
    return StateStore(root, run_key(context.run_config), pid, run_id)


def exchange_tag(msg: Message) -> tuple[int, int]:
    """(round, phase) of an exchange: the round is the message's group id."""
    group = msg.metadata.group_id
    if not str(group).isdigit():
        raise ConfigError(
            f"Message group id {group!r} is not a round number; expected the ServerApp's "
            "str(round)."
        )
    return int(group), phase_of(msg.metadata.message_type)


def _load_from_store(
    store: StateStore, tag: tuple[int, int], settings: FlowerSettings, expect_state: bool = False
) -> protocol.ClientState:
    """The state before the exchange ``tag``: the latest snapshot tagged before it,
    checked against the run's configuration (:mod:`fedzoo.statespec`) before and after
    decoding; none: a fresh state, unless ``expect_state`` (the server knows this
    partition's queries: it has answered before). Without ``expect_state`` a latest
    snapshot of another run is a leftover of a reused directory and counts as none.

    Raises:
        ClientStateError: the snapshot is refused, or missing though expected (one line).
    """
    from fedzoo.statespec import Bounds, check_declared, check_round_trip, check_values

    pid = store.partition
    bounds = Bounds.of(settings.config, settings.dim, settings.num_clients, tag[0])
    try:
        found = store.load_before(tag, check=lambda declared: check_declared(declared, "client", bounds),
                                  foreign_is_none=not expect_state)
    except SnapshotError as err:
        raise client_state_failure(pid, err) from err
    if found is None:
        if expect_state:
            raise client_state_failure(pid, SnapshotError(
                f"no snapshot before round {tag[0]} in {store.directory}, though it has answered "
                "before (deleted or moved client state: restore it, or start the run again)"))
        return protocol.new_client_state(settings.config, settings.dim)
    try:
        check_values(found[1], "client", bounds)
        state = protocol.ClientState.from_arrays(found[1], settings.config)
        check_round_trip(state, found[1], "client")
    except Exception as err:  # noqa: BLE001 - any failure to build the state is a refusal
        raise client_state_failure(pid, SnapshotError(
            f"The client snapshot {store.path(found[0])} is refused: {type(err).__name__}: {err}")) from err
    return state


def check_saved_states(run_config: Mapping[str, Any], ckpt: Any) -> None:
    """Before a Flower run resumes ``ckpt`` (a :class:`fedzoo.checkpoint.Checkpoint`):
    every partition's snapshot under the run-config's ``client-state-dir`` is the one
    its client will load (:func:`_load_from_store`: this run's, this partition's, within
    the run's bounds), and a partition the checkpoint knows to have answered has one.
    What the clients would refuse mid-run is refused here, in one line, before Flower starts.

    Raises:
        ClientStateError: naming the partition, the file and what is wrong.
    """
    settings = parse_run_config(run_config)
    if not settings.client_state_dir:
        return
    answered = {int(c) for c in np.asarray(ckpt.server.get("query-total-ids", [])).tolist()}
    key = run_key(run_config)
    for pid in range(settings.num_clients):
        store = StateStore(settings.client_state_dir, key, pid, ckpt.run_id, create=False)
        _load_from_store(store, (ckpt.round + 1, 0), settings, pid in answered)


def _persist(
    context: Context,
    store: StateStore | None,
    tag: tuple[int, int] | None,
    state: protocol.ClientState,
) -> None:
    """Keep ``state`` as the state after the exchange ``tag`` (context, or disk)."""
    if store is None:
        save_state(context, state)
    elif tag is not None and tag[1] != phase_of(EVALUATE):  # the disk copy is the state
        # The final evaluation is outside the rounds (the server checkpoints before it):
        # a run that extends this one continues from the state after the last round.
        store.save(tag, state.to_arrays())


def _count_failed_exchange(
    context: Context,
    store: StateStore | None,
    tag: tuple[int, int] | None,
    settings: FlowerSettings,
    queries: int,
) -> None:
    """After a failed exchange: keep the state from before it, with only its running
    total of queries raised by the ``queries`` the exchange made.

    The failed exchange's half-updated state (history, corrections) is dropped; its
    queries are not, so the server charges them with this client's next accepted reply
    (running totals). On disk the count is kept as the snapshot of the failed exchange's
    own tag, which the next exchange loads (the latest before it); a retry of that same
    exchange after a server resume loads the snapshot before it and loses the count (the
    resume rule of :mod:`fedzoo_client.persistence`). In ``context.state`` it survives where
    Flower keeps the context of a handler that raised: a deployed SuperNode pushes it
    back; Flower's Ray simulation does not (it keeps the context from before the
    exchange), so there the count survives only with a ``state-dir`` /
    ``client-state-dir``.
    """
    if store is None or tag is None:
        previous = load_state(context, settings)
    else:
        previous = _load_from_store(store, tag, settings)
    previous.total_queries += queries
    _persist(context, store, tag, previous)


def _handed(objective: Any) -> int:
    """Points handed to ``objective`` so far (``Objective.num_queries``; 0 if it has none)."""
    count = getattr(objective, "num_queries", 0)
    return count if isinstance(count, int) else 0


def handle(fn: ClientFn, msg: Message, context: Context) -> Message:
    """Run one protocol client function on ``msg`` and reply (state kept in context and,
    if configured, on disk).

    When ``fn`` raises after querying the objective, the stored state stays the one
    from before the exchange except its running total of queries, which is raised by
    what the failed exchange queried (:func:`_count_failed_exchange`); the exception is
    re-raised (Flower turns it into an error reply). Queried means: the points of every
    batch the objective answered (``fn`` counts them in ``state.total_queries`` as it
    goes) or, when more, every point handed to the objective (``Objective.num_queries``,
    which also counts a batch that raised and may have been evaluated in part: an upper
    bound, as the oracle's counting rule).
    """
    settings = settings_of(context)
    pid = partition_id(context.node_config, settings)
    objective = load_objective(settings, context.node_config, pid)
    payload = content_to_payload(msg.content, source=f"{msg.metadata.message_type} message")
    meta = content_meta(msg.content)
    run_id = meta.get("run-id")
    store = state_store(context, settings, pid, run_id if isinstance(run_id, str) and run_id else None)
    tag: tuple[int, int] | None = None
    if store is not None:
        tag = exchange_tag(msg)
        state = _load_from_store(store, tag, settings, bool(meta.get("has-state", False)))
    else:
        state = load_state(context, settings)
    total_before, handed_before = state.total_queries, _handed(objective)
    retain_freed_memory()
    try:
        with blas_threads(1):  # as the engine: many small factorisations, one BLAS thread
            state, reply = fn(settings.config, objective, state, payload, pid)
    except BaseException:
        queries = max(state.total_queries - total_before, _handed(objective) - handed_before)
        if queries > 0:
            try:
                _count_failed_exchange(context, store, tag, settings, queries)
            except Exception as err:  # never hide the exchange's own error
                log.warning("could not record the %d queries of a failed exchange: %s", queries, err)
        raise
    _persist(context, store, tag, state)
    return Message(payload_to_content(reply, {"partition-id": pid}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    return handle(protocol.client_train, msg, context)


@app.query("sync")
def sync(msg: Message, context: Context) -> Message:
    return handle(protocol.client_sync, msg, context)


@app.query("evaluate")
def evaluate(msg: Message, context: Context) -> Message:
    return handle(protocol.client_evaluate, msg, context)


@app.query("describe")
def describe(msg: Message, context: Context) -> Message:
    """Who this node is: its partition id and objective (loaded once to check it).

    An objective that cannot load (an import error, a wrong dimension, a custom problem
    without one) raises :class:`fedzoo_server.failures.ObjectiveLoadError` naming the partition,
    so that the server ends the run at once with this error (:mod:`fedzoo_server.failures`).
    """
    settings = settings_of(context)
    pid = partition_id(context.node_config, settings)
    try:
        objective = load_objective(settings, context.node_config, pid)
    except Exception as err:  # named per partition: the server ends the run at once
        raise objective_failure(pid, err) from err
    meta = ConfigRecord(
        {
            "partition-id": pid,
            "dim": objective.dim,
            "objective-kind": objective_kind(context.node_config),
            "fedzoo-version": __version__,
        }
    )
    return Message(RecordDict({"fedzoo.meta": meta}), reply_to=msg)
