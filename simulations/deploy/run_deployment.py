"""A fedzoo deployment on this machine: SuperLink + N SuperNodes over TLS with node auth.

What it does (every process on 127.0.0.1, free ports, stopped by PID at the end):

1. generates a CA and a server certificate (openssl, SAN IP:127.0.0.1,DNS:localhost)
   and one ECDSA P-384 key per SuperNode (ssh-keygen);
2. starts ``flower-superlink`` with TLS and ``--enable-supernode-auth`` (no simulation);
3. registers each SuperNode's public key (``flwr supernode register``);
4. optionally (``--oracle-client K``) starts client K's black box as a separate process,
   ``python -m fedzoo_oracle.cli serve --problem ... --client-id K`` (gRPC, TLS with the
   same CA), and gives SuperNode K ``oracle="127.0.0.1:PORT"`` instead of the built-in
   objective;
5. starts N ``flower-supernode`` processes with ``partition-id=i``;
6. ``flwr run . <connection>`` and waits for ``finished:completed`` (``flwr ls``);
7. prints the summary (value reported by the clients: a deployment never evaluates F)
   and stops every process it started.

Example::

    .venv/bin/python simulations/deploy/run_deployment.py --clients 3 --method fedzo \\
        --rounds 3 --dim 10 --oracle-client 2 --out runs/deploy

Run it from the repository root (it is the Flower app directory).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from fedzoo_launch.local import Session, make_node_key  # noqa: E402
from fedzoo_server.settings import parse_run_config  # noqa: E402


def start_oracle(session: Session, run_config: dict[str, Any], client_id: int) -> str:
    """Serve client ``client_id``'s objective over gRPC with TLS; return its address."""
    assert session.certs is not None
    port_file = session.workdir / f"oracle{client_id}.port"
    cmd = [
        sys.executable,
        "-m",
        "fedzoo_oracle.cli",
        "serve",
        "--problem",
        str(run_config["problem"]),
        "--dim",
        str(run_config["dim"]),
        "--clients",
        str(run_config["num-clients"]),
        "--heterogeneity",
        str(float(run_config["heterogeneity"])),
        "--seed",
        str(run_config["problem-seed"]),
        "--client-id",
        str(client_id),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--tls-cert",
        str(session.certs.server_cert),
        "--tls-key",
        str(session.certs.server_key),
    ]
    proc = session.spawn(f"oracle{client_id}", cmd)
    deadline = time.monotonic() + 30.0
    log_path = session.log_of(f"oracle{client_id}")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"oracle server exited with {proc.returncode}:\n{log_path.read_text()}"
            )
        if port_file.exists() and port_file.read_text().strip():
            return f"127.0.0.1:{int(port_file.read_text())}"
        time.sleep(0.1)
    raise RuntimeError(f"oracle server did not start within 30 s:\n{log_path.read_text()}")


def start_federation(
    session: Session,
    run_config: dict[str, Any],
    *,
    num_clients: int,
    oracle_client: int | None = None,
) -> dict[int, dict[str, Any]]:
    """Register and start ``num_clients`` SuperNodes (and the oracle); return node configs.

    ``session`` must have its SuperLink running with TLS and node authentication.
    """
    settings = parse_run_config({**run_config, "num-clients": num_clients})
    problem = {
        "problem": settings.problem,
        "dim": settings.dim,
        "num-clients": settings.num_clients,
        "heterogeneity": settings.heterogeneity,
        "problem-seed": settings.problem_seed,
    }
    keys = []
    for i in range(num_clients):
        private, public = make_node_key(session.workdir / "keys", f"node{i}")
        session.register(public)
        keys.append(private)
    configs: dict[int, dict[str, Any]] = {}
    for i in range(num_clients):
        node_config: dict[str, Any] = {"partition-id": i}
        if oracle_client == i:
            assert session.certs is not None
            node_config["oracle"] = start_oracle(session, problem, i)
            node_config["oracle-root-cert"] = str(session.certs.ca)
        session.start_supernode(f"supernode{i}", node_config, private_key=keys[i])
        configs[i] = node_config
    return configs


def deploy(
    run_config: dict[str, Any],
    out_dir: Path,
    *,
    num_clients: int,
    workdir: Path,
    oracle_client: int | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Run one deployment; return summary.json (see the module docstring)."""
    run_config = {**run_config, "num-clients": num_clients}
    parse_run_config(run_config)  # fail before any process starts
    from fedzoo_cli.main import HistoryWatcher
    from fedzoo_cli.progress import RoundProgress

    def say(text: str) -> None:
        print(f"[deploy {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    with Session(workdir, simulation=False, tls=True, node_auth=True) as session:
        say("starting the SuperLink (TLS, node authentication) ...")
        session.start_superlink()
        say(f"starting {num_clients} SuperNode(s)"
            + (f" (client {oracle_client} behind its own oracle process)" if oracle_client is not None else "")
            + " and registering their keys ...")
        start_federation(session, run_config, num_clients=num_clients, oracle_client=oracle_client)
        say(f"submitting the run ({run_config.get('method')}, {run_config.get('rounds')} rounds); "
            "the ServerApp waits for every node, then the rounds follow:")
        progress = RoundProgress(str(run_config.get("method", "run")), bar=False)
        out = out_dir.resolve()
        out.mkdir(parents=True, exist_ok=True)
        with HistoryWatcher(out / "history.csv", progress, int(run_config.get("rounds", 0))):
            summary = session.run(run_config, out, timeout_s=timeout_s)
        say("run finished; stopping the processes ...")
        return summary


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=3, help="SuperNodes N (default 3)")
    p.add_argument("--method", default="fedzo")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--problem", default="quadratic")
    p.add_argument("--heterogeneity", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rff-features", type=int, default=1000)
    p.add_argument(
        "--oracle-client",
        type=int,
        default=None,
        help="serve this client's objective from a separate oracle process",
    )
    p.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "deploy")
    p.add_argument(
        "--workdir", type=Path, default=None, help="logs, certificates, keys (default: a temp dir)"
    )
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument(
        "-c",
        "--run-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other run-config key (TOML value), repeatable",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    run_config: dict[str, Any] = {
        "method": args.method,
        "rounds": args.rounds,
        "local-steps": args.local_steps,
        "dim": args.dim,
        "problem": args.problem,
        "heterogeneity": args.heterogeneity,
        "seed": args.seed,
        "rff-features": args.rff_features,
    }
    import tomllib

    for item in args.run_config:
        run_config.update(tomllib.loads(item.replace("=", " = ", 1)))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fedzoo-deploy-"))
    print(f"workdir (logs, certificates, keys): {workdir}", flush=True)
    t0 = time.perf_counter()
    from fedzoo.errors import FedZooError

    try:
        summ = deploy(
            run_config,
            args.out,
            num_clients=args.clients,
            workdir=workdir,
            oracle_client=args.oracle_client,
            timeout_s=args.timeout,
        )
    except FedZooError as err:  # a failed run (e.g. a SuperNode's objective cannot load)
        print(f"error: {err}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    fv = summ["final_value"]
    print(
        json.dumps(
            {
                "method": summ["method"],
                "rounds": summ["rounds"],
                "final_value": fv if fv is None or math.isfinite(fv) else None,
                "total_queries": summ["total_queries"],
                "total_bytes": summ["total_bytes"],
                "median_round_s": summ["median_round_s"],
                "value_source": summ["flower"]["value_source"],
                "objective_kinds": summ["flower"]["objective_kinds"],
                "wall_s_with_startup": round(wall, 1),
                "out": str(args.out.resolve()),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
