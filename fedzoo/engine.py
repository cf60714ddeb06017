"""In-process federation engine: N clients x R rounds in this process.

The engine is the round driver (:mod:`fedzoo.rounds`) over a thread-pool transport: it
moves payloads between the pure round functions of :mod:`fedzoo.protocol` and counts
their bytes; the Flower ServerApp runs the same driver over Flower messages (same seed,
same history). Every query is counted through the clients' own reports, which tests check
against counting wrappers around the objectives.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo import protocol
from fedzoo._malloc import retain_freed_memory
from fedzoo._threads import blas_threads
from fedzoo.checkpoint import (
    check_resume_rounds,
    directory_lock,
    load_checkpoint,
    new_run_id,
    write_run_id,
)
from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError, FedZooError, ObjectiveError
from fedzoo.methods import get_method
from fedzoo.objectives.problems import FederatedProblem
from fedzoo.outdir import prepare_out_dir
from fedzoo.payload import payload_nbytes
from fedzoo.results import HistoryFile, HistoryRecorder, summary, write_history, write_summary
from fedzoo.rounds import EVALUATE, SYNC, TRAIN, RoundDriver, restore
from fedzoo.state import ClientState, ServerState

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any], int], None]
RoundCallback = Callable[[int, np.ndarray, dict[str, Any]], "bool | None"]


@dataclass
class RunResult:
    """Outcome of a run.

    Attributes:
        x: final global point (under incumbent step control, the best point reported).
        history: rows of history.csv (dicts).
        num_queries: total black-box evaluations over all clients: exactly the points
            their objectives were handed, refused replies included.
        summary: the content of summary.json.
        best_x: the global point with the lowest *reported* F (sum_i p_i f_i from the
            clients' own queries) over the run, start point included; ``best_value`` and
            ``best_round`` say which. With incumbent step control it is ``x``.
    """

    x: np.ndarray
    history: list[dict[str, Any]]
    num_queries: int
    summary: dict[str, Any]
    best_x: np.ndarray | None = None
    best_value: float = math.nan
    best_round: int = -1

    @property
    def value(self) -> float:
        return float(self.history[-1]["value"])


#: ``on-client-error``: what a client whose exchange raises does to an in-process run.
ON_CLIENT_ERROR = ("skip", "fail")


class ThreadTransport:
    """The in-process transport: each client's protocol function, run in a thread pool.

    Clients run in the pool when there is one (numpy releases the GIL in the heavy
    parts); each client only touches its own state, so the result does not depend on
    the number of threads.

    A client whose function raises (a failing objective, NaN values, an exhausted
    objective budget) is handled by ``on_client_error``:

    * ``skip`` (default): as over Flower, the client is left out of the exchange (its
      state is the one from before it, with the queries the failed exchange made added
      to its running total) and the transport returns a
      :class:`~fedzoo.protocol.FailedReply` carrying the error and exactly the points
      its objective was handed, which the server charges; the round needs
      ``min-replies`` as usual. If *every* client asked fails in one exchange the round
      driver records the round (its queries counted) and ends the run with the first
      error (nothing could work: usually a bug shared by all objectives, which another
      round would only repeat; :func:`fedzoo.rounds.raise_if_all_failed`).
    * ``fail``: the first failure ends the run
      (:class:`~fedzoo.errors.ObjectiveError` naming the client, exchange and round).
    """

    FUNCTIONS = {TRAIN: protocol.client_train, SYNC: protocol.client_sync, EVALUATE: protocol.client_evaluate}

    def __init__(self, config: RunConfig, problem: FederatedProblem, states: list[ClientState],
                 pool: ThreadPoolExecutor | None, observer: protocol.StepObserver | None = None,
                 on_client_error: str = "skip") -> None:
        self.config, self.problem, self.states, self.pool = config, problem, states, pool
        self.observer = observer
        if on_client_error not in ON_CLIENT_ERROR:
            raise ConfigError(f"on_client_error = {on_client_error!r} is not allowed; expected one of "
                              f"{list(ON_CLIENT_ERROR)}.")
        self.on_client_error = on_client_error

    def exchange(self, kind: str, message: dict[str, Any], round_: int,
                 clients: list[int]) -> tuple[dict[int, Any], int, int]:
        fn = self.FUNCTIONS[kind]
        kwargs = {"observer": self.observer} if kind == TRAIN else {}
        skip = self.on_client_error == "skip"

        def one(cid: int) -> tuple[ClientState, Any]:
            objective, state = self.problem.objectives[cid], self.states[cid]
            saved = {k: np.array(v, copy=True) for k, v in state.to_arrays().items()} if skip else None
            total_before, handed_before = state.total_queries, _handed(objective)
            try:
                return fn(self.config, objective, state, message, cid, **kwargs)
            except FedZooError as err:
                error = ObjectiveError(f"client {cid} failed in the {kind} exchange of round {round_}: {err}")
                if saved is None:
                    raise error from err
                queries = max(state.total_queries - total_before, _handed(objective) - handed_before)
                before = ClientState.from_arrays(saved, self.config)
                before.total_queries = total_before + queries
                log.warning("%s; left out of this exchange (on-client-error = skip), its %d "
                            "queries counted", error, queries)
                return before, protocol.FailedReply(str(error), {
                    "num-queries": queries, "total-queries": before.total_queries})

        pool = self.pool
        results = _wait_all([pool.submit(one, cid) for cid in clients]) if pool is not None \
            else [one(cid) for cid in clients]
        replies: dict[int, Any] = {}
        for cid, (state, reply) in zip(clients, results):
            self.states[cid], replies[cid] = state, reply
        down = payload_nbytes(message) * len(clients)
        up = sum(payload_nbytes(r) for r in replies.values() if not isinstance(r, protocol.FailedReply))
        return replies, down, up

    def before_round(self, round_: int, first: bool) -> None:
        return None

    def client_arrays(self) -> list[dict[str, Any]]:
        return [st.to_arrays() for st in self.states]


#: Seconds the main thread waits on client threads at a time: a Ctrl-C (or SIGTERM) is
#: handled between two waits even while a client's objective hangs.
WAIT_SLICE_S = 0.25


def _wait_all(futures: list[Future]) -> list[Any]:
    """The futures' results in order, waited for in slices of :data:`WAIT_SLICE_S` (a
    signal reaches the main thread at once whatever the clients do); the first failure
    in order is raised. On any exception the futures not started are cancelled."""
    try:
        pending = set(futures)
        while pending:
            pending = wait(pending, timeout=WAIT_SLICE_S).not_done
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise


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
    query_budget: int | None = None,
    on_client_error: str = "skip",
) -> RunResult:
    """Run ``config.rounds`` rounds of ``config.method`` on ``problem`` in this process.

    Args:
        problem: clients' objectives, weights and x0.
        config: the validated run configuration.
        out_dir: if given, history.csv and summary.json are written there.
        progress: called with (row, total_rounds) after every round; if it has a
            ``start`` attribute, that is called with row 0 (the start point) first.
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
        query_budget: a hard limit on the queries of the run, final evaluation included:
            no round starts that could pass it (:mod:`fedzoo.budget`).
        on_client_error: ``skip`` (default) or ``fail``: what a client whose exchange
            raises does (:class:`ThreadTransport`).

    If the run stops with an exception (a failure, Ctrl-C), the exception carries the
    rounds completed so far as ``err.partial`` (a :class:`RunResult`), and ``out_dir``
    holds them with a ``failed`` / ``interrupted`` summary.

    ``out_dir`` and ``checkpoint_dir``, where they exist, are locked for the run
    (:func:`fedzoo.checkpoint.directory_lock`): a second run writing there is refused.

    With ``out_dir``, history.csv is on disk from the start (header and row 0) and gets
    each round's row as the round ends, fsync'd (:class:`fedzoo.results.HistoryFile`):
    a killed run leaves every round it finished. Clients work in threads (one with
    ``workers=1``) while this thread waits: a KeyboardInterrupt or SystemExit ends the
    run at once even while an objective hangs (summary.json status ``interrupted``), and
    the pool is left without waiting for a hung client (its thread cannot be stopped;
    the ``fedzoo`` command then ends the process).
    """
    workers = min(problem.num_clients, workers or os.cpu_count() or 1)
    retain_freed_memory()  # many medium temporaries per step: reuse heap pages
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fedzoo-client")
    interrupted = False
    try:
        with blas_threads(1), directory_lock(out_dir, checkpoint_dir):
            return _run(problem, config, out_dir, progress, final_evaluation, observer, pool,
                        round_callback, checkpoint_dir, resume, query_budget, on_client_error)
    except (KeyboardInterrupt, SystemExit):
        interrupted = True
        raise
    finally:  # interrupted: do not wait for a client that may never return
        pool.shutdown(wait=not interrupted, cancel_futures=True)


def _handed(objective: Any) -> int:
    """Points handed to ``objective`` so far (``Objective.num_queries``; 0 if it has none)."""
    count = getattr(objective, "num_queries", 0)
    return count if isinstance(count, int) else 0


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
    query_budget: int | None = None,
    on_client_error: str = "skip",
) -> RunResult:
    t_start = time.perf_counter()
    config.check_limits(problem.dim, problem.num_clients)
    get_method(config.method).check_objectives(problem.objectives)
    weights = {cid: float(w) for cid, w in enumerate(problem.weights)}
    states = [protocol.new_client_state(config, problem.dim) for _ in problem.objectives]
    server = protocol.server_init(config, problem.x0)
    rec = HistoryRecorder(problem.global_value if problem.is_synthetic else None)
    rec.start(server.x, problem.num_clients)
    meta = {"config": {k: v for k, v in config.to_dict().items() if k != "rounds"},
            "problem": problem.name, "dim": problem.dim, "clients": problem.num_clients,
            "info": {k: v for k, v in problem.info.items() if isinstance(v, (int, float, str))}}
    done = 0
    run_id = new_run_id()
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
        if len(ckpt.clients) != problem.num_clients:
            raise ConfigError(f"The checkpoint in {checkpoint_dir} holds {len(ckpt.clients)} client "
                              f"states, expected {problem.num_clients}.")
        server, done = restore(ckpt, config, rec)
        states[:] = [ClientState.from_arrays(a, config) for a in ckpt.clients]
        run_id = ckpt.run_id
        log.info("resuming run %s after round %d from %s", run_id, ckpt.round, checkpoint_dir)
    history = None
    if out_dir is not None:  # refused before round 1 if the results could not be written
        prepare_out_dir(out_dir, overwrite=True)
        history = HistoryFile(Path(out_dir) / "history.csv")
        history.sync(rec.rows)  # the header and row 0 (the rows of a resumed run)
    if checkpoint_dir is not None:  # the run this directory's checkpoints belong to
        write_run_id(checkpoint_dir, run_id)

    best = _BestPoint(server.x)
    start = getattr(progress, "start", None)
    if callable(start) and not done:
        start(rec.rows[0])  # e.g. TensorBoard's step 0

    def on_round(r: int, state: ServerState, row: dict[str, Any]) -> bool:
        if history is not None:  # this round's row on disk before anything else
            history.sync(rec.rows)
        best.see(r, state.x, rec.rows)
        if progress is not None:
            progress(row, config.rounds)
        return round_callback is not None and bool(round_callback(r, state.x.copy(), row))

    transport = ThreadTransport(config, problem, states, pool, observer, on_client_error)
    driver = RoundDriver(config, transport, weights, rec,
                         server, on_round=on_round, checkpoint_dir=checkpoint_dir, checkpoint_meta=meta,
                         query_budget=int(query_budget or 0), run_id=run_id)
    info = {"name": problem.name, "dim": problem.dim, "clients": problem.num_clients,
            "optimum_value": problem.optimum_value, **problem.info}

    def save(status: str = "completed", error: str | None = None) -> dict[str, Any]:
        summ = summary(rec.rows, config.to_dict(), info, "inprocess", time.perf_counter() - t_start,
                       status=status, error=error, query_budget=int(query_budget or 0),
                       run_id=run_id)
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            write_history(rec.rows, out / "history.csv")
            write_summary(summ, out / "summary.json")
        return summ

    def result(summ: dict[str, Any]) -> RunResult:
        best.see(int(rec.rows[-1]["round"]), driver.server.x, rec.rows)
        return RunResult(driver.server.x.copy(), rec.rows, int(rec.rows[-1]["queries"]), summ,
                         best.x, best.value, best.round)

    try:
        driver.run(done + 1, final_evaluation=final_evaluation)
    except BaseException as err:  # keep the rounds completed so far, then re-raise
        interrupted = isinstance(err, (KeyboardInterrupt, SystemExit))
        summ = {}
        try:
            summ = save("interrupted" if interrupted else "failed", f"{type(err).__name__}: {err}")
        except Exception as save_err:  # noqa: BLE001 - the run's own error matters more
            log.error("could not save the partial results in %s: %s", out_dir, save_err)
        try:
            err.partial = result(summ)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - e.g. an exception type that takes no attributes
            pass
        raise
    return result(save())


class _BestPoint:
    """The global point with the lowest reported F seen so far.

    A row's reported value may arrive a round later (single-exchange methods report
    F(x_r) with round r+1's train replies), so the points of rows still waiting for
    theirs are kept until it arrives."""

    def __init__(self, x0: np.ndarray) -> None:
        self.pending: dict[int, np.ndarray] = {0: x0.copy()}
        self.x: np.ndarray | None = None
        self.value, self.round = math.nan, -1

    def see(self, r: int, x: np.ndarray, rows: list[dict[str, Any]]) -> None:
        self.pending.setdefault(r, x.copy())
        by_round = {int(row["round"]): row for row in rows[-3:]}
        for pr in sorted(self.pending):
            row = by_round.get(pr)
            value = math.nan if row is None else float(row["reported_value"])
            if math.isfinite(value):
                if not value >= self.value:  # also when self.value is NaN
                    self.x, self.value, self.round = self.pending[pr], value, pr
                del self.pending[pr]
            elif pr < r - 1:  # never reported (a failed round): drop it
                del self.pending[pr]
