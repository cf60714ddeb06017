"""The fedzoo Flower ClientApp: decode, call :mod:`fedzoo.protocol`, encode.

Message types (the ServerApp in ``server/app.py`` sends them):

* ``query.describe`` — before round 1: reply ``{partition-id, dim, objective-kind,
  fedzoo-version}`` (transport metadata; no query). The server maps node ids to
  partition ids with it.
* ``train`` — :func:`fedzoo.protocol.client_train`.
* ``query.sync`` — :func:`fedzoo.protocol.client_sync` (fzoos, scaffold1).
* ``query.evaluate`` — :func:`fedzoo.protocol.client_evaluate`.

Every reply carries the protocol payload (``fedzoo.arrays`` / ``fedzoo.scalars``, see
:mod:`server.records`) and the sender's ``partition-id`` in ``fedzoo.meta``, which the
server cross-checks against the mapping from ``query.describe``.

The client's :class:`~fedzoo.protocol.ClientState` lives in ``context.state`` as the
ArrayRecord ``fedzoo.client-state`` (``state.to_arrays()``); it is written back only when
a handler succeeds, so a failed exchange leaves the stored state as it was. When the node
config names ``state-dir`` (or the run-config ``client-state-dir``), the state is also
kept on disk (:mod:`client.persistence`) and read from there before every exchange, so
it survives a SuperNode restart and carries over into a run that resumes this one. Any
exception (a failing objective, an invalid message) becomes an error reply, which the
server logs and skips. Which objective a node queries is described in
:mod:`client.objectives`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from client.objectives import STATE_DIR, load_objective, objective_kind, partition_id
from client.persistence import StateStore, phase_of
from fedzoo import __version__, protocol
from fedzoo._malloc import retain_freed_memory
from fedzoo._threads import blas_threads
from fedzoo.errors import ConfigError
from server.records import (
    arrays_to_record,
    content_to_payload,
    payload_to_content,
    record_to_arrays,
)
from server.settings import FlowerSettings, parse_run_config, run_key

STATE_KEY = "fedzoo.client-state"
DESCRIBE = "query.describe"
SYNC = "query.sync"
EVALUATE = "query.evaluate"

app = ClientApp()

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


def state_store(context: Context, settings: FlowerSettings, pid: int) -> StateStore | None:
    """The node's on-disk state (node config ``state-dir``, else ``client-state-dir``)."""
    root = context.node_config.get(STATE_DIR, settings.client_state_dir)
    if root in ("", None):
        return None
    if not isinstance(root, str):
        raise ConfigError(
            f"Node config 'state-dir' = {root!r} is not allowed; expected a directory path."
        )
    return StateStore(root, run_key(context.run_config), pid)


def exchange_tag(msg: Message) -> tuple[int, int]:
    """(round, phase) of an exchange: the round is the message's group id."""
    group = msg.metadata.group_id
    if not str(group).isdigit():
        raise ConfigError(
            f"Message group id {group!r} is not a round number; expected the ServerApp's "
            "str(round)."
        )
    return int(group), phase_of(msg.metadata.message_type)


def handle(fn: ClientFn, msg: Message, context: Context) -> Message:
    """Run one protocol client function on ``msg`` and reply (state kept in context and,
    if configured, on disk)."""
    settings = settings_of(context)
    pid = partition_id(context.node_config, settings)
    objective = load_objective(settings, context.node_config, pid)
    payload = content_to_payload(msg.content, source=f"{msg.metadata.message_type} message")
    store = state_store(context, settings, pid)
    if store is not None:
        tag = exchange_tag(msg)
        found = store.load_before(tag)
        state = (
            protocol.ClientState.from_arrays(found[1], settings.config)
            if found is not None
            else protocol.new_client_state(settings.config, settings.dim)
        )
    else:
        state = load_state(context, settings)
    retain_freed_memory()
    with blas_threads(1):  # as the engine: many small factorisations, one BLAS thread
        state, reply = fn(settings.config, objective, state, payload, pid)
    if store is None:
        save_state(context, state)
    elif tag[1] != phase_of(EVALUATE):  # the disk copy is the state (context.state unused)
        # The final evaluation is outside the rounds (the server checkpoints before it):
        # a run that extends this one continues from the state after the last round.
        store.save(tag, state.to_arrays())
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
    """Who this node is: its partition id and objective (loaded once to check it)."""
    settings = settings_of(context)
    pid = partition_id(context.node_config, settings)
    objective = load_objective(settings, context.node_config, pid)
    meta = ConfigRecord(
        {
            "partition-id": pid,
            "dim": objective.dim,
            "objective-kind": objective_kind(context.node_config),
            "fedzoo-version": __version__,
        }
    )
    return Message(RecordDict({"fedzoo.meta": meta}), reply_to=msg)
