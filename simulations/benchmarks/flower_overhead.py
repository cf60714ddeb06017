"""Seconds per round of fedzoo over Flower, next to Flower's own floor and the engine.

For each setting the fedzoo Flower app runs ``--rounds`` rounds of ``fzoos`` (two
exchanges per round: train, sync) and ``fedzo`` (one exchange), and the floor app
(``flower_floor/``: empty messages, same number of exchanges, timed the same way: wall
time of each round inside the ServerApp, after a first untimed contact) runs too. The
in-process engine (``run_federation(workers=1)``) gives the compute cost of a round.

Settings: simulation (``flower-superlink --simulation``, Ray, ``num-cpus = 1`` per
virtual client) with 5 and 50 clients; deployment: SuperLink + 3 SuperNodes on this
machine over TLS with SuperNode authentication. Medians over rounds. Prints a markdown
table (and writes it with the raw numbers to ``--out``).

    .venv/bin/python simulations/benchmarks/flower_overhead.py --out runs/flower-overhead
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fedzoo._threads import blas_threads  # noqa: E402
from fedzoo.engine import run_federation  # noqa: E402
from fedzoo_launch.local import Session, make_node_key  # noqa: E402
from fedzoo_server.settings import build_problem, parse_run_config  # noqa: E402

FLOOR_APP = Path(__file__).resolve().parent / "flower_floor"
EXCHANGES = {"fzoos": 2, "fedzo": 1}


def engine_round_s(run_config: dict[str, Any]) -> float:
    s = parse_run_config(run_config)
    with blas_threads(1):
        res = run_federation(build_problem(s), s.config, workers=1)
    return statistics.median(r["wall_s"] for r in res.history[1:])


def fedzoo_round_s(
    session: Session, run_config: dict[str, Any], out: Path, federation: dict | None
) -> float:
    summ = session.run(run_config, out, timeout_s=1800, federation_config=federation)
    return float(summ["median_round_s"])


def floor_round_s(
    session: Session, clients: int, exchanges: int, rounds: int, out: Path, federation: dict | None
) -> float:
    out.mkdir(parents=True, exist_ok=True)
    rc = {"num-clients": clients, "rounds": rounds, "exchanges": exchanges, "out-dir": str(out)}
    run_id = session.submit(rc, app_dir=FLOOR_APP, federation_config=federation)
    status = session.wait(run_id, 1800)
    if status != "finished:completed":
        raise RuntimeError(f"floor run failed ({status}):\n{session.logs(run_id)[-3000:]}")
    return statistics.median(json.loads((out / "timings.json").read_text())["round_s"])


def measure(
    session: Session,
    setting: str,
    clients: int,
    args: argparse.Namespace,
    out: Path,
    federation: dict | None,
) -> list[dict[str, Any]]:
    rows = []
    floors: dict[int, float] = {}
    for method in ("fzoos", "fedzo"):
        ex = EXCHANGES[method]
        if ex not in floors:
            floors[ex] = floor_round_s(
                session,
                clients,
                ex,
                args.rounds,
                out / f"{setting}-{clients}-floor{ex}",
                federation,
            )
        rc = {
            "method": method,
            "rounds": args.rounds,
            "dim": args.dim,
            "num-clients": clients,
            "rff-features": args.rff_features,
        }
        t0 = time.perf_counter()
        flower = fedzoo_round_s(session, rc, out / f"{setting}-{clients}-{method}", federation)
        run_wall = time.perf_counter() - t0
        rows.append(
            {
                "setting": setting,
                "method": method,
                "clients": clients,
                "exchanges": ex,
                "flower_round_s": flower,
                "floor_round_s": floors[ex],
                "engine_round_s": engine_round_s(rc),
                "run_wall_s": run_wall,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        f"fedzoo over Flower 1.42: median seconds per round (dim {args.dim}, {args.rounds} rounds, "
        f"local-steps 10, rff-features {args.rff_features}); floor = empty exchanges, same count, "
        "timed the same way; engine = in-process compute, one thread.\n\n"
    )
    lines = [
        "| setting | method | clients | exchanges/round | Flower s/round | Flower floor s/round "
        "| engine s/round | Flower − engine | Flower − floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['method']} | {r['clients']} | {r['exchanges']} | {r['flower_round_s']:.2f} "
            f"| {r['floor_round_s']:.2f} | {r['engine_round_s']:.3f} | "
            f"{r['flower_round_s'] - r['engine_round_s']:.2f} | {r['flower_round_s'] - r['floor_round_s']:.2f} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rff-features", type=int, default=10000)
    p.add_argument("--sim-clients", default="5,50", help="comma-separated simulation sizes")
    p.add_argument(
        "--deploy-clients", type=int, default=3, help="SuperNodes (0: skip the deployment)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "flower-overhead")
    args = p.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="fz-bench-"))
    try:
        with Session(workdir / "sim", simulation=True) as session:
            session.start_superlink()
            for n in [int(c) for c in args.sim_clients.split(",") if c]:
                federation = {"num-supernodes": n, "client-resources-num-cpus": 1}
                rows += measure(session, "simulation", n, args, out, federation)
        if args.deploy_clients > 0:
            n = args.deploy_clients
            with Session(workdir / "deploy", simulation=False, tls=True, node_auth=True) as session:
                session.start_superlink()
                for i in range(n):
                    private, public = make_node_key(session.workdir / "keys", f"node{i}")
                    session.register(public)
                    session.start_supernode(
                        f"supernode{i}", {"partition-id": i}, private_key=private
                    )
                rows += measure(session, "deployment (TLS, auth)", n, args, out, None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = table(rows, args)
    (out / "flower_overhead.md").write_text(text)
    (out / "flower_overhead.json").write_text(json.dumps(rows, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
