"""Serve a client's black-box objective over gRPC (service ``fedzoo.oracle.v1.Oracle``).

The server is a thin shell around an :class:`~fedzoo.objectives.base.Objective`: it
decodes a batch, lets the objective validate, charge its budget and evaluate, and maps
fedzoo errors to gRPC status codes (see ``proto/oracle.proto``):

==========================================  ====================  ===================
cause                                       status                charged
==========================================  ====================  ===================
bad shape, n > max_batch, non-finite point,  INVALID_ARGUMENT      no
point outside the unit box
batch exceeds the query budget              RESOURCE_EXHAUSTED    no
objective raised / returned NaN or the      INTERNAL              yes (it was called)
wrong number of values
==========================================  ====================  ===================

The trailing metadata key ``fedzoo-error`` carries the fedzoo error class name so a client
can tell these from transport errors with the same code (e.g. "message too large").

Evaluations are serialised by a lock (objectives are not assumed thread-safe), so the
server's query count is exact. A request carrying a ``request_id`` is evaluated at most
once: a retry with the same id and the same points waits for the first attempt and gets
its outcome replayed (not evaluated or charged again). The last ``replay_size`` outcomes
are kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import tempfile
import threading
from collections import OrderedDict
from concurrent import futures
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from fedzoo_proto import API_VERSION, oracle_pb2, oracle_pb2_grpc

from fedzoo.errors import (
    BudgetExceededError,
    ConfigError,
    DomainError,
    FedZooError,
    NonFiniteError,
    ShapeError,
)
from fedzoo.objectives.base import Objective, as_points

logger = logging.getLogger(__name__)

ERROR_METADATA_KEY = "fedzoo-error"
DEFAULT_MAX_BATCH = 10000
DEFAULT_REPLAY_SIZE = 64
# gRPC's default receive limit; raised when max_batch x dim doubles need more.
_MIN_MESSAGE_BYTES = 4 * 1024 * 1024


def _server_version() -> str:
    try:
        return metadata.version("fedzoo")
    except metadata.PackageNotFoundError:
        return "unknown"


def message_limit(max_batch: int, dim: int) -> int:
    """Bytes a message of ``max_batch`` points of dimension ``dim`` may need (with slack)."""
    return max(_MIN_MESSAGE_BYTES, 8 * max_batch * dim + 64 * 1024)


@dataclass
class _Outcome:
    """What one request produced: a reply, or a status code and message."""

    reply: oracle_pb2.EvaluateReply | None = None
    code: grpc.StatusCode | None = None
    message: str = ""
    error_type: str = ""


@dataclass
class _Record:
    """A request_id's first attempt; retries wait on ``done`` and replay ``outcome``."""

    digest: bytes
    done: threading.Event = field(default_factory=threading.Event)
    outcome: _Outcome | None = None


class OracleServicer(oracle_pb2_grpc.OracleServicer):
    """gRPC servicer evaluating one :class:`Objective`.

    Args:
        objective: the black box; its ``budget`` (if any) is the server's budget.
        max_batch: largest number of points one Evaluate call may carry.
        replay_size: how many request outcomes are kept for retries with a request_id.
    """

    def __init__(
        self,
        objective: Objective,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        replay_size: int = DEFAULT_REPLAY_SIZE,
    ) -> None:
        if int(max_batch) != max_batch or max_batch < 1:
            raise ConfigError(f"max_batch must be an integer >= 1, got {max_batch!r}.")
        if int(replay_size) != replay_size or replay_size < 1:
            raise ConfigError(f"replay_size must be an integer >= 1, got {replay_size!r}.")
        self.objective = objective
        self.max_batch = int(max_batch)
        self.replay_size = int(replay_size)
        self._eval_lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._version = _server_version()

    # -- budget state ----------------------------------------------------------------
    def _budget_fields(self) -> dict[str, Any]:
        remaining = self.objective.remaining
        return {
            "has_budget": remaining is not None,
            "remaining_budget": max(remaining, 0) if remaining is not None else 0,
        }

    # -- RPCs ------------------------------------------------------------------------
    def Describe(  # noqa: N802 (gRPC method name)
        self, request: oracle_pb2.DescribeRequest, context: grpc.ServicerContext
    ) -> oracle_pb2.DescribeReply:
        budget = self.objective.budget
        return oracle_pb2.DescribeReply(
            dim=self.objective.dim,
            lower=0.0,
            upper=1.0,
            budget=budget or 0,
            total_queries=self.objective.num_queries,
            max_batch=self.max_batch,
            name=self.objective.name,
            api_version=API_VERSION,
            server_version=self._version,
            **self._budget_fields(),
        )

    def Evaluate(  # noqa: N802 (gRPC method name)
        self, request: oracle_pb2.EvaluateRequest, context: grpc.ServicerContext
    ) -> oracle_pb2.EvaluateReply:
        try:
            X = self._decode(request)
        except (ShapeError, NonFiniteError, DomainError) as err:
            return self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, str(err), type(err).__name__
            )

        if not request.request_id:
            outcome = self._evaluate(X)
            return self._finish(context, outcome, replayed=False)

        digest = hashlib.blake2b(X.tobytes(), digest_size=16).digest()
        with self._records_lock:
            record = self._records.get(request.request_id)
            first = record is None
            if first:
                record = _Record(digest)
                self._records[request.request_id] = record
                self._evict()
        if record.digest != digest:
            return self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request_id {request.request_id!r} was already used for a different batch; "
                "expected a fresh request_id per batch (reuse it only to retry the same points).",
                "PayloadError",
            )
        if first:
            try:
                record.outcome = self._evaluate(X)
            finally:
                record.done.set()
        elif not record.done.wait(timeout=context.time_remaining()):
            return self._abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"request {request.request_id!r} is still being evaluated by an earlier "
                "attempt; retry with the same request_id to collect its result.",
                "",
            )
        assert record.outcome is not None
        return self._finish(context, record.outcome, replayed=not first)

    # -- helpers ---------------------------------------------------------------------
    def _decode(self, request: oracle_pb2.EvaluateRequest) -> np.ndarray:
        n, d, dim = request.n, request.d, self.objective.dim
        if d != dim:
            raise ShapeError(f"Expected points of dimension d={dim}, got d={d}.")
        if n < 1:
            raise ShapeError(f"Expected a batch of n >= 1 points, got n={n}.")
        if n > self.max_batch:
            raise ShapeError(
                f"A batch of n={n} points exceeds this server's max_batch={self.max_batch}; "
                "split it into batches of at most max_batch points."
            )
        if len(request.x) != n * d:
            raise ShapeError(
                f"Expected n*d = {n}*{d} = {n * d} coordinates in x (row-major), "
                f"got {len(request.x)}."
            )
        X = np.asarray(request.x, dtype=np.float64).reshape(n, d)
        return as_points(X, dim)

    def _evaluate(self, X: np.ndarray) -> _Outcome:
        n = X.shape[0]
        with self._eval_lock:
            try:
                values = self.objective(X)
            except BudgetExceededError as err:
                return _Outcome(
                    code=grpc.StatusCode.RESOURCE_EXHAUSTED,
                    message=str(err),
                    error_type=type(err).__name__,
                )
            except FedZooError as err:  # ObjectiveError, NonFiniteError on the output
                logger.warning("objective failed on a batch of %d points: %s", n, err)
                return _Outcome(
                    code=grpc.StatusCode.INTERNAL,
                    message=f"The objective failed on a batch of {n} points: {err}",
                    error_type="ObjectiveError",
                )
            except Exception as err:  # a bug below the Objective contract; keep serving
                logger.exception("unexpected error evaluating a batch of %d points", n)
                return _Outcome(
                    code=grpc.StatusCode.INTERNAL,
                    message=f"The objective failed on a batch of {n} points: {err!r}",
                    error_type="ObjectiveError",
                )
            reply = oracle_pb2.EvaluateReply(
                values=values.tolist(),
                total_queries=self.objective.num_queries,
                **self._budget_fields(),
            )
        return _Outcome(reply=reply)

    def _finish(
        self, context: grpc.ServicerContext, outcome: _Outcome, *, replayed: bool
    ) -> oracle_pb2.EvaluateReply:
        if outcome.reply is None:
            assert outcome.code is not None
            context.set_trailing_metadata(((ERROR_METADATA_KEY, outcome.error_type),))
            context.abort(outcome.code, outcome.message)
        if not replayed:
            return outcome.reply
        reply = oracle_pb2.EvaluateReply()
        reply.CopyFrom(outcome.reply)
        reply.replayed = True
        return reply

    def _abort(
        self,
        context: grpc.ServicerContext,
        code: grpc.StatusCode,
        message: str,
        error_type: str,
    ) -> oracle_pb2.EvaluateReply:
        if error_type:
            context.set_trailing_metadata(((ERROR_METADATA_KEY, error_type),))
        context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    def _evict(self) -> None:
        """Drop the oldest finished records beyond ``replay_size`` (records lock held)."""
        excess = len(self._records) - self.replay_size
        for key in list(self._records):
            if excess <= 0:
                break
            if self._records[key].done.is_set():
                del self._records[key]
                excess -= 1


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def start_oracle_server(
    objective: Objective,
    *,
    host: str = "127.0.0.1",
    port: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_workers: int = 4,
) -> tuple[grpc.Server, int]:
    """Start serving ``objective``; return the started server and the bound port.

    Args:
        objective: the black box to serve (its budget is the server's budget).
        host: interface to bind (default loopback only).
        port: TCP port; 0 picks a free one (the chosen port is returned and logged).
        tls_cert: path of a PEM certificate chain; with ``tls_key``, serves over TLS.
        tls_key: path of the PEM private key of ``tls_cert``.
        max_batch: largest batch (points) one Evaluate call may carry.
        max_workers: threads handling RPCs (evaluations still run one at a time).

    Raises:
        ConfigError: only one of tls_cert / tls_key given, unreadable files, bad limits,
            or the address cannot be bound.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError(
            "TLS needs both tls_cert and tls_key (PEM files), got only "
            f"{'tls_cert' if tls_cert is not None else 'tls_key'}."
        )
    if int(port) != port or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer in [0, 65535] (0: any free), got {port!r}.")
    if int(max_workers) != max_workers or max_workers < 1:
        raise ConfigError(f"max_workers must be an integer >= 1, got {max_workers!r}.")
    servicer = OracleServicer(objective, max_batch=max_batch)
    limit = message_limit(servicer.max_batch, objective.dim)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=int(max_workers), thread_name_prefix="oracle"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    oracle_pb2_grpc.add_OracleServicer_to_server(servicer, server)
    address = _format_address(host, int(port))
    try:
        if tls_cert is not None and tls_key is not None:
            try:
                cert = Path(tls_cert).read_bytes()
                key = Path(tls_key).read_bytes()
            except OSError as err:
                raise ConfigError(f"Cannot read the TLS certificate or key: {err}") from err
            credentials = grpc.ssl_server_credentials([(key, cert)])
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as err:  # grpc >= 1.50 raises when it cannot bind
        raise ConfigError(f"Cannot bind the oracle server to {address}: {err}") from err
    if bound == 0:
        raise ConfigError(f"Cannot bind the oracle server to {address} (port in use?).")
    server.start()
    logger.info("oracle listening on %s", _format_address(host, bound))
    logger.info(
        "serving %r: dim=%d, budget=%s, max_batch=%d, tls=%s",
        objective.name,
        objective.dim,
        objective.budget,
        servicer.max_batch,
        tls_cert is not None,
    )
    return server, bound


def serve(
    objective: Objective,
    *,
    host: str = "127.0.0.1",
    port: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_workers: int = 4,
) -> grpc.Server:
    """Start serving ``objective`` and return the started ``grpc.Server``.

    Same arguments as :func:`start_oracle_server`, which also returns the bound port
    (needed with ``port=0``; the port is logged as "oracle listening on HOST:PORT").
    """
    server, _ = start_oracle_server(
        objective,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        max_batch=max_batch,
        max_workers=max_workers,
    )
    return server


def write_port_file(path: str | os.PathLike[str], port: int) -> None:
    """Write ``port`` (decimal, newline) to ``path`` atomically (readers never see half)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{port}\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_forever(
    objective: Objective,
    *,
    host: str = "127.0.0.1",
    port: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_workers: int = 4,
    port_file: str | os.PathLike[str] | None = None,
    grace_s: float = 2.0,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully (blocking; main thread only).

    In-flight calls get ``grace_s`` seconds to finish. With ``port_file``, the bound port
    is written there once the server accepts calls and the file is removed on shutdown.
    Other arguments as in :func:`start_oracle_server`.
    """
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        logger.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server: grpc.Server | None = None
    try:
        server, bound = start_oracle_server(
            objective,
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            max_batch=max_batch,
            max_workers=max_workers,
        )
        if port_file is not None:
            write_port_file(port_file, bound)
        while not stop.wait(timeout=1.0):
            pass
    finally:
        if server is not None:
            server.stop(grace_s).wait()
            logger.info("oracle stopped after %d queries", objective.num_queries)
        if port_file is not None and server is not None:
            Path(port_file).unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
