"""The fedzoo Flower ServerApp: the round driver over Flower's Grid.

The rounds are :class:`fedzoo.rounds.RoundDriver`'s, the loop the in-process engine
runs too, with Flower messages instead of function calls (:class:`GridTransport`), so
the same seed gives the same ``history.csv`` (values, reported values, queries and bytes;
only ``wall_s`` differs).

1. **Nodes → partitions.** The server waits until ``num-clients`` partitions are
   connected (``node-wait-timeout``): it sends ``query.describe`` to every node it has not
   asked yet; each node answers with its ``partition-id`` (node config), its objective's
   dimension and kind. Node ids are mapped to partition ids from these answers; a node
   whose partition id is taken or outside [0, num-clients) is ignored (logged), a node
   that fails to describe itself (error reply, e.g. its objective cannot be loaded) is
   logged with the reason, which the timeout error repeats. Every later reply also
   carries ``partition-id`` in ``fedzoo.meta``; a reply whose partition id disagrees
   with the mapping is dropped. The partition id is the client id the core uses to seed
   that client's randomness, and replies are aggregated in partition order.
2. **Rounds.** ``train`` (MessageType.TRAIN), then ``query.sync`` for methods with a
   sync exchange (fzoos, scaffold1), both to the partitions
   ``fedzoo.protocol.sample_clients`` picks for the round (all unless ``fraction < 1``);
   at the end ``query.evaluate`` to every partition for the others when the last
   reported value is missing. Error replies, replies that cannot be decoded and
   missing replies (``round-timeout``) are logged and skipped; payloads that decode but
   are invalid are dropped by ``fedzoo.protocol`` (logged, weights renormalised over the
   valid ones, global state unchanged by them).
3. **Results.** ``history.csv`` and ``summary.json`` in the run-config ``out-dir`` (engine
   ``"flower"``), one log line per round.

Bytes are :func:`fedzoo.payload.payload_nbytes` of the protocol payloads, as in the
engine: down = message size x nodes addressed, up = decoded replies. The ``query.describe``
handshake and Flower's own framing are transport overhead and not counted.

``value``: in a simulation whose every client queries the built-in synthetic problem the
ServerApp, like the engine, reports F(x_r) evaluated by the simulator (not a query, never
seen by the algorithm); otherwise (a deployment, or custom objectives) ``value`` is the
reported sum_i p_i f_i(x_r) from the clients' own queries. A simulation is recognised by
Flower's in-memory grid (``InMemoryGrid``, used by ``flwr-simulation``); a test grid
may declare itself one with the attribute ``fedzoo_simulation = True``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedzoo import protocol
from fedzoo.checkpoint import (
    Checkpoint,
    check_resume_rounds,
    directory_lock,
    load_checkpoint,
    new_run_id,
    write_run_id,
)
from fedzoo.config import RunConfig
from fedzoo.errors import FedZooError, PayloadError
from fedzoo.methods import get_method
from fedzoo.payload import Payload, payload_nbytes
from fedzoo.results import HistoryFile, HistoryRecorder, summary, write_history, write_summary
from fedzoo.rounds import EVALUATE as EVALUATE_EXCHANGE
from fedzoo.rounds import SYNC as SYNC_EXCHANGE
from fedzoo.rounds import TRAIN, RoundDriver, restore
from fedzoo_server import records
from fedzoo_server.failures import parse_client_state_failure, parse_objective_failure
from fedzoo_server.records import (
    DESCRIBE,
    EVALUATE,
    SYNC,
    ReplyLimits,
    content_meta,
    content_to_payload,
    payload_to_content,
)
from fedzoo_server.settings import (
    FlowerSettings,
    build_problem,
    parse_run_config,
    resolve_out_dir,
    start_point,
)

log = logging.getLogger(__name__)

POLL_S = 0.5

app = ServerApp()


class FlowerRunError(FedZooError, RuntimeError):
    """The federation cannot run (nodes missing, misconfigured or inconsistent)."""


@dataclass
class Federation:
    """Which node serves which partition, and what the nodes said about themselves."""

    nodes: dict[int, int] = field(default_factory=dict)  # partition id -> node id
    kinds: dict[int, str] = field(default_factory=dict)  # partition id -> objective kind
    failed: dict[int, str] = field(default_factory=dict)  # node id -> reason
    silent: set[int] = field(default_factory=set)  # nodes that have not answered yet
    asked: set[int] = field(default_factory=set)  # nodes that answered a describe
    missed: set[int] = field(default_factory=set)  # partitions whose last exchange failed
    broken: dict[int, str] = field(default_factory=dict)  # partition id -> objective error

    @property
    def partition_of(self) -> dict[int, int]:
        return {node: pid for pid, node in self.nodes.items()}


def grid_is_simulation(grid: Grid) -> bool:
    """True for Flower's in-memory simulation grid (or a grid that says it is one)."""
    declared = getattr(grid, "fedzoo_simulation", None)
    if declared is not None:
        return bool(declared)
    return any(cls.__name__ == "InMemoryGrid" for cls in type(grid).__mro__)


def _messages(
    payload: Payload | None, nodes: Mapping[int, int], message_type: str, group: str, ttl: float,
    meta: Mapping[int, Mapping[str, Any]] | None = None,
) -> list[Message]:
    out = []
    for pid, node in nodes.items():
        extra = (meta or {}).get(pid)
        content = payload_to_content(payload, extra) if payload is not None else RecordDict()
        out.append(
            Message(content, dst_node_id=node, message_type=message_type, group_id=group, ttl=ttl)
        )
    return out


def _error_text(msg: Message) -> str:
    err = msg.error
    reason = (err.reason or "").strip().splitlines()
    return f"error code {err.code}: {reason[-1] if reason else 'no reason given'}"


def _objective_hint(fed: Federation) -> str:
    return (
        f"The SuperNode(s) of partition(s) {sorted(fed.broken)} cannot load their objective "
        "(the failures say why). Fix that node's objective (a node config "
        "objective='package.module:function' "
        "must be importable by the SuperNode: install the package or put its directory on the "
        "SuperNode's PYTHONPATH; oracle='host:port' must be reachable), or the run-config "
        "(problem, dim, objective-factory), then restart that SuperNode and the run."
    )


def describe_nodes(
    grid: Grid,
    settings: FlowerSettings,
    node_ids: list[int],
    fed: Federation,
    timeout: float,
    online: set[int] | None = None,
) -> None:
    """Ask ``node_ids`` for their partition id and objective; update ``fed``.

    A node that claims a partition already served by another node takes it over when
    that node is no longer online (``online``: the ids the grid lists now) or missed its
    last exchange: a SuperNode that restarted comes back with a new node id. Otherwise the
    newcomer is ignored (logged).
    """
    if not node_ids:
        return
    msgs = _messages(None, {n: n for n in node_ids}, DESCRIBE, "0", max(timeout, 1.0))
    replies = list(grid.send_and_receive(msgs, timeout=timeout))
    answered = set()
    for reply in replies:
        node = reply.metadata.src_node_id
        answered.add(node)
        if reply.has_error():
            parsed = parse_objective_failure(reply.error.reason or "")
            if parsed is not None and 0 <= parsed[0] < settings.num_clients:
                fed.broken[parsed[0]] = parsed[1]
                fed.failed[node] = f"partition {parsed[0]} cannot load its objective: {parsed[1]}"
            else:
                fed.failed[node] = _error_text(reply)
            log.warning("node %d cannot join: %s", node, fed.failed[node])
            continue
        meta = content_meta(reply.content)
        pid, dim = meta.get("partition-id"), meta.get("dim")
        if not isinstance(pid, int) or not 0 <= pid < settings.num_clients:
            fed.failed[node] = f"partition-id {pid!r} outside [0, {settings.num_clients - 1}]"
            log.warning("node %d ignored: %s", node, fed.failed[node])
        elif dim != settings.dim:
            fed.failed[node] = f"objective dimension {dim!r} != dim {settings.dim}"
            log.warning("node %d ignored: %s", node, fed.failed[node])
        elif pid in fed.nodes and (
            online is None or (fed.nodes[pid] in online and pid not in fed.missed)
        ):
            fed.failed[node] = f"partition {pid} is already served by node {fed.nodes[pid]}"
            log.warning("node %d ignored: %s", node, fed.failed[node])
        else:
            if pid in fed.nodes:
                log.warning(
                    "partition %d moves from node %d (%s) to node %d",
                    pid,
                    fed.nodes[pid],
                    "offline" if online is not None and fed.nodes[pid] not in online
                    else "missed its last exchange",
                    node,
                )
                fed.missed.discard(pid)
            fed.nodes[pid] = node
            fed.kinds[pid] = str(meta.get("objective-kind", "unknown"))
            log.info("node %d serves partition %d (%s objective)", node, pid, fed.kinds[pid])
    fed.silent = (fed.silent | set(node_ids)) - answered
    fed.asked |= answered
    for node in sorted(set(node_ids) - answered):
        log.warning("node %d did not describe itself within %.0f s; will ask again", node, timeout)


def refresh_federation(grid: Grid, settings: FlowerSettings, fed: Federation) -> None:
    """Before a round: describe nodes that connected since the last look (restarted
    SuperNodes, late joiners) so that they can take over their partitions.

    Costs one describe exchange, and only when a new node is online.
    """
    online = {int(n) for n in grid.get_node_ids()}
    new = sorted(online - fed.asked)
    if new:
        describe_nodes(grid, settings, new, fed, settings.round_timeout, online=online)


def wait_for_partitions(
    grid: Grid, settings: FlowerSettings, *, poll_s: float = POLL_S, fixed_nodes: bool = False
) -> Federation:
    """Map ``num-clients`` partitions to connected nodes, or raise after the timeout.

    With ``fixed_nodes`` (a simulation: no node joins later) it raises as soon as every
    node has answered and partitions are still missing. It raises at once, whatever the
    wait left, when a node reports that the objective of a missing partition cannot load
    (:mod:`fedzoo_server.failures`; the node's error is in the message), and when at least
    ``num-clients`` nodes have all answered, partitions are missing and a node failed.

    Raises:
        FlowerRunError: naming the missing partitions, the nodes seen and why nodes failed.
    """
    fed = Federation()
    deadline = time.monotonic() + settings.node_wait_timeout
    wanted = set(range(settings.num_clients))
    while True:
        node_ids = sorted(int(n) for n in grid.get_node_ids())
        new = [n for n in node_ids if n not in fed.asked]
        left = deadline - time.monotonic()
        # Nodes register one by one: describe them together once all are there (or
        # once half the wait is over); each describe exchange costs seconds when deployed.
        ready = len(node_ids) >= settings.num_clients or left < settings.node_wait_timeout / 2
        if new and ready:
            timeout = min(settings.round_timeout, max(left, 5.0))
            describe_nodes(grid, settings, new, fed, timeout=timeout)
        if wanted <= fed.nodes.keys():
            return fed
        all_answered = (
            bool(node_ids) and not fed.silent and not [n for n in node_ids if n not in fed.asked]
        )
        missing = sorted(wanted - fed.nodes.keys())
        broken = {pid: why for pid, why in fed.broken.items() if pid in missing}
        everyone_failed = all_answered and len(node_ids) >= settings.num_clients and fed.failed
        if time.monotonic() >= deadline or (fixed_nodes and all_answered) or broken or everyone_failed:
            failures = "; ".join(f"node {n}: {why}" for n, why in fed.failed.items()) or "none"
            silent = f"; no answer from node(s) {sorted(fed.silent)}" if fed.silent else ""
            waited = time.monotonic() - (deadline - settings.node_wait_timeout)
            if broken:
                hint = _objective_hint(Federation(broken=broken))
            elif fed.failed and not fed.silent:
                hint = (
                    "Every node answered, so waiting longer would not help: fix the failing "
                    "node(s) (node config partition-id in [0, num-clients - 1], one SuperNode "
                    "per partition, the objective's dimension = run-config dim) and restart them."
                )
            else:
                hint = (
                    "Start one SuperNode per partition with --node-config 'partition-id=<i>' "
                    "(simulation: num-supernodes >= num-clients)."
                )
            raise FlowerRunError(
                f"Only {len(fed.nodes)} of {settings.num_clients} partitions connected after "
                f"{waited:.1f} s (run-config node-wait-timeout = {settings.node_wait_timeout:g} s): missing "
                f"partition id(s) {missing}; nodes seen {node_ids}; failures: "
                f"{f'{failures}{silent}'.rstrip('.')}. {hint}"
            )
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))


def exchange(
    grid: Grid,
    fed: Federation,
    message_type: str,
    payload: Payload,
    round_: int,
    timeout: float,
    partitions: list[int] | None = None,
    max_elements: int | None = None,
    limits: ReplyLimits | None = None,
    meta: Mapping[int, Mapping[str, Any]] | None = None,
) -> tuple[dict[int, Any], int, int]:
    """Send ``payload`` to ``partitions`` (default all); return (replies by partition, down, up).

    ``meta``: transport metadata per partition (``fedzoo.meta``: the run id, whether the
    partition has state). An error reply saying that a client's saved state is refused
    (:class:`fedzoo_server.failures.ClientStateError`) ends the run: :class:`FlowerRunError`.

    Partitions whose node is offline (no longer listed by the grid) are not sent to.
    Replies are matched to partitions by the message they answer (an error reply the
    SuperLink writes for an unreachable node comes from the SuperLink, not the node) and
    returned in partition order; error replies, undecodable replies, arrays longer than
    ``max_elements``, replies beyond ``limits`` (keys, elements; checked before decoding,
    :func:`reply_limits`), replies claiming another partition and missing replies are
    logged and left out, and the partitions without a usable reply are remembered in
    ``fed.missed``.
    """
    pids = sorted(fed.nodes) if partitions is None else sorted(partitions)
    online = {int(n) for n in grid.get_node_ids()}
    offline = [pid for pid in pids if fed.nodes[pid] not in online]
    if offline:
        log.warning(
            "round %d %s: partition(s) %s offline (node(s) %s); not sent",
            round_,
            message_type,
            offline,
            [fed.nodes[p] for p in offline],
        )
    targets = {pid: fed.nodes[pid] for pid in pids if pid not in offline}
    msgs = _messages(payload, targets, message_type, str(round_), timeout, meta)
    by_pid = dict(zip(targets, msgs))
    replies: dict[int, Any] = {}
    answers = list(grid.send_and_receive(msgs, timeout=timeout)) if msgs else []
    of_message = {msg.metadata.message_id: pid for pid, msg in by_pid.items()}
    for reply in answers:
        pid = of_message.get(reply.metadata.reply_to_message_id)
        node = targets.get(pid) if pid is not None else reply.metadata.src_node_id
        what = f"{message_type} reply of partition {pid} (node {node}) in round {round_}"
        if pid is None:
            log.warning("ignored a %s reply to a message not sent in this exchange", message_type)
        elif reply.has_error():
            refused = parse_client_state_failure(reply.error.reason or "")
            if refused is not None:
                raise FlowerRunError(f"{refused} (round {round_}); the run ends: its clients must "
                                     "continue from their own states of this run.")
            log.warning("skipped the %s: %s", what, _error_text(reply))
        elif pid in replies:
            log.warning("skipped a second %s", what)
        elif reply.metadata.src_node_id != node:
            log.warning("skipped the %s: it comes from node %d", what, reply.metadata.src_node_id)
        else:
            try:
                decoded = content_to_payload(
                    reply.content, source=what, max_elements=max_elements, limits=limits
                )
            except PayloadError as err:
                log.warning("skipped %s", err)
                continue
            claimed = content_meta(reply.content).get("partition-id")
            if claimed != pid:
                log.warning("skipped the %s: it claims partition-id %r", what, claimed)
                continue
            replies[pid] = decoded
    missing = sorted(set(pids) - replies.keys())
    fed.missed = (fed.missed | set(missing)) - replies.keys()
    if missing:
        log.warning(
            "round %d %s: no usable reply from partition(s) %s", round_, message_type, missing
        )
    down = payload_nbytes(payload) * len(targets)
    up = sum(payload_nbytes(r) for r in replies.values())
    return dict(sorted(replies.items())), down, up


def reply_limits(config: RunConfig, dim: int) -> ReplyLimits:
    """What one reply of this run may carry at most (keys, one array's elements, all
    arrays' elements), from the protocol's reply specs: train, sync and evaluate."""
    return ReplyLimits.from_specs(
        protocol.train_reply_spec(config, dim),
        protocol.sync_reply_spec(config, dim),
        protocol.EVALUATE_REPLY_SPEC,
    )


@dataclass
class FlowerRun:
    """Outcome of :func:`run_server`: what was written, plus the final global state."""

    state: protocol.ServerState
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    federation: Federation


def checkpoint_meta(settings: FlowerSettings) -> dict[str, Any]:
    """What identifies a Flower run in its checkpoint (everything but the rounds); a custom
    start point or weights (run-config ``x0``/``weights``) only when set."""
    meta = {
        "engine": "flower",
        "config": {k: v for k, v in settings.config.to_dict().items() if k != "rounds"},
        "problem": list(settings.problem_key),
        "objective": settings.objective_meta,
    }
    if settings.x0 is not None or settings.weights is not None:
        meta["start"] = {"x0": list(settings.x0) if settings.x0 is not None else None,
                         "weights": list(settings.weights) if settings.weights is not None else None}
    return meta


def _resume_checkpoint(settings: FlowerSettings) -> Checkpoint:
    """The checkpoint a ``resume = true`` run continues, checked before any node is
    asked: it must be this run's (only ``rounds`` and the timeouts may differ), and
    ``rounds`` may not be below its round
    (:func:`fedzoo.checkpoint.check_resume_rounds`; equal finishes the run).

    Raises:
        ConfigError: no checkpoint, or ``rounds`` below the checkpoint's round.
        FlowerRunError: the checkpoint belongs to another run.
    """
    ckpt = load_checkpoint(settings.checkpoint_dir)
    meta = checkpoint_meta(settings)
    saved = {k: v for k, v in ckpt.meta.items() if k != "rounds"}
    if saved != meta:
        diff = sorted(
            k for k in {**saved.get("config", {}), **meta["config"]}
            if saved.get("config", {}).get(k) != meta["config"].get(k)
        )
        raise FlowerRunError(
            f"The checkpoint in {settings.checkpoint_dir} belongs to another run: "
            f"{'options ' + str(diff) + ' differ' if diff else 'saved ' + str(saved)} (only "
            "'rounds' and the timeouts may change on resume)."
        )
    check_resume_rounds(settings.config.rounds, ckpt.round, settings.checkpoint_dir)
    return ckpt


def _saved_points(
    settings: FlowerSettings, out_dir: Path, server: protocol.ServerState, done: int
) -> list[np.ndarray]:
    """The global points of rounds 0..done (``save-points``; from points.npy on resume)."""
    if done == 0:
        return [server.x.copy()]
    path = out_dir / "points.npy"
    if settings.save_points and path.is_file():
        saved = np.load(path)
        if saved.shape[0] > done:
            return list(saved[: done + 1])
    return [np.full_like(server.x, np.nan)] * done + [server.x.copy()]


class GridTransport:
    """The Flower transport of the round driver: one exchange = one batch of messages.

    Exchanges go to the partitions' nodes (:func:`exchange`); before every round but
    the first of this run, and before the final evaluation, nodes that connected since
    the last look are described and may take over their partitions
    (:func:`refresh_federation`). Clients keep their own state (in their Flower context
    or ``client-state-dir``), so checkpoints hold the server's state only.
    """

    MESSAGE_TYPES = {TRAIN: records.TRAIN, SYNC_EXCHANGE: SYNC, EVALUATE_EXCHANGE: EVALUATE}

    def __init__(self, grid: Grid, settings: FlowerSettings, fed: Federation, limits: ReplyLimits,
                 run_id: str = "", answered: Any = None) -> None:
        self.grid, self.settings, self.fed, self.limits = grid, settings, fed, limits
        #: ``answered()``: the partitions whose running query total the server knows (they
        #: have answered, so they keep state: a client missing its snapshot is refused).
        self.run_id, self.answered = run_id, answered

    def exchange(self, kind: str, message: Payload, round_: int,
                 clients: list[int]) -> tuple[dict[int, Any], int, int]:
        known = set(self.answered()) if self.answered is not None else set()
        meta = {pid: {"run-id": self.run_id, "has-state": pid in known} for pid in clients}
        return exchange(self.grid, self.fed, self.MESSAGE_TYPES[kind], message, round_,
                        self.settings.round_timeout, clients, limits=self.limits, meta=meta)

    def before_round(self, round_: int, first: bool) -> None:
        if not first:
            refresh_federation(self.grid, self.settings, self.fed)

    def client_arrays(self) -> list[dict[str, np.ndarray]]:
        return []


def run_server(
    grid: Grid, settings: FlowerSettings, *, simulation: bool | None = None
) -> FlowerRun:
    """Run the federation over ``grid``; write history.csv and summary.json.

    The rounds are :class:`fedzoo.rounds.RoundDriver`'s, as in the engine, over
    :class:`GridTransport`. With ``checkpoint-dir`` a checkpoint is written after every
    round; with ``resume`` the run continues from it.
    """
    t_start = time.perf_counter()
    config = settings.config
    simulation = grid_is_simulation(grid) if simulation is None else simulation
    out_dir = resolve_out_dir(settings)
    ckpt = _resume_checkpoint(settings) if settings.resume else None  # refuse before waiting
    fed = wait_for_partitions(grid, settings, fixed_nodes=simulation)
    if get_method(config.method).exact_gradients and any(kind != "problem" for kind in fed.kinds.values()):
        raise FlowerRunError(
            f"Method {config.method!r} needs exact gradients: every node must use the built-in problem."
        )
    x0, w = start_point(settings)
    weights = {pid: float(w[pid]) for pid in range(settings.num_clients)}
    problem = build_problem(settings) if settings.synthetic else None
    simulated = (
        simulation
        and problem is not None
        and problem.is_synthetic
        and all(kind == "problem" for kind in fed.kinds.values())
    )
    rec = HistoryRecorder(problem.global_value if simulated else None)
    server = protocol.server_init(config, x0)
    rec.start(server.x, settings.num_clients)
    done = 0
    run_id = new_run_id()
    if ckpt is not None:
        server, done = restore(ckpt, config, rec)
        run_id = ckpt.run_id
        log.info("resuming run %s after round %d from %s", run_id, done, settings.checkpoint_dir)
    if settings.checkpoint_dir:  # the run this directory's checkpoints belong to
        write_run_id(settings.checkpoint_dir, run_id)
    points = _saved_points(settings, out_dir, server, done)
    out_dir.mkdir(parents=True, exist_ok=True)
    history = HistoryFile(out_dir / "history.csv")  # on disk from the start, a row per round
    history.sync(rec.rows)
    log.info(
        "fedzoo %s: %d rounds, %d clients, dim %d, value %s; results in %s",
        config.method,
        config.rounds,
        settings.num_clients,
        settings.dim,
        "simulated F" if simulated else "reported by clients",
        out_dir,
    )

    reporter = None
    if settings.tensorboard_dir:
        from fedzoo.tensorboard_log import TensorBoardReporter

        reporter = TensorBoardReporter(Path(settings.tensorboard_dir).expanduser().resolve())
        reporter.start(rec.rows[0])

    def on_round(r: int, state: protocol.ServerState, row: dict[str, Any]) -> None:
        if reporter is not None:
            reporter.round(row)
        points.append(state.x.copy())
        history.sync(rec.rows)  # appended and fsync'd: a killed run keeps its rounds
        if settings.save_points:
            np.save(out_dir / "points.npy", np.stack(points))

    transport = GridTransport(grid, settings, fed, reply_limits(config, settings.dim), run_id,
                              lambda: driver.server.query_totals)
    driver = RoundDriver(
        config,
        transport,
        weights,
        rec,
        server,
        on_round=on_round,
        query_budget=settings.query_budget,
        reserve_evaluation=settings.final_evaluation,
        checkpoint_dir=settings.checkpoint_dir or None,
        checkpoint_meta=checkpoint_meta(settings),
        run_id=run_id,
    )
    try:
        server = driver.run(done + 1, final_evaluation=False)
        if settings.save_points:
            np.save(out_dir / "points.npy", np.stack(points))
        if settings.final_evaluation and math.isnan(rec.rows[-1]["reported_value"]):
            driver.evaluate_final()
            server = driver.server
        if reporter is not None:
            reporter.finish(rec.rows)
    finally:
        if reporter is not None:
            reporter.close()

    wall = time.perf_counter() - t_start
    if problem is not None:
        info = {
            "name": problem.name,
            "dim": problem.dim,
            "clients": problem.num_clients,
            "optimum_value": problem.optimum_value,
            **problem.info,
        }
    else:
        info = {
            "name": settings.problem,
            "dim": settings.dim,
            "clients": settings.num_clients,
            "optimum_value": None,
        }
    summ = summary(rec.rows, config.to_dict(), info, "flower", wall, run_id=run_id)
    summ["resumed_after_round"] = done if settings.resume else None
    summ["flower"] = {
        "simulation": simulation,
        "value_source": "simulated" if simulated else "reported",
        "nodes": {str(pid): node for pid, node in sorted(fed.nodes.items())},
        "objective_kinds": {str(pid): kind for pid, kind in sorted(fed.kinds.items())},
    }
    write_history(rec.rows, out_dir / "history.csv")
    write_summary(summ, out_dir / "summary.json")
    log.info(
        "done: final value %.6g, %d queries, %.1f s; wrote %s",
        rec.rows[-1]["value"],
        rec.rows[-1]["queries"],
        wall,
        out_dir,
    )
    return FlowerRun(server, rec.rows, summ, fed)


@contextlib.contextmanager
def _logs_to_flower() -> Iterator[None]:
    """Route fedzoo/fedzoo_server INFO logs to Flower's console (streamed by ``flwr run``)."""
    from flwr.supercore.logger import console_handler

    loggers = [logging.getLogger(name) for name in ("fedzoo_server", "fedzoo")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(console_handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            lg.removeHandler(console_handler)
            lg.setLevel(level)
            lg.propagate = propagate


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of ``flwr run``: parse the run-config, run, write the results.

    A run with a failed round (no client could work, ``summary.json`` status ``failed``)
    raises after writing its results, so that Flower reports the run as failed too. The
    out-dir and checkpoint-dir (where they exist) are locked while the run writes them
    (:func:`fedzoo.checkpoint.directory_lock`: another run there is refused).
    """
    with _logs_to_flower():
        settings = parse_run_config(context.run_config)
        with directory_lock(resolve_out_dir(settings), settings.checkpoint_dir or None):
            run = run_server(grid, settings)
        if run.summary.get("status") == "failed":
            raise FlowerRunError(f"The run failed: {run.summary.get('error')}; results in "
                                 f"{resolve_out_dir(settings)}.")
