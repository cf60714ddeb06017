"""Benchmark: the oracle server's memory under a flood of requests (peak RSS).

Starts ``python -m fedzoo_oracle.cli serve`` (a real server process on 127.0.0.1 serving
``tests.proto.oracle_fixtures:total``), floods it from ``--threads`` client threads and
reads the server's resident memory from ``/proc/<pid>/status`` (Linux): ``VmRSS`` after a
warm-up call (baseline), ``VmHWM`` at the end (peak) and ``VmRSS`` at the end (kept).

Scenarios (``--scenarios``):

* ``long-ids``: ``--requests`` one-point batches, each with its own ``request_id`` of
  ``--id-chars`` characters (default 1 000 000, within gRPC's 4 MiB message limit). A
  server that keeps ids for replays keeps up to 64 of them.
* ``big-replies``: a server with ``--max-batch 500000`` (d = 1) and ``--requests`` full
  batches with distinct 32-character ids: a server that keeps its last 64 replies keeps
  64 x 4 MB.
* ``no-token``: the ``long-ids`` and ``big-replies`` floods against a server that
  requires a token, sent without it (only for code that has ``--token-file``).
* ``unauth-d10`` / ``unauth-d300`` (the red team's floods of fedzoo issue 24): a token
  server ``--problem quadratic --dim 10 --clients 5 --client-id 2`` (``--dim 300``),
  flooded without the token by 60 callers x 10 ``Evaluate`` calls of 4 190 171 bytes
  (d = 10), or 32 callers x 2 calls of the largest message the server accepts
  (d = 300: 8 x max_batch x d + 64 KiB, about 23 MiB), ``--floods`` times in a row;
  meanwhile one authorised client calls ``Evaluate`` (8 points) in a loop with the
  token. Reported: idle RSS (after a warm-up), peak RSS (``VmHWM``), retained RSS after
  each flood, the refusals, and the authorised calls served during the floods (count,
  failures, median and slowest latency).
* ``oversize-d10``: the d = 10 server flooded *with* the token by 16 callers x 3 calls of
  50 MiB (twelve times its message limit): gRPC refuses them from the length prefix.
* ``slow-link``: what the server's fixed HTTP/2 receive window (no BDP probing) costs an
  authorised caller: 5 Evaluate calls of 2 000 x 300 points (4.8 MB) through a proxy
  that delays every chunk ``--link-delay-s`` (default 25 ms each way). Compare with a
  checkout whose ``oracle_server.py`` sets ``grpc.http2.bdp_probe`` to 1 (``--code``).

Before / after a change, run the same script against another checkout of the code::

    git archive <commit> | tar -x -C /tmp/before
    python simulations/benchmarks/oracle_flood.py --code /tmp/before
    python simulations/benchmarks/oracle_flood.py            # this checkout
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from fedzoo_proto import oracle_pb2, oracle_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
BLACK_BOX = "tests.proto.oracle_fixtures:total"
BIG_BATCH = 500_000
MIB = 1024 * 1024


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


class Server:
    """An ``oracle serve`` process run from the checkout ``code``."""

    def __init__(
        self,
        code: Path,
        workdir: Path,
        *args: str,
        env: dict[str, str],
        objective: tuple[str, ...] = ("--callable", BLACK_BOX, "--dim", "1"),
    ) -> None:
        port_file = workdir / f"port-{uuid.uuid4().hex}"
        child_env = {k: v for k, v in os.environ.items() if k != "FEDZOO_ORACLE_TOKEN"}
        child_env.update(env)
        child_env["PYTHONPATH"] = os.pathsep.join([str(code), str(REPO / "proto")])
        self.log = open(workdir / f"server-{port_file.name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fedzoo_oracle.cli", "serve", *objective,
             "--port", "0", "--port-file", str(port_file), *args],
            cwd=code, env=child_env, stdout=subprocess.DEVNULL, stderr=self.log,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: see {self.log.name}")
            time.sleep(0.05)
        self.address = f"127.0.0.1:{int(port_file.read_text())}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def flood(
    address: str, requests: list[oracle_pb2.EvaluateRequest], threads: int, metadata=None
) -> tuple[int, dict[str, int]]:
    """Send every request (each thread its own channel); return (ok, {status: count})."""
    options = [
        ("grpc.max_send_message_length", 64 * MIB),
        ("grpc.max_receive_message_length", 64 * MIB),
    ]
    channels = [grpc.insecure_channel(address, options=options) for _ in range(threads)]
    stubs = [oracle_pb2_grpc.OracleStub(c) for c in channels]
    refused: dict[str, int] = {}

    def send(i: int) -> bool:
        try:
            stubs[i % threads].Evaluate(requests[i], timeout=120, metadata=metadata)
            return True
        except grpc.RpcError as err:
            name = err.code().name
            refused[name] = refused.get(name, 0) + 1
            return False

    with ThreadPoolExecutor(threads) as pool:
        ok = sum(pool.map(send, range(len(requests))))
    for channel in channels:
        channel.close()
    return ok, refused


def point_request(request_id: str) -> oracle_pb2.EvaluateRequest:
    return oracle_pb2.EvaluateRequest(x=[0.5], n=1, d=1, request_id=request_id)


def run(
    code: Path, workdir: Path, scenario: str, requests: int, threads: int, id_chars: int
) -> dict[str, object]:
    extra: list[str] = []
    env: dict[str, str] = {}
    metadata = None
    if scenario.endswith("big-replies"):
        extra += ["--max-batch", str(BIG_BATCH)]
    if scenario.startswith("no-token"):
        env["FEDZOO_ORACLE_TOKEN"] = secrets.token_hex(32)
    server = Server(code, workdir, *extra, env=env)
    try:
        if scenario.startswith("no-token"):
            warm = (("authorization", f"Bearer {env['FEDZOO_ORACLE_TOKEN']}"),)
        else:
            warm = None
        flood(server.address, [point_request("")], 1, metadata=warm)  # warm-up
        time.sleep(0.5)
        baseline = proc_status(server.proc.pid)["VmRSS"]
        if scenario.endswith("long-ids"):
            batch = [point_request(f"{i:08d}" + "x" * (id_chars - 8)) for i in range(requests)]
        else:
            x = [0.5] * BIG_BATCH
            batch = [
                oracle_pb2.EvaluateRequest(x=x, n=BIG_BATCH, d=1, request_id=uuid.uuid4().hex)
                for _ in range(requests)
            ]
        start = time.perf_counter()
        ok, refused = flood(server.address, batch, threads, metadata=metadata)
        elapsed = time.perf_counter() - start
        del batch
        time.sleep(0.5)
        status = proc_status(server.proc.pid)
    finally:
        server.stop()
    return {
        "scenario": scenario,
        "requests": requests,
        "ok": ok,
        "refused": ",".join(f"{k}:{v}" for k, v in sorted(refused.items())) or "-",
        "baseline_mib": baseline / MIB,
        "peak_mib": status["VmHWM"] / MIB,
        "end_mib": status["VmRSS"] / MIB,
        "seconds": elapsed,
    }

# --------------------------------------------------------------------------------------
# Unauthenticated floods of big messages, with an authorised client calling meanwhile
# --------------------------------------------------------------------------------------
UNAUTH = {
    # scenario: (dim, callers, calls per caller, message bytes or None: the server's limit)
    "unauth-d10": (10, 60, 10, 4_190_171),
    "unauth-d300": (300, 32, 2, None),
    # with the token, 50 MiB messages (12x the d = 10 limit): refused by gRPC's size limit
    "oversize-d10": (10, 16, 3, 50 * MIB),
}
EVALUATE = "/fedzoo.oracle.v1.Oracle/Evaluate"


def request_bytes(dim: int, size: int) -> bytes:
    """A well-formed serialised EvaluateRequest of ``size`` bytes (give or take 16):
    packed doubles in the unit box, n x dim of them plus padding in request_id."""
    from fedzoo_oracle.client import with_doubles

    count = (size - 64) // 8
    n = count // dim
    message = with_doubles(oracle_pb2.EvaluateRequest, "x", np.full(count, 0.5), n=n, d=dim)
    message.request_id = "p" * max(size - message.ByteSize() - 3, 0)
    return message.SerializeToString()


class Authorised:
    """One client with the token calling Evaluate (8 points) in a loop until stopped."""

    def __init__(self, address: str, token: str, dim: int) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = oracle_pb2_grpc.OracleStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.request = oracle_pb2.EvaluateRequest(x=[0.5] * (8 * dim), n=8, d=dim)
        self.latencies: list[float] = []
        self.failures: dict[str, int] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            start = time.perf_counter()
            try:
                self.stub.Evaluate(self.request, timeout=60, metadata=self.metadata)
                self.latencies.append(time.perf_counter() - start)
            except grpc.RpcError as err:
                name = err.code().name
                self.failures[name] = self.failures.get(name, 0) + 1
            time.sleep(0.05)

    def __enter__(self) -> Authorised:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.channel.close()


def raw_flood(
    address: str, payload: bytes, callers: int, calls: int, metadata=None
) -> dict[str, int]:
    """``callers`` threads (each its own channel) send ``calls`` Evaluate calls each with
    the serialised ``payload`` (and ``metadata``: none, no token); return {status: count}."""
    options = [("grpc.max_send_message_length", len(payload) + MIB)]
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def caller(_: int) -> None:
        with grpc.insecure_channel(address, options=options) as channel:
            call = channel.unary_unary(EVALUATE)  # bytes in, bytes out
            for _ in range(calls):
                try:
                    call(payload, timeout=120, metadata=metadata)
                    name = "OK"
                except grpc.RpcError as err:
                    name = err.code().name
                with lock:
                    outcomes[name] = outcomes.get(name, 0) + 1

    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(caller, range(callers)))
    return outcomes


def run_unauth(code: Path, workdir: Path, scenario: str, floods: int) -> list[str]:
    from fedzoo_oracle.server import DEFAULT_MAX_BATCH, message_limit

    dim, callers, calls, size = UNAUTH[scenario]
    size = size or message_limit(DEFAULT_MAX_BATCH, dim) - 4096
    payload = request_bytes(dim, size)
    token = secrets.token_hex(32)
    objective = ("--problem", "quadratic", "--dim", str(dim), "--clients", "5",
                 "--client-id", "2")  # fmt: skip
    server = Server(code, workdir, env={"FEDZOO_ORACLE_TOKEN": token}, objective=objective)
    flood_metadata = (
        (("authorization", f"Bearer {token}"),) if scenario.startswith("oversize") else None
    )
    lines = []
    try:
        with Authorised(server.address, token, dim) as warm:  # warm-up: one call
            while not warm.latencies and not warm.failures:
                time.sleep(0.01)
        time.sleep(0.5)
        idle = proc_status(server.proc.pid)["VmRSS"]
        lines.append(
            f"{scenario}: dim {dim}, {callers} callers x {calls} calls x {len(payload)} bytes "
            f"{'with' if flood_metadata else 'without'} the token, {floods} floods; idle RSS "
            f"{idle / MIB:.1f} MiB"
        )
        for k in range(floods):
            with Authorised(server.address, token, dim) as ok:
                start = time.perf_counter()
                outcomes = raw_flood(server.address, payload, callers, calls, flood_metadata)
                elapsed = time.perf_counter() - start
            time.sleep(0.5)
            status = proc_status(server.proc.pid)
            lat = sorted(ok.latencies)
            served = (
                f"{len(lat)} ok, median {1000 * lat[len(lat) // 2]:.0f} ms, "
                f"max {1000 * lat[-1]:.0f} ms"
                if lat
                else "0 ok"
            )
            failed = ",".join(f"{k2}:{v}" for k2, v in sorted(ok.failures.items())) or "none"
            refused = ",".join(f"{k2}:{v}" for k2, v in sorted(outcomes.items()))
            lines.append(
                f"  flood {k + 1}: {refused} in {elapsed:.1f} s; peak RSS "
                f"{status['VmHWM'] / MIB:.1f} MiB (+{(status['VmHWM'] - idle) / MIB:.1f}), "
                f"retained {status['VmRSS'] / MIB:.1f} MiB "
                f"(+{(status['VmRSS'] - idle) / MIB:.1f}); authorised client: {served}, "
                f"failed {failed}"
            )
    finally:
        server.stop()
    return lines


# --------------------------------------------------------------------------------------
# The price of a fixed HTTP/2 window: authorised big batches over a slow link
# --------------------------------------------------------------------------------------
class DelayProxy:
    """A TCP proxy on 127.0.0.1 that holds every chunk ``delay_s`` seconds before passing
    it on, both ways (a round trip of 2 x delay_s), run by an asyncio loop in a thread."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        import asyncio

        self.asyncio, self.target, self.delay = asyncio, target_port, delay_s
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait()

    async def _pipe(self, reader, writer) -> None:
        queue = self.asyncio.Queue()

        async def pump_in() -> None:
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic() + self.delay, data))
                if not data:
                    return

        async def pump_out() -> None:
            while True:
                due, data = await queue.get()
                await self.asyncio.sleep(max(due - time.monotonic(), 0))
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        await self.asyncio.gather(pump_in(), pump_out(), return_exceptions=True)

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await self.asyncio.open_connection("127.0.0.1", self.target)
            await self.asyncio.gather(self._pipe(reader, up_writer),
                                      self._pipe(up_reader, writer))  # fmt: skip
        except (self.asyncio.CancelledError, OSError):
            writer.close()

    def _run(self, started: threading.Event) -> None:
        self.asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    def stop(self) -> None:
        def cancel_all() -> None:
            for task in self.asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_later(0.2, self.loop.stop)  # let the tasks finish cancelling

        self.loop.call_soon_threadsafe(cancel_all)
        self.thread.join(timeout=5)


def run_slow_link(code: Path, workdir: Path, delay_s: float, calls: int = 5) -> list[str]:
    """Authorised Evaluate calls of 2 000 x 300 points (4.8 MB) through a DelayProxy."""
    token = secrets.token_hex(32)
    objective = ("--problem", "quadratic", "--dim", "300", "--clients", "5",
                 "--client-id", "2", "--max-batch", "2000")  # fmt: skip
    server = Server(code, workdir, env={"FEDZOO_ORACLE_TOKEN": token}, objective=objective)
    proxy = DelayProxy(int(server.address.rsplit(":", 1)[1]), delay_s)
    metadata = (("authorization", f"Bearer {token}"),)
    from fedzoo_oracle.client import with_doubles

    request = with_doubles(oracle_pb2.EvaluateRequest, "x", np.full(600_000, 0.5), n=2000, d=300)
    seconds = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
            stub = oracle_pb2_grpc.OracleStub(channel)
            stub.Evaluate(oracle_pb2.EvaluateRequest(x=[0.5] * 300, n=1, d=300),
                          timeout=60, metadata=metadata)  # fmt: skip
            for _ in range(calls):
                start = time.perf_counter()
                stub.Evaluate(request, timeout=120, metadata=metadata)
                seconds.append(time.perf_counter() - start)
    finally:
        proxy.stop()
        server.stop()
    times = " ".join(f"{t:.2f}" for t in seconds)
    return [f"slow-link: round trip {2000 * delay_s:.0f} ms, 4.8 MB batches (s): {times}"]



def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose server is run")
    ap.add_argument("--scenarios", default="long-ids,big-replies,no-token-long-ids,"
                    "no-token-big-replies")  # fmt: skip
    ap.add_argument("--floods", type=int, default=3,
                    help="unauth-* scenarios: floods in a row against one server")  # fmt: skip
    ap.add_argument("--link-delay-s", type=float, default=0.025,
                    help="slow-link: one-way delay of the proxy")  # fmt: skip
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--id-chars", type=int, default=1_000_000)
    ap.add_argument(
        "--fixed-mmap-threshold",
        action="store_true",
        help="run the server with MALLOC_MMAP_THRESHOLD_=131072 (glibc): blocks above "
        "128 KiB are always mmap'ed and go back to the system when freed, so the RSS at "
        "the end shows what the server still holds, not what glibc keeps for reuse",
    )
    args = ap.parse_args()
    if args.fixed_mmap_threshold:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    code = args.code.resolve()
    cli = code / "fedzoo_oracle" / "cli.py"
    if not cli.is_file():  # code from before the oracle had its own package
        cli = code / "client" / "oracle_cli.py"
    has_token = "--token-file" in cli.read_text()
    print(f"code: {code}  threads: {args.threads}  id chars: {args.id_chars}  "
          f"MALLOC_MMAP_THRESHOLD_: {os.environ.get('MALLOC_MMAP_THRESHOLD_', 'glibc default')}")  # fmt: skip
    print(f"{'scenario':22s} {'requests':>8s} {'ok':>5s} {'refused':>26s} "
          f"{'base MiB':>9s} {'peak MiB':>9s} {'end MiB':>8s} {'s':>6s}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="oracle-flood-") as tmp:
        for scenario in args.scenarios.split(","):
            if scenario == "slow-link":
                for line in run_slow_link(code, Path(tmp), args.link_delay_s):
                    print(line, flush=True)
                continue
            if scenario in UNAUTH:
                for line in run_unauth(code, Path(tmp), scenario, args.floods):
                    print(line, flush=True)
                continue
            if scenario.startswith("no-token") and not has_token:
                print(f"{scenario:22s} (skipped: this code has no --token-file)")
                continue
            r = run(code, Path(tmp), scenario, args.requests, args.threads, args.id_chars)
            print(f"{r['scenario']:22s} {r['requests']:8d} {r['ok']:5d} {r['refused']:>26s} "
                  f"{r['baseline_mib']:9.1f} {r['peak_mib']:9.1f} {r['end_mib']:8.1f} "
                  f"{r['seconds']:6.1f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
