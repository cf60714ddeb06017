r"""One federated round as pure functions over flat payloads.

A round r (docs/design.md §2):

1. **train** — server → clients ``{x: x_{r-1}, round: r, [rff-weights: w̄_{r-1}],
   [rff-seed, rff-lengthscale], [scaffold-c: c]}``; each client runs T local steps and
   replies ``{x: x_i, num-queries, value-start: f_i(x_{r-1}), [scaffold-ci]}``. The server
   step is ``x_r = x_{r-1} - eta sum_i p_i (x_{r-1} - x_i)`` (p: weights renormalised over
   valid replies).
2. **sync** (``fzoos``, ``scaffold1``) — server → clients ``{x: x_r, round: r, ...}``;
   clients query x_r (and, for FZooS, the most uncertain points around it), then reply
   ``{value: f_i(x_r), num-queries, rff-weights: w_i}`` (FZooS) or
   ``{value, num-queries, scaffold-ci: RGF(x_r)}`` (SCAFFOLD-1). The server averages.
   ``fzoos-lagged`` (single exchange): no sync; each client explores at x_{r-1} at
   the start of train, fits its RFF weights there and sends them with the train reply;
   the correction in round r uses the weights fitted at x_{r-2} (one round older).
3. **evaluate** (optional, once at the end) — ``{x}`` → ``{value, num-queries}``; single-
   exchange methods use it to report f_i(x_R). It costs N counted queries.

Every reply also carries ``total-queries``, the client's running total; the server
charges each exchange the difference to the client's last counted total
(:func:`account_queries`), so queries behind a lost reply are counted with the client's
next reply. A reply rejected for its content still has its two counts charged when they
are valid on their own (a client whose values are all refused is still counted), and a
transport that knows what a failed client queried (in process: every point its
objective was handed) reports it as a :class:`FailedReply`, charged the same way.
Both counts are bounded by what the method's exchanges can make (:func:`query_limit`,
:func:`total_query_limit`), values and arrays by what an honest client can compute
(:mod:`fedzoo.limits`); a reply beyond them is rejected like a malformed one.

A client whose corrected direction is not finite (an unusable global correction) takes
its local steps without the correction for the rest of the round and says so in its
train reply (``correction-dropped``); a client whose own estimate gives no finite step
stops its local steps there (logged).

What differs between methods — the estimator, the correction, the extra message and
reply fields, the server's combination of them and the state — is the method's
(:mod:`fedzoo.methods`); this module calls its hooks and never compares method names.

Client functions take ``(config, objective, state, message, client_id)`` and return
``(state, reply)``; server functions take ``(config, state, replies, weights)`` and return
the new state. No function reads F: the server knows only what clients send. Every
randomness comes from ``SeedSequence([seed, round, client_id, phase])``, so any transport
that carries the payloads unchanged reproduces the in-process history exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedzoo import step_control
from fedzoo.aggregation import AGGREGATORS
from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError, PayloadError
from fedzoo.limits import MAX_INT
from fedzoo.methods import get_method
from fedzoo.methods.base import Method, TrainContext
from fedzoo.objectives.base import Objective
from fedzoo.optim import make_optimizer
from fedzoo.payload import ArraySpec, Payload, ScalarSpec, validate
from fedzoo.state import ClientState, ServerState, Session

__all__ = [
    "COUNT_SPEC", "EVALUATE_REPLY_SPEC", "Aggregate", "FailedReply", "ClientState", "ServerState", "Session",
    "account_queries", "aggregate_evaluate", "aggregate_sync", "aggregate_train", "client_evaluate",
    "client_query_counts", "client_sync", "client_train", "collect", "evaluate_message",
    "max_reply_elements", "new_client_state", "query_limit", "round_rng", "sample_clients",
    "server_init", "sync_message", "sync_message_spec", "sync_reply_spec", "total_query_limit",
    "train_message", "train_message_spec", "train_reply_spec",
]

log = logging.getLogger(__name__)

PHASE_TRAIN, PHASE_SYNC, PHASE_EVALUATE = 0, 1, 2

Spec = dict[str, ArraySpec | ScalarSpec]


def round_rng(seed: int, round_: int, client_id: int, phase: int) -> np.random.Generator:
    """The generator of one client in one phase of one round (no global RNG)."""
    return np.random.default_rng(np.random.SeedSequence([seed, round_, client_id, phase]))


def new_client_state(config: RunConfig, dim: int) -> ClientState:
    """The state of the run's method before the first exchange."""
    return get_method(config.method).client_state.new(config, dim)


# --------------------------------------------------------------------------------------
# Messages and replies: what every method sends, plus the method's own fields
# --------------------------------------------------------------------------------------
def _base_message_spec(dim: int) -> Spec:
    return {"x": ArraySpec(dim, unit_box=True), "round": ScalarSpec("int", 1)}


#: Every reply: the queries of this exchange and the client's running total.
COUNT_SPEC: Spec = {"num-queries": ScalarSpec("int", 0), "total-queries": ScalarSpec("int", 0)}

#: The final evaluation: f_i at x_R, one query at most (none when cached).
EVALUATE_REPLY_SPEC = {"value": ScalarSpec("float"), "num-queries": ScalarSpec("int", 0, maximum=1),
                       "total-queries": ScalarSpec("int", 0)}

#: Optional train-reply flag: the client took its steps without the global correction.
CORRECTION_DROPPED = "correction-dropped"


def query_limit(config: RunConfig, dim: int, kind: str) -> int:
    """The most queries one client's exchange of ``kind`` (train, sync, evaluate) can make:
    the method's bound (:meth:`~fedzoo.methods.base.Method.query_bound`), the larger of a
    client's first exchange and a later one (a client that lost its state starts over);
    :data:`fedzoo.limits.MAX_INT` when the method declares none."""
    if kind == "evaluate":
        return 1
    method = get_method(config.method)
    bounds = [method.query_bound(config, dim, kind, first) for first in (True, False)]
    if any(b is None for b in bounds):
        return MAX_INT
    return min(MAX_INT, max(int(b) for b in bounds))


def total_query_limit(config: RunConfig, dim: int, round_: int) -> int:
    """The largest running total a client can report in round ``round_`` (and in the final
    evaluation after it): ``round_`` rounds of its method's exchanges at their
    :func:`query_limit`, plus one evaluation."""
    per_round = query_limit(config, dim, "train")
    if get_method(config.method).has_sync:
        per_round += query_limit(config, dim, "sync")
    return min(MAX_INT, max(int(round_), 1) * per_round + 1)


def _with_total_limit(spec: Spec, config: RunConfig, dim: int, round_: int) -> Spec:
    return {**spec, "total-queries": ScalarSpec("int", 0, maximum=total_query_limit(config, dim, round_))}


def train_message_spec(config: RunConfig, dim: int) -> Spec:
    """``{x, round}`` plus the method's fields (e.g. FZooS's shared RFF map and the
    previous round's global weights, SCAFFOLD's control variate), and ``lr-scale`` under
    incumbent step control (:mod:`fedzoo.step_control`)."""
    spec = {**_base_message_spec(dim), **get_method(config.method).train_message_spec(config, dim)}
    if step_control.active(config):
        spec["lr-scale"] = ScalarSpec("float", 0.0)
    return spec


def sync_message_spec(config: RunConfig, dim: int) -> Spec:
    """``{x, round}`` plus the method's sync fields."""
    return {**_base_message_spec(dim), **get_method(config.method).sync_message_spec(config, dim)}


def train_reply_spec(config: RunConfig, dim: int) -> Spec:
    """``{x, num-queries, total-queries, value-start, [correction-dropped]}`` plus the
    method's fields; ``num-queries`` at most :func:`query_limit`."""
    counts = {**COUNT_SPEC, "num-queries": ScalarSpec("int", 0, maximum=query_limit(config, dim, "train"))}
    return {"x": ArraySpec(dim, unit_box=True), **counts, "value-start": ScalarSpec("float"),
            **get_method(config.method).train_reply_spec(config, dim),
            CORRECTION_DROPPED: ScalarSpec("int", 0, optional=True, maximum=1)}


def sync_reply_spec(config: RunConfig, dim: int) -> Spec:
    """``{value, num-queries, total-queries}`` plus the method's sync fields."""
    method = get_method(config.method)
    extra = method.sync_reply_spec(config, dim) if method.has_sync else {}
    counts = COUNT_SPEC
    if method.has_sync:
        counts = {**COUNT_SPEC, "num-queries": ScalarSpec("int", 0, maximum=query_limit(config, dim, "sync"))}
    return {"value": ScalarSpec("float"), **counts, **extra}


def max_reply_elements(config: RunConfig, dim: int) -> int:
    """The longest array any reply of this run may carry (a decoding limit for transports)."""
    specs = [*train_reply_spec(config, dim).values(), *sync_reply_spec(config, dim).values()]
    return max([dim, *(s.length for s in specs if isinstance(s, ArraySpec))])


# --------------------------------------------------------------------------------------
# Client functions
# --------------------------------------------------------------------------------------
StepObserver = Callable[[int, int, np.ndarray, np.ndarray, np.ndarray], None]


def client_train(
    config: RunConfig,
    objective: Objective,
    state: ClientState,
    message: Payload,
    client_id: int,
    observer: StepObserver | None = None,
) -> tuple[ClientState, Payload]:
    """T local steps from the broadcast point; returns the new state and the reply.

    The loop every method shares: query f_i(x_{r-1}) (cached if known), the method's
    ``begin_train``, then for t = 1..T the method's ``gradient`` and ``correct``, one
    optimiser step clipped to the unit box and the method's ``after_step`` queries;
    finally the reply ``{x, num-queries, total-queries, value-start}`` plus the
    method's fields (``end_train``).

    The state is updated in place and returned (the same object): its history, GP
    hyper-parameters, cached value, running query total, own corrections and local end
    point change. The caller must pass a state it owns (not one shared with another
    client or exchange) and, to retry a failed or lost exchange, reload the state from
    its last saved copy (:meth:`ClientState.from_arrays`) rather than reuse the object
    the failed call was given: that one may hold a partial round.

    ``observer(client_id, t, x, local_gradient, corrected_gradient)``, if given, sees
    every local step before it is taken (diagnostics such as the paper's Fig. 5).

    Query cost per round: FZooS/ZORD T iterates + (T-1) x explore-points (+ the initial
    design in round 1, + ZORD's exploration at x_{r-1}); finite differences
    1 + T Q + (T - 1); fo 1 + T exact gradients (counted as queries).
    """
    method = get_method(config.method)
    msg = validate(message, train_message_spec(config, state.dim), source="train message")
    x_global = msg["x"]
    ctx = TrainContext(config, state, msg, Session(objective, state),
                       round_rng(config.seed, msg["round"], client_id, PHASE_TRAIN), client_id, x_global)
    value_start = ctx.session.value_at(x_global)
    method.begin_train(ctx)

    x = method.local_train(ctx, value_start)
    if x is None:
        x = _local_steps(config, method, ctx, value_start, observer)

    state.local_x = x.copy()
    reply: Payload = {"x": x, **ctx.session.counts(), "value-start": value_start}
    method.end_train(ctx, reply)
    if ctx.scratch.get(CORRECTION_DROPPED):
        reply[CORRECTION_DROPPED] = 1
    return state, reply


def _local_steps(config: RunConfig, method: Method, ctx: TrainContext, value_start: float,
                 observer: StepObserver | None) -> np.ndarray:
    """T optimiser steps from x_{r-1} along the method's corrected estimates."""
    lr = config.lr * ctx.message["lr-scale"] if "lr-scale" in ctx.message else config.lr
    opt = make_optimizer(config.optimizer, lr)
    opt_state = opt.init(ctx.x_global)
    x, fx = ctx.x_global.copy(), value_start
    for t in range(1, config.local_steps + 1):
        g = method.gradient(ctx, x, fx)
        g_hat = method.correct(ctx, x, t, g)
        if ctx.scratch.get(CORRECTION_DROPPED) or not np.all(np.isfinite(g_hat)):
            g_hat = _without_correction(ctx, t, g)
        if observer is not None:
            observer(ctx.client_id, t, x, g, g_hat)
        step, new_state = opt.update(g_hat, opt_state)
        if not np.all(np.isfinite(step)) and g_hat is not g:
            g_hat = _without_correction(ctx, t, g)
            step, new_state = opt.update(g_hat, opt_state)
        if not np.all(np.isfinite(step)):
            log.warning("client %d, round %d: its own gradient estimate gives no finite step at "
                        "local step %d; it stops its local steps there", ctx.client_id, ctx.round, t)
            break
        opt_state = new_state
        x = np.clip(x - step, 0.0, 1.0)
        fx = method.after_step(ctx, x, fx, t == config.local_steps)
    return x


def _without_correction(ctx: TrainContext, t: int, g: np.ndarray) -> np.ndarray:
    """The rest of this round's steps follow g alone (the correction is not finite)."""
    if not ctx.scratch.get(CORRECTION_DROPPED):
        ctx.scratch[CORRECTION_DROPPED] = True
        log.warning("client %d, round %d: the global correction is unusable (not finite) at local "
                    "step %d; the round's remaining steps go without it", ctx.client_id, ctx.round, t)
    return g


def client_sync(
    config: RunConfig, objective: Objective, state: ClientState, message: Payload, client_id: int
) -> tuple[ClientState, Payload]:
    """The exchange at the new global point x_r (methods with ``has_sync``).

    Like :func:`client_train`, it updates the state passed in, in place, and returns that
    same object (history, cached value, running query total, RFF weights or control
    variate): pass a state the caller owns, and reload it from its saved copy to retry.

    Reply: ``{value: f_i(x_r), num-queries, total-queries}`` plus the method's fields.
    Query cost: FZooS 1 + sync-points; SCAFFOLD-1 1 + Q.
    """
    method = get_method(config.method)
    if not method.has_sync:
        raise ConfigError(f"Method {config.method!r} has no sync exchange.")
    msg = validate(message, sync_message_spec(config, state.dim), source="sync message")
    rng = round_rng(config.seed, msg["round"], client_id, PHASE_SYNC)
    session = Session(objective, state)
    extra = method.client_sync(config, session, state, msg, rng)
    value = session.value_at(msg["x"])
    return state, {"value": value, **session.counts(), **extra}


def client_evaluate(
    config: RunConfig, objective: Objective, state: ClientState, message: Payload, client_id: int
) -> tuple[ClientState, Payload]:
    """f_i at the broadcast point (cached if already known). Query cost: 0 or 1."""
    msg = validate(message, {"x": ArraySpec(state.dim, unit_box=True)}, source="evaluate message")
    session = Session(objective, state)
    value = session.value_at(msg["x"])
    return state, {"value": value, **session.counts()}


# --------------------------------------------------------------------------------------
# Server functions
# --------------------------------------------------------------------------------------
def sample_clients(config: RunConfig, round_: int, client_ids: list[int]) -> list[int]:
    """The clients asked to take part in round ``round_`` (reproducible from the seed).

    ``ceil(fraction * N)`` of the given ids (at least one), drawn without replacement
    from ``SeedSequence([seed, round, 99])``; all of them when ``fraction == 1``.
    """
    ids = sorted(client_ids)
    if config.fraction >= 1.0:
        return ids
    k = max(1, int(np.ceil(config.fraction * len(ids))))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, round_, 99]))
    return sorted(int(c) for c in rng.choice(ids, size=k, replace=False))


def server_init(config: RunConfig, x0: np.ndarray) -> ServerState:
    """The server state of the run's method at x0, before round 1."""
    return get_method(config.method).server_state.new(config, x0)


def train_message(config: RunConfig, state: ServerState) -> Payload:
    """``{x: x_{r-1}, round: r}`` plus the method's fields."""
    msg: Payload = {"x": state.x.copy(), "round": state.round + 1}
    msg.update(get_method(config.method).train_message(config, state))
    if step_control.active(config):
        msg["lr-scale"] = config.step_start * state.lr_scale
    return msg


def sync_message(config: RunConfig, state: ServerState) -> Payload:
    """``{x: x_r, round: r}`` plus the method's sync fields."""
    msg: Payload = {"x": state.x.copy(), "round": state.round}
    msg.update(get_method(config.method).sync_message(config, state))
    return msg


def evaluate_message(state: ServerState) -> Payload:
    return {"x": state.x.copy()}


@dataclass(frozen=True)
class FailedReply:
    """What a transport returns for a client whose exchange raised (``on-client-error =
    skip``): the error and the two counts of what it queried (``num-queries``: points its
    objective was handed in this exchange; ``total-queries``: its running total after
    them). Never aggregated; only its counts are charged (:func:`collect`)."""

    error: str
    counts: Payload


@dataclass
class Aggregate:
    """Valid replies of one exchange and their renormalised weights.

    ``rejected``: client id -> why its reply was refused; ``failed``: client id -> the
    error of a client whose exchange raised (:class:`FailedReply`); ``counted``: the
    counts (``num-queries``, ``total-queries``) of rejected and failed clients whose
    counts are valid on their own, charged like an accepted reply's.
    ``num_queries``: the queries of this exchange, as :func:`account_queries` counts them
    from the clients' running totals (set by the aggregate functions);
    ``queries_by_client``: the same count per client (client id -> queries charged, one
    entry per counted reply, accepted or not), summing to ``num_queries``;
    ``refused_queries``: the part of it behind rejected or failed replies, per client; ``moved_to``: set when step
    control rejected the evaluated point and moved the global point back to the
    incumbent (its reported value).
    """

    replies: dict[int, Payload]
    weights: dict[int, float]
    rejected: dict[int, str]
    failed: dict[int, str] = field(default_factory=dict)
    counted: dict[int, Payload] = field(default_factory=dict)
    num_queries: int = 0
    queries_by_client: dict[int, int] = field(default_factory=dict)
    refused_queries: dict[int, int] = field(default_factory=dict)
    moved_to: float | None = None

    def reported(self, key: str = "value") -> float:
        """The reported F at the global point after this exchange: the weighted ``key``,
        or, when step control moved the point back to the incumbent, its value."""
        return self.moved_to if self.moved_to is not None else float(self.weighted(key))

    def weighted(self, key: str, floor: float | None = None) -> Any:
        """sum_i p_i v_i over the valid replies; with ``floor``, each client's value (or
        array of values) counts as max(v_i, floor) (the ``value-floor`` option)."""
        if floor is None:
            return sum(self.weights[c] * self.replies[c][key] for c in self.replies)
        return sum(self.weights[c] * np.maximum(self.replies[c][key], floor) for c in self.replies)

    def robust(self, key: str, config: RunConfig) -> np.ndarray:
        """Combine the vectors under ``key`` by ``config.aggregation``.

        The rules are :data:`fedzoo.aggregation.AGGREGATORS`: ``mean`` (sum_i p_i v_i),
        ``median`` (coordinate-wise) and ``clip`` (norms capped at ``clip-factor`` x the
        median norm, then the weighted mean).
        """
        vectors = {c: self.replies[c][key] for c in self.replies}
        return AGGREGATORS[config.aggregation](vectors, self.weights, config.clip_factor)


def collect(
    replies: Mapping[int, Any], weights: Mapping[int, float], spec: Mapping[str, ArraySpec | ScalarSpec], what: str
) -> Aggregate:
    """Validate every reply; drop invalid ones (logged) and renormalise the weights.

    A refused reply (rejected, or a :class:`FailedReply`) is left out of the aggregation,
    but its ``num-queries`` and ``total-queries`` are kept for :func:`account_queries`
    when they pass the spec's own rules for them (integers within the method's bounds):
    the points a client's objective was given are counted whatever its values were."""
    valid: dict[int, Payload] = {}
    rejected: dict[int, str] = {}
    failed: dict[int, str] = {}
    counted: dict[int, Payload] = {}
    count_spec = {k: spec[k] for k in COUNT_SPEC if k in spec}
    for cid, reply in replies.items():
        source = f"{what} reply of client {cid}"
        if isinstance(reply, FailedReply):
            failed[cid] = reply.error
            body: Any = reply.counts
        else:
            try:
                valid[cid] = validate(reply, spec, source=source)
                continue
            except PayloadError as err:
                rejected[cid] = str(err)
                log.warning("rejected %s", err)
            body = reply
        if isinstance(body, Mapping) and all(k in body for k in count_spec):
            try:
                counted[cid] = validate({k: body[k] for k in count_spec}, count_spec,
                                        source=f"{source} (its query counts)")
            except PayloadError as err:
                log.warning("not counted: %s", err)
    total = sum(weights[c] for c in valid)
    norm = {c: weights[c] / total for c in valid} if total > 0 else {}
    return Aggregate(valid, norm, rejected, failed, counted)


def aggregate_train(
    config: RunConfig, state: ServerState, replies: Mapping[int, Any], weights: Mapping[int, float]
) -> tuple[ServerState, Aggregate]:
    """The method's server step (by default x_r = x_{r-1} - eta sum_i p_i (x_{r-1} - x_i))
    over valid replies, then the method's combination of its reply fields.

    With fewer than ``min-replies`` valid replies the global point is unchanged (the
    round still counts). Partial participation rule: the global corrections average the
    clients that replied this round (weights renormalised); a client that missed rounds
    keeps its own control variate / RFF weights from the last round it took part in and
    corrects with the fresh global ones when it is back.
    """
    dim = state.x.size
    spec = _with_total_limit(train_reply_spec(config, dim), config, dim, state.round + 1)
    agg = collect(replies, weights, spec, "train")
    new = state.next(state.round + 1)
    agg.num_queries = account_queries(new.query_totals, agg)
    if len(agg.replies) >= config.min_replies:
        method = get_method(config.method)
        new.x = method.server_step(config, state, agg)
        method.aggregate_train(config, new, agg)
        if step_control.active(config) and step_control.complete(agg.replies, weights):
            if not step_control.judge(config, new, state.x, agg.weighted("value-start")):
                new.x = new.best_x.copy()  # x_{r-1} was worse: this round's step from it too
    return new, agg


def aggregate_sync(
    config: RunConfig, state: ServerState, replies: Mapping[int, Any], weights: Mapping[int, float]
) -> tuple[ServerState, Aggregate]:
    """Combine the sync replies as the method says (e.g. FZooS averages RFF weights)."""
    dim = state.x.size
    agg = collect(replies, weights, _with_total_limit(sync_reply_spec(config, dim), config, dim, state.round),
                  "sync")
    new = state.next()
    agg.num_queries = account_queries(new.query_totals, agg)
    if len(agg.replies) >= config.min_replies:
        get_method(config.method).aggregate_sync(config, new, agg)
        _judge_new_point(config, new, agg, weights)
    return new, agg


def aggregate_evaluate(
    config: RunConfig, state: ServerState, replies: Mapping[int, Any], weights: Mapping[int, float]
) -> tuple[ServerState, Aggregate]:
    """Collect the final evaluation (values at x_R) and count its queries."""
    agg = collect(replies, weights, _with_total_limit(EVALUATE_REPLY_SPEC, config, state.x.size, state.round),
                  "evaluate")
    new = state.next()
    agg.num_queries = account_queries(new.query_totals, agg)
    if agg.replies:
        _judge_new_point(config, new, agg, weights)
    return new, agg


def _judge_new_point(config: RunConfig, new: ServerState, agg: Aggregate,
                     weights: Mapping[int, float]) -> None:
    """Step control on the values reported at the global point ``new.x``."""
    if step_control.active(config) and step_control.complete(agg.replies, weights):
        if not step_control.judge(config, new, new.x, agg.weighted("value")):
            new.x = new.best_x.copy()
            agg.moved_to = new.best_value


def account_queries(totals: dict[int, int], agg: Aggregate) -> int:
    """Queries to charge for an exchange, from the clients' running totals (updated).

    A client's charge is its total now minus its total at its last accepted reply, so
    queries behind a reply that was lost or rejected are counted with the client's next
    accepted reply; in a run where every reply arrives this equals the sum of the
    replies' ``num-queries``. It is never less than the reply's own ``num-queries``. A
    total below the last one means the client restarted without its saved state: its
    queries since its last accepted reply cannot be known (logged), the reply's total is
    charged.
    """
    charged = 0
    agg.queries_by_client, agg.refused_queries = {}, {}
    for cid, reply in [*agg.replies.items(), *agg.counted.items()]:
        total, own = int(reply["total-queries"]), int(reply["num-queries"])
        before = totals.get(cid, 0)
        if total < before:
            log.warning(
                "client %d reports %d queries in all, fewer than the %d it reported before: it "
                "restarted without its saved state; queries since its last reply are unknown",
                cid, total, before,
            )
            before = 0
        agg.queries_by_client[cid] = max(total - before, own)
        charged += agg.queries_by_client[cid]
        totals[cid] = total
        if cid not in agg.replies:
            agg.refused_queries[cid] = agg.queries_by_client[cid]
    return charged


def client_query_counts(*aggregates: Aggregate | None) -> dict[int, int]:
    """Queries charged per client over several exchanges (e.g. a round's train and sync)."""
    out: dict[int, int] = {}
    for agg in aggregates:
        if agg is not None:
            for cid, n in agg.queries_by_client.items():
                out[cid] = out.get(cid, 0) + n
    return out
