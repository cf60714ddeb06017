"""Serve a client's black-box objective over gRPC (service ``fedzoo.oracle.v1.Oracle``).

The server is a thin shell around an :class:`~fedzoo.objectives.base.Objective`: it
decodes a batch, lets the objective validate, charge its budget and evaluate, and maps
fedzoo errors to gRPC status codes (see ``proto/oracle.proto``):

==========================================  ====================  ===================
cause                                       status                charged
==========================================  ====================  ===================
bad shape, n > max_batch, non-finite point,  INVALID_ARGUMENT      no
point outside the unit box, a request that
protobuf cannot decode
batch exceeds the query budget              RESOURCE_EXHAUSTED    no
message over the size limit (gRPC's own,    RESOURCE_EXHAUSTED    no
no ``fedzoo-error``)
no or wrong token                           UNAUTHENTICATED       no
objective raised / returned NaN or the      INTERNAL              yes (it was called)
wrong number of values
==========================================  ====================  ===================

The trailing metadata key ``fedzoo-error`` carries the fedzoo error class name so a client
can tell these from transport errors with the same code (e.g. "message too large").

Evaluations are serialised by a lock (objectives are not assumed thread-safe), so the
server's query count is exact. A request carrying a ``request_id`` (at most
:data:`MAX_REQUEST_ID_CHARS` characters) is evaluated at most once: a retry with the same
id and the same points waits for the first attempt and gets its outcome replayed (not
evaluated or charged again). The last ``replay_size`` outcomes are kept, and no more than
``replay_bytes`` bytes of them (oldest evicted first).

A batch whose caller has given up (deadline passed, call cancelled) while it waited for
the evaluation lock is not evaluated and not charged.

Open networks (threat model in ``proto/README.md``): with a shared ``token`` every call
must carry the metadata ``authorization: Bearer <token>`` (compared in constant time) or
it is refused with ``UNAUTHENTICATED`` by :class:`AuthGate`, an interceptor that reads the
call's headers before its body is received: the body of a refused call is never read,
decoded or charged, nor buffered beyond gRPC's default HTTP/2 stream window (the server
turns off the window growth by BDP probing); with
``tls_client_ca`` (mutual TLS) callers must present a certificate signed by that CA. A
server bound to anything but a loopback address refuses to start without one of the two.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import signal
import tempfile
import threading
import time
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
from fedzoo_oracle.client import (  # noqa: F401 (load_token: for the CLI)
    TOKEN_ENV,
    bearer_token_valid,
    doubles,
    is_loopback,
    load_token,
    with_doubles,
)

logger = logging.getLogger(__name__)

ERROR_METADATA_KEY = "fedzoo-error"
DEFAULT_MAX_BATCH = 10000
DEFAULT_REPLAY_SIZE = 64
# Bytes of replayable outcomes kept (on top of the replay_size count cap).
DEFAULT_REPLAY_BYTES = 16 * 1024 * 1024
# Longest request_id accepted (a uuid4 hex is 32 characters).
MAX_REQUEST_ID_CHARS = 128
# RPCs in progress (running or queued for a thread) beyond which new ones are refused.
DEFAULT_MAX_CONCURRENT_RPCS = 64
# Bookkeeping charged per kept outcome on top of its reply's bytes (key, digest, event,
# dataclasses); an over-estimate of CPython's actual cost.
_RECORD_OVERHEAD = 2048
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


def record_bytes_limit(max_batch: int) -> int:
    """The most bytes one kept outcome may be charged: a reply of ``max_batch`` values,
    the longest request_id (4 bytes per character at worst) and the bookkeeping."""
    return 8 * max_batch + 64 + 4 * MAX_REQUEST_ID_CHARS + _RECORD_OVERHEAD


UNAUTHENTICATED_DETAILS = (
    "This oracle requires a shared token: send the metadata 'authorization: Bearer <token>' "
    f"(RemoteOracle: token=, token_file= or the {TOKEN_ENV} environment variable). Nothing "
    "was evaluated or charged."
)


def _token_matches(metadata: Any, token_digest: bytes | None) -> tuple[bool, bool]:
    """(whether ``metadata`` carries ``authorization: Bearer <token>`` with the token of
    ``token_digest``, whether it carried an ``authorization`` entry at all)."""
    presented = ""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            presented = value
            break
    if token_digest is None:
        return True, bool(presented)
    scheme, _, credential = presented.strip().partition(" ")
    digest = hashlib.sha256(credential.strip().encode("utf-8", "replace")).digest()
    # compare_digest on fixed-length digests: the time taken says nothing about the
    # token, not even its length.
    ok = hmac.compare_digest(digest, token_digest) and scheme.lower() == "bearer"
    return ok, bool(presented)


@dataclass
class _Outcome:
    """What one request produced: a reply, or a status code and message."""

    reply: oracle_pb2.EvaluateReply | None = None
    code: grpc.StatusCode | None = None
    message: str = ""
    error_type: str = ""
    abandoned: bool = False  # not evaluated: the caller had given up

    def nbytes(self) -> int:
        """Bytes this outcome is charged against the replay byte budget (estimate)."""
        reply = self.reply.ByteSize() if self.reply is not None else 0
        return reply + len(self.message.encode()) + len(self.error_type)


@dataclass
class _Record:
    """A request_id's first attempt; retries wait on ``done`` and replay ``outcome``."""

    digest: bytes
    done: threading.Event = field(default_factory=threading.Event)
    outcome: _Outcome | None = None
    nbytes: int = 0  # charged against the replay byte budget once done


class OracleServicer(oracle_pb2_grpc.OracleServicer):
    """gRPC servicer evaluating one :class:`Objective`.

    Args:
        objective: the black box; its ``budget`` (if any) is the server's budget.
        max_batch: largest number of points one Evaluate call may carry.
        replay_size: how many request outcomes are kept for retries with a request_id.
        replay_bytes: how many bytes of outcomes are kept (oldest evicted first); at
            least :func:`record_bytes_limit` of ``max_batch`` (one full reply).
        token: shared secret every call must present as ``authorization: Bearer
            <token>``; None: no token check.
    """

    def __init__(
        self,
        objective: Objective,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        replay_size: int = DEFAULT_REPLAY_SIZE,
        replay_bytes: int = DEFAULT_REPLAY_BYTES,
        token: str | None = None,
    ) -> None:
        if int(max_batch) != max_batch or max_batch < 1:
            raise ConfigError(f"max_batch must be an integer >= 1, got {max_batch!r}.")
        if int(replay_size) != replay_size or replay_size < 1:
            raise ConfigError(f"replay_size must be an integer >= 1, got {replay_size!r}.")
        one_reply = record_bytes_limit(int(max_batch))
        if int(replay_bytes) != replay_bytes or replay_bytes < one_reply:
            raise ConfigError(
                f"replay_bytes must be an integer >= {one_reply} (one reply of max_batch="
                f"{int(max_batch)} values and its bookkeeping), got {replay_bytes!r}."
            )
        if token is not None:
            bearer_token_valid(token, what="token")
        self.objective = objective
        self.max_batch = int(max_batch)
        self.replay_size = int(replay_size)
        self.replay_bytes = int(replay_bytes)
        self._token_digest = (
            hashlib.sha256(token.encode("ascii")).digest() if token is not None else None
        )
        self._eval_lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._records_bytes = 0  # sum of nbytes of the finished records kept
        self._refused = 0  # unauthenticated calls (for rate-limited logging)
        self._refused_logged_at = float("-inf")
        self._version = _server_version()

    @property
    def replay_bytes_used(self) -> int:
        """Bytes of finished outcomes currently kept for replays (at most replay_bytes)."""
        with self._records_lock:
            return self._records_bytes

    @property
    def replay_count(self) -> int:
        """Outcomes currently kept (finished or in flight)."""
        with self._records_lock:
            return len(self._records)

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
        self._authenticate(context)
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
        self._authenticate(context)
        request_id = request.request_id
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            return self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request_id is {len(request_id)} characters long; at most "
                f"{MAX_REQUEST_ID_CHARS} are allowed (a fresh uuid4 hex, 32, is expected).",
                "PayloadError",
            )
        try:
            X = self._decode(request)
        except (ShapeError, NonFiniteError, DomainError) as err:
            return self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, str(err), type(err).__name__
            )

        if not request_id:
            outcome = self._evaluate(X, context)
            return self._finish(context, outcome, replayed=False)

        digest = hashlib.blake2b(X.tobytes(), digest_size=16).digest()
        while True:
            with self._records_lock:
                record = self._records.get(request_id)
                first = record is None
                if first:
                    record = _Record(digest)
                    self._records[request_id] = record
                    self._evict()
            if record.digest != digest:
                return self._abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"request_id {request_id!r} was already used for a different batch; "
                    "expected a fresh request_id per batch (reuse it only to retry the "
                    "same points).",
                    "PayloadError",
                )
            if first:
                try:
                    record.outcome = self._evaluate(X, context)
                finally:
                    self._settle(request_id, record)
                return self._finish(context, record.outcome, replayed=False)
            if not record.done.wait(timeout=context.time_remaining()):
                return self._abort(
                    context,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"request {request_id!r} is still being evaluated by an earlier "
                    "attempt; retry with the same request_id to collect its result.",
                    "",
                )
            if record.outcome is not None and not record.outcome.abandoned:
                return self._finish(context, record.outcome, replayed=True)
            # The first attempt's caller gave up before it was evaluated (or it failed
            # unexpectedly): its record is gone; this retry evaluates the batch itself.

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
        X = doubles(request.x).reshape(n, d)
        return as_points(X, dim)

    def _authenticate(self, context: grpc.ServicerContext) -> None:
        """Abort with UNAUTHENTICATED unless the call carries the shared token.

        A second line of defence: behind :class:`AuthGate` (as :func:`start_oracle_server`
        serves it) a call without the token never gets here, nor is its request read."""
        if self._token_digest is None:
            return
        ok, presented = _token_matches(context.invocation_metadata(), self._token_digest)
        if ok:
            return
        self._log_refusal(context, "a wrong token" if presented else "no token")
        self._abort(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            UNAUTHENTICATED_DETAILS,
            "AuthenticationError",
        )

    def gate(self) -> AuthGate:
        """The interceptor that authenticates calls before their request is read (and
        answers undecodable requests with INVALID_ARGUMENT); pass it to grpc.server."""
        return AuthGate(self._token_digest, self._log_refusal)

    def _log_refusal(self, context: grpc.ServicerContext, what: str) -> None:
        """Log refused calls, at most one line per 10 s (a flood must not flood the log)."""
        now = time.monotonic()
        with self._records_lock:
            self._refused += 1
            if now - self._refused_logged_at < 10.0:
                return
            self._refused_logged_at, count = now, self._refused
        logger.warning(
            "refused an unauthenticated call from %s (%s); %d refused so far",
            context.peer(),
            what,
            count,
        )

    def _evaluate(self, X: np.ndarray, context: grpc.ServicerContext) -> _Outcome:
        n = X.shape[0]
        with self._eval_lock:
            # Waiting for the lock may have outlasted the caller: evaluating now would
            # spend the budget on values nobody will read.
            remaining = context.time_remaining()
            if not context.is_active() or (remaining is not None and remaining <= 0):
                logger.info(
                    "not evaluating a batch of %d points: its caller gave up (deadline "
                    "passed or call cancelled) before its turn; nothing charged",
                    n,
                )
                return _Outcome(
                    code=grpc.StatusCode.DEADLINE_EXCEEDED
                    if remaining is not None and remaining <= 0
                    else grpc.StatusCode.CANCELLED,
                    message=f"The caller gave up before the batch of {n} points was "
                    "evaluated; nothing was evaluated or charged.",
                    abandoned=True,
                )
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
            reply = with_doubles(
                oracle_pb2.EvaluateReply,
                "values",
                values,
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

    def _settle(self, request_id: str, record: _Record) -> None:
        """Mark ``record`` done: keep it for replays (charging its bytes), or drop it when
        its batch was not evaluated (a retry must evaluate it, not replay a refusal)."""
        outcome = record.outcome
        with self._records_lock:
            kept = self._records.get(request_id) is record
            record.done.set()  # before _evict: an outcome over the budget goes at once
            if outcome is None or outcome.abandoned:
                if kept:
                    del self._records[request_id]
            elif kept:
                record.nbytes = (
                    outcome.nbytes()
                    + len(request_id.encode())
                    + len(record.digest)
                    + _RECORD_OVERHEAD
                )
                self._records_bytes += record.nbytes
                self._evict()

    def _evict(self) -> None:
        """Drop the oldest finished records while more than ``replay_size`` are kept or
        they hold more than ``replay_bytes`` (records lock held). Records in flight stay:
        each holds an RPC thread, so there are at most max_workers of them."""
        for key in list(self._records):
            if len(self._records) <= self.replay_size and self._records_bytes <= self.replay_bytes:
                break
            record = self._records[key]
            if record.done.is_set():
                del self._records[key]
                self._records_bytes -= record.nbytes


# --------------------------------------------------------------------------------------
# The gate: authentication from the call's headers, before any request byte is read
# --------------------------------------------------------------------------------------
class _Undecodable:
    """What the lenient deserializer returns for bytes that are not a request message."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserialize: Any) -> Any:
    """``deserialize``, returning :class:`_Undecodable` instead of raising (gRPC would
    answer an exception here with ``INTERNAL``, the code for "objective failed, charged")."""

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as err:  # DecodeError, and whatever protobuf raises instead
            return _Undecodable(err)

    return parse


def _refuse_undecodable(behavior: Any) -> Any:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            context.set_trailing_metadata(((ERROR_METADATA_KEY, "PayloadError"),))
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "The request is not a valid fedzoo.oracle.v1 message (protobuf could not "
                f"decode it: {type(request.error).__name__}); expected a serialised request "
                "of this service's oracle.proto. Nothing was evaluated or charged.",
            )
        return behavior(request, context)

    return run


class AuthGate(grpc.ServerInterceptor):
    """Checks the shared token in a call's headers before its request is read.

    gRPC hands an interceptor the call's metadata (HTTP/2 headers, which arrive before the
    body) before the request message is received. A call without the token gets a
    handler that reads nothing: it is a client-streaming handler whose behaviour aborts
    with ``UNAUTHENTICATED`` without pulling a message, so gRPC never starts receiving the
    body (HTTP/2 flow control stops the caller after a stream window) and nothing is
    decoded, evaluated or charged. Refusals run on their own thread, so they neither wait
    behind evaluations nor take threads from authenticated callers.

    Authenticated calls get the service's handler with a deserializer that turns bytes
    protobuf cannot decode into ``INVALID_ARGUMENT`` (gRPC's own answer is ``INTERNAL``).
    """

    def __init__(self, token_digest: bytes | None, on_refusal: Any) -> None:
        self._token_digest = token_digest
        self._on_refusal = on_refusal
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._lock = threading.Lock()
        refusals = futures.ThreadPoolExecutor(1, thread_name_prefix="oracle-refuse")
        refuse = self._refuse

        # A function (not a bound method) can carry the attribute gRPC looks for.
        def behaviour(request_iterator: Any, context: grpc.ServicerContext) -> Any:
            return refuse(context)

        behaviour.experimental_thread_pool = refusals  # type: ignore[attr-defined]
        self._refusal_handler = grpc.stream_unary_rpc_method_handler(
            behaviour, request_deserializer=None, response_serializer=None
        )

    def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        ok, _ = _token_matches(handler_call_details.invocation_metadata, self._token_digest)
        if not ok:
            return self._refusal_handler
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = continuation(handler_call_details)
            if handler is None or handler.request_streaming or handler.response_streaming:
                return handler
            handler = grpc.unary_unary_rpc_method_handler(
                _refuse_undecodable(handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
            with self._lock:
                self._handlers[method] = handler
        return handler

    def _refuse(self, context: grpc.ServicerContext) -> None:
        _, presented = _token_matches(context.invocation_metadata(), self._token_digest)
        self._on_refusal(context, "a wrong token" if presented else "no token")
        context.set_trailing_metadata(((ERROR_METADATA_KEY, "AuthenticationError"),))
        context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAILS)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def check_exposure(host: str, *, token: str | None, tls: bool, tls_client_ca: str | None) -> None:
    """Refuse to serve a non-loopback address to unauthenticated callers.

    On a loopback address only local processes can call. Anywhere else a caller must be
    authenticated, by the shared ``token`` or by a client certificate (mutual TLS:
    ``tls_client_ca``); TLS alone authenticates the server, not its callers.

    Raises:
        ConfigError: ``host`` is not a loopback address and neither is configured.
    """
    if is_loopback(host) or token is not None or tls_client_ca is not None:
        if token is not None and not tls and not is_loopback(host):
            logger.warning(
                "serving %s without TLS: the token travels in clear text; anyone who can "
                "watch the network can replay it (add --tls-cert / --tls-key)",
                host,
            )
        return
    raise ConfigError(
        f"Refusing to serve on {host!r}: it is not a loopback address, and without "
        "authentication anyone who can reach it could evaluate the black box and spend "
        f"its budget{' (TLS alone authenticates the server, not its callers)' if tls else ''}. "
        f"Give a shared token (--token-file FILE, or the {TOKEN_ENV} environment variable; "
        "clients send 'authorization: Bearer <token>'), or mutual TLS (--tls-cert, "
        "--tls-key and --tls-client-ca), or bind 127.0.0.1."
    )


def start_oracle_server(
    objective: Objective,
    *,
    host: str = "127.0.0.1",
    port: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_client_ca: str | None = None,
    token: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_workers: int = 4,
    replay_bytes: int = DEFAULT_REPLAY_BYTES,
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
) -> tuple[grpc.Server, int]:
    """Start serving ``objective``; return the started server and the bound port.

    Args:
        objective: the black box to serve (its budget is the server's budget).
        host: interface to bind (default loopback only). Any other address needs
            ``token`` or ``tls_client_ca`` (:func:`check_exposure`).
        port: TCP port; 0 picks a free one (the chosen port is returned and logged).
        tls_cert: path of a PEM certificate chain; with ``tls_key``, serves over TLS.
        tls_key: path of the PEM private key of ``tls_cert``.
        tls_client_ca: path of PEM CA certificates; with TLS, callers must present a
            certificate they sign (mutual TLS).
        token: shared secret every call must carry as ``authorization: Bearer <token>``
            (printable ASCII, no spaces, at least 16 characters).
        max_batch: largest batch (points) one Evaluate call may carry.
        max_workers: threads handling RPCs (evaluations still run one at a time).
        replay_bytes: byte budget of the outcomes kept for request_id retries.
        max_concurrent_rpcs: RPCs in progress (running or waiting for a thread) beyond
            which gRPC refuses new ones with RESOURCE_EXHAUSTED; bounds the requests held
            in memory at once.

    Raises:
        ConfigError: only one of tls_cert / tls_key given, tls_client_ca without TLS,
            unreadable files, a malformed token, bad limits, a non-loopback host without
            authentication, or the address cannot be bound.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError(
            "TLS needs both tls_cert and tls_key (PEM files), got only "
            f"{'tls_cert' if tls_cert is not None else 'tls_key'}."
        )
    if tls_client_ca is not None and tls_cert is None:
        raise ConfigError(
            "tls_client_ca (mutual TLS) needs TLS: give tls_cert and tls_key as well."
        )
    if int(port) != port or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer in [0, 65535] (0: any free), got {port!r}.")
    if int(max_workers) != max_workers or max_workers < 1:
        raise ConfigError(f"max_workers must be an integer >= 1, got {max_workers!r}.")
    if int(max_concurrent_rpcs) != max_concurrent_rpcs or max_concurrent_rpcs < 1:
        raise ConfigError(
            f"max_concurrent_rpcs must be an integer >= 1, got {max_concurrent_rpcs!r}."
        )
    check_exposure(host, token=token, tls=tls_cert is not None, tls_client_ca=tls_client_ca)
    servicer = OracleServicer(
        objective, max_batch=max_batch, replay_bytes=replay_bytes, token=token
    )
    credentials = None
    if tls_cert is not None and tls_key is not None:
        try:
            cert = Path(tls_cert).read_bytes()
            key = Path(tls_key).read_bytes()
            client_ca = Path(tls_client_ca).read_bytes() if tls_client_ca else None
        except OSError as err:
            raise ConfigError(f"Cannot read the TLS certificate, key or CA: {err}") from err
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
    limit = message_limit(servicer.max_batch, objective.dim)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=int(max_workers), thread_name_prefix="oracle"),
        interceptors=[servicer.gate()],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
            # Without this, gRPC grows every HTTP/2 stream's receive window from its
            # bandwidth-delay estimate (MiBs on a fast link) and buffers that much of each
            # call's body before anyone reads it: a refused caller's bytes included (a flood
            # of 600 unauthenticated 4 MB calls: +390 MiB with it, +2 MiB without; see
            # proto/README.md). A call being read still gets its whole message.
            ("grpc.http2.bdp_probe", 0),
        ],
        maximum_concurrent_rpcs=int(max_concurrent_rpcs),
    )
    oracle_pb2_grpc.add_OracleServicer_to_server(servicer, server)
    address = _format_address(host, int(port))
    try:
        if credentials is not None:
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
        "serving %r: dim=%d, budget=%s, max_batch=%d, tls=%s, client certificates=%s, "
        "token=%s, replay_bytes=%d, max_concurrent_rpcs=%d",
        objective.name,
        objective.dim,
        objective.budget,
        servicer.max_batch,
        tls_cert is not None,
        tls_client_ca is not None,
        token is not None,
        servicer.replay_bytes,
        max_concurrent_rpcs,
    )
    return server, bound


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
    tls_client_ca: str | None = None,
    token: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_workers: int = 4,
    replay_bytes: int = DEFAULT_REPLAY_BYTES,
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
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
            tls_client_ca=tls_client_ca,
            token=token,
            max_batch=max_batch,
            max_workers=max_workers,
            replay_bytes=replay_bytes,
            max_concurrent_rpcs=max_concurrent_rpcs,
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
