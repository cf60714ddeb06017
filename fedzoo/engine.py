"""In-process federation engine: N clients x R rounds over :mod:`fedzoo.protocol`.

The engine only moves payloads between the pure round functions, counts their bytes and
times rounds; it is the reference the Flower strategy must reproduce (same seed, same
history). Every query is counted through the clients' own reports, which tests check
against counting wrappers around the objectives.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo import protocol
from fedzoo._malloc import retain_freed_memory
from fedzoo._threads import blas_threads
from fedzoo.checkpoint import Checkpoint, check_resume_rounds, load_checkpoint, save_checkpoint
from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError, FedZooError, ObjectiveError
from fedzoo.objectives.problems import FederatedProblem
from fedzoo.payload import payload_nbytes
from fedzoo.results import HistoryRecorder, summary, write_history, write_summary

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any], int], None]
RoundCallback = Callable[[int, np.ndarray, dict[str, Any]], "bool | None"]


@dataclass
class RunResult:
    """Outcome of a run.

    Attributes:
        x: final global point.
        history: rows of history.csv (dicts).
        num_queries: total black-box evaluations over all clients.
        summary: the content of summary.json.
    """

    x: np.ndarray
    history: list[dict[str, Any]]
    num_queries: int
    summary: dict[str, Any]

    @property
    def value(self) -> float:
        return float(self.history[-1]["value"])


def _exchange(
    fn: Callable[..., tuple[protocol.ClientState, dict[str, Any]]],
    config: RunConfig,
    problem: FederatedProblem,
    states: list[protocol.ClientState],
    message: dict[str, Any],
    what: str,
    round_: int,
    pool: ThreadPoolExecutor | None,
    clients: list[int],
    **kwargs: Any,
) -> tuple[dict[int, dict[str, Any]], int, int]:
    """Send one message to every client; returns replies and bytes (down, up).

    Clients run in the thread pool when given (numpy releases the GIL in the heavy
    parts); each client only touches its own state, so the result does not depend on
    the number of threads.
    """

    def one(cid: int) -> tuple[protocol.ClientState, dict[str, Any]]:
        try:
            return fn(config, problem.objectives[cid], states[cid], message, cid, **kwargs)
        except FedZooError as err:
            raise ObjectiveError(f"client {cid} failed in the {what} exchange of round {round_}: {err}") from err

    results = list(pool.map(one, clients)) if pool is not None else [one(cid) for cid in clients]
    replies: dict[int, dict[str, Any]] = {}
    for cid, (state, reply) in zip(clients, results):
        states[cid], replies[cid] = state, reply
    down = payload_nbytes(message) * len(clients)
    up = sum(payload_nbytes(r) for r in replies.values())
    return replies, down, up


def run_federation(
    problem: FederatedProblem,
    config: RunConfig,
    *,
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    final_evaluation: bool = True,
    observer: protocol.StepObserver | None = None,
    workers: int | None = None,
    round_callback: RoundCallback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> RunResult:
    """Run ``config.rounds`` rounds of ``config.method`` on ``problem`` in this process.

    Args:
        problem: clients' objectives, weights and x0.
        config: the validated run configuration.
        out_dir: if given, history.csv and summary.json are written there.
        progress: called with (row, total_rounds) after every round.
        final_evaluation: for single-exchange methods, query f_i(x_R) once at the end so
            the last row has a reported value (N counted queries).
        observer: passed to :func:`fedzoo.protocol.client_train` (per-step diagnostics).
        workers: client threads (default: one per core, at most N); BLAS runs one thread
            per client. The history does not depend on it.
        round_callback: called after every round with (round, x_r, row); returning True
            ends the run early (e.g. an attack that succeeded). Reporting only: it must
            not query the clients' objectives.
        checkpoint_dir: if given, an atomic checkpoint is written there after every
            round (:mod:`fedzoo.checkpoint`).
        resume: continue the run checkpointed in ``checkpoint_dir`` up to
            ``config.rounds`` rounds in total; the configuration must match the saved one
            except for ``rounds``, which may not be below the checkpoint's round
            (:func:`fedzoo.checkpoint.check_resume_rounds`). The final history equals
            an uninterrupted run's (``wall_s`` aside).
    """
    workers = min(problem.num_clients, workers or os.cpu_count() or 1)
    retain_freed_memory()  # many medium temporaries per step: reuse heap pages
    with blas_threads(1), ThreadPoolExecutor(workers) if workers > 1 else _no_pool() as pool:
        return _run(problem, config, out_dir, progress, final_evaluation, observer, pool,
                    round_callback, checkpoint_dir, resume)


class _no_pool:  # noqa: N801 - a null context manager yielding no pool
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _run(
    problem: FederatedProblem,
    config: RunConfig,
    out_dir: str | Path | None,
    progress: ProgressFn | None,
    final_evaluation: bool,
    observer: protocol.StepObserver | None,
    pool: ThreadPoolExecutor | None,
    round_callback: RoundCallback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> RunResult:
    t_start = time.perf_counter()
    config.check_clients(problem.num_clients)
    weights = {cid: float(w) for cid, w in enumerate(problem.weights)}
    states = [protocol.new_client_state(config, problem.dim) for _ in problem.objectives]
    server = protocol.server_init(config, problem.x0)
    rec = HistoryRecorder(problem.global_value if problem.is_synthetic else None)
    rec.start(server.x, problem.num_clients)
    if config.method == "fo" and not all(hasattr(o, "gradient") for o in problem.objectives):
        raise ObjectiveError("Method 'fo' needs exact gradients: use a synthetic problem.")
    meta = {"config": {k: v for k, v in config.to_dict().items() if k != "rounds"},
            "problem": problem.name, "dim": problem.dim, "clients": problem.num_clients,
            "info": {k: v for k, v in problem.info.items() if isinstance(v, (int, float, str))}}
    first = 1
    if resume:
        if checkpoint_dir is None:
            raise ConfigError("resume needs the directory of the checkpoint to resume from.")
        ckpt = load_checkpoint(checkpoint_dir)
        saved = {k: v for k, v in ckpt.meta.items() if k != "rounds"}
        if saved != meta:
            raise ConfigError(
                f"The checkpoint in {checkpoint_dir} belongs to another run: saved {ckpt.meta}, "
                f"requested {meta} (only 'rounds' may change on resume)."
            )
        check_resume_rounds(config.rounds, ckpt.round, checkpoint_dir)
        server = protocol.ServerState.from_arrays(ckpt.server)
        states = [protocol.ClientState.from_arrays(a, config) for a in ckpt.clients]
        rec.rows = ckpt.rows
        first = ckpt.round + 1
        log.info("resuming after round %d from %s", ckpt.round, checkpoint_dir)

    sagg = None
    for r in range(first, config.rounds + 1):
        t0 = time.perf_counter()
        clients = protocol.sample_clients(config, r, list(range(problem.num_clients)))
        msg = protocol.train_message(config, server)
        replies, down, up = _exchange(
            protocol.client_train, config, problem, states, msg, "train", r, pool, clients, observer=observer
        )
        server, agg = protocol.aggregate_train(config, server, replies, weights)
        queries = agg.num_queries
        if agg.replies:
            rec.report(r - 1, agg.weighted("value-start"))
        if config.uses_sync:
            smsg = protocol.sync_message(config, server)
            sreplies, sdown, sup = _exchange(protocol.client_sync, config, problem, states, smsg, "sync", r, pool, clients)
            server, sagg = protocol.aggregate_sync(config, server, sreplies, weights)
            down, up, queries = down + sdown, up + sup, queries + sagg.num_queries
        row = rec.end_round(r, server.x, queries, up, down, time.perf_counter() - t0, agg.replies,
                            protocol.client_query_counts(agg, sagg))
        if config.uses_sync and sagg is not None and sagg.replies:
            rec.report(r, sagg.weighted("value"))
        if progress is not None:
            progress(row, config.rounds)
        log.info("round %d: value=%.6g queries=%d (%.2fs)", r, row["value"], row["queries"], row["wall_s"])
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, Checkpoint(
                r, server.to_arrays(), [st.to_arrays() for st in states], rec.rows,
                {**meta, "rounds": config.rounds}))
        if round_callback is not None and round_callback(r, server.x.copy(), row):
            break

    if final_evaluation and math.isnan(rec.rows[-1]["reported_value"]):
        t0 = time.perf_counter()
        emsg = protocol.evaluate_message(server)
        ereplies, down, up = _exchange(protocol.client_evaluate, config, problem, states, emsg, "evaluate", rec.rows[-1]["round"], pool,
                                      list(range(problem.num_clients)))
        server, eagg = protocol.aggregate_evaluate(config, server, ereplies, weights)
        rec.add_to_last(eagg.num_queries, up, down, time.perf_counter() - t0, eagg.queries_by_client)
        if eagg.replies:
            rec.report(rec.rows[-1]["round"], eagg.weighted("value"))

    wall = time.perf_counter() - t_start
    info = {"name": problem.name, "dim": problem.dim, "clients": problem.num_clients,
            "optimum_value": problem.optimum_value, **problem.info}
    summ = summary(rec.rows, config.to_dict(), info, "inprocess", wall)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_history(rec.rows, out / "history.csv")
        write_summary(summ, out / "summary.json")
    return RunResult(server.x.copy(), rec.rows, int(rec.rows[-1]["queries"]), summ)
