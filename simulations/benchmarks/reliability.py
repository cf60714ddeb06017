"""Benchmark: fault scenarios with real Flower processes, and the cost of checkpointing.

    python simulations/benchmarks/reliability.py --out runs/bench-reliability

1. **SuperNode killed and restarted** (deployment: SuperLink + 3 SuperNodes, fedzo,
   d = 10, 6 rounds, ``round-timeout`` 20 s, every node with a ``state-dir``): node 2 is
   SIGKILLed after round 1 and started again once a round has been aggregated without
   it. Reported: whether the run completed, the rounds partition 2 missed and the
   finished rounds lost (goal 0). Whether partition 2's queries are all charged is not
   measured here; the running-total rule behind it is checked in process
   (``tests/core/test_engine.py``, ``tests/flower/test_failed_exchange.py``).
2. **ServerApp killed and resumed** (same deployment, fzoos, d = 10, 4 rounds): the
   ``flwr-serverapp`` process is SIGKILLed once the round-1 checkpoint exists; a new run
   with ``resume = true`` continues. Reported: rounds redone, finished rounds lost, and
   whether the final history equals the in-process engine's uninterrupted run of the same
   run-config: the same number of rows and, row by row, equal :data:`COMPARED` columns
   only (not ``round``, ``value`` — the engine's is the simulator's F(x_r), which a
   deployment does not have — nor ``wall_s``).
3. **Cost of checkpointing** (in-process engine, quadratic d = 300, N = 5, fzoos and
   fedzo, 10 rounds, defaults): median seconds per round (``wall_s``, which does not
   include the write), the seconds of one checkpoint write (after every round) and its
   size; and one client snapshot (``fedzoo_client.persistence``) of an FZooS client state after
   10 rounds, written after every exchange by a client with a ``state-dir``.

Writes ``results.json`` and the markdown tables under --out.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from fedzoo import RunConfig, make_problem, run_federation  # noqa: E402
from fedzoo import checkpoint as ckpt_module  # noqa: E402
from fedzoo.checkpoint import CHECKPOINT_NAME, load_checkpoint  # noqa: E402
from fedzoo.results import participants_of, read_history  # noqa: E402
from fedzoo_client.persistence import StateStore  # noqa: E402
from fedzoo_launch.local import Session, wait_until  # noqa: E402
from fedzoo_server.settings import build_problem, parse_run_config  # noqa: E402

#: The only history columns the resumed deployment must share, row by row, with the
#: uninterrupted in-process run (and the row count); the others (``round``, ``value``: the
#: engine's is the simulator's F, ``wall_s``, ...) are not compared.
COMPARED = ("reported_value", "queries", "bytes_up", "bytes_down", "clients", "participants",
            "client_queries")


def _rows(out: Path) -> list[dict]:
    try:
        return read_history(out / "history.csv")
    except (OSError, ValueError, KeyError):
        return []


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b))


def supernode_restart(work: Path) -> dict:
    out = work / "out"
    rc = {"method": "fedzo", "rounds": 6, "dim": 10, "num-clients": 3, "round-timeout": 20.0,
          "out-dir": str(out)}
    nodes = [{"partition-id": i, "state-dir": str(work / f"state{i}")} for i in range(3)]
    t0 = time.monotonic()
    with Session(work / "flower", simulation=False) as session:
        session.start_superlink()
        for i, cfg in enumerate(nodes):
            session.start_supernode(f"node{i}", cfg)
        run_id = session.submit(rc)
        wait_until(lambda: len(_rows(out)) >= 2, 180, "round 1")
        session.kill("node2")
        wait_until(lambda: any(participants_of(r) == [0, 1] for r in _rows(out)), 180, "a round without 2")
        session.start_supernode("node2-restarted", nodes[2])
        status = session.wait(run_id, timeout_s=400)
        log = session.logs(run_id)
    rows = read_history(out / "history.csv")
    missed = [r["round"] for r in rows[1:] if 2 not in participants_of(r)]
    return {
        "scenario": "SuperNode killed mid-run, restarted (new node id, state from disk)",
        "survived": status == "finished:completed" and rows[-1]["round"] == 6,
        "finished_rounds_lost": 6 - rows[-1]["round"],
        "partition_rounds_missed": missed,
        "wall_s": round(time.monotonic() - t0, 1),
        "_status": status, "_rows": rows, "_log": log,  # for the test (not in the table)
    }


def serverapp_resume(work: Path) -> dict:
    out, ckpt = work / "out", work / "ckpt"
    rc = {"method": "fzoos", "rounds": 4, "dim": 10, "num-clients": 3, "rff-features": 200,
          "local-steps": 4, "gp-history": 80, "sync-points": 10, "out-dir": str(out),
          "checkpoint-dir": str(ckpt)}
    t0 = time.monotonic()
    with Session(work / "flower", simulation=False) as session:
        session.start_superlink()
        for i in range(3):
            session.start_supernode(f"node{i}", {"partition-id": i, "state-dir": str(work / f"s{i}")})
        first = session.submit(rc)
        wait_until(lambda: (ckpt / CHECKPOINT_NAME).exists(), 240, "the round-1 checkpoint")
        for pid in wait_until(lambda: session.pids_running("flwr-serverapp"), 30, "the ServerApp"):
            os.kill(pid, signal.SIGKILL)
        done = load_checkpoint(ckpt).round
        started = len(_rows(out)) - 1  # rounds the dead ServerApp had finished
        session.stop_run(first)
        summary = session.run({**rc, "resume": True}, out, timeout_s=400)
    rows = read_history(out / "history.csv")
    s = parse_run_config(rc)
    reference = run_federation(build_problem(s), s.config, workers=1).history
    identical = len(rows) == len(reference) and all(
        _same(g[c], w[c]) for g, w in zip(rows, reference) for c in COMPARED
    )
    return {
        "scenario": f"ServerApp process killed after round {done}, new run with resume = true",
        "survived": summary["rounds"] == 4 and identical,
        "finished_rounds_lost": max(started - done, 0),
        "history_identical_to_uninterrupted": identical,
        "wall_s": round(time.monotonic() - t0, 1),
        "_resumed_after": summary["resumed_after_round"], "_done": done,
    }


def checkpoint_cost(repeats: int) -> list[dict]:
    timings: list[float] = []
    original = ckpt_module.save_checkpoint

    def timed(directory, ckpt):
        t = time.perf_counter()
        path = original(directory, ckpt)
        timings.append(time.perf_counter() - t)
        return path

    import fedzoo.engine as engine

    engine.save_checkpoint = timed
    out = []
    for method in ("fzoos", "fedzo"):
        rounds, sizes = [], []
        timings.clear()
        for seed in range(repeats):
            p = make_problem("quadratic", dim=300, clients=5, heterogeneity=0.5, seed=seed)
            cfg = RunConfig.from_mapping({"method": method, "rounds": 10, "seed": seed})
            with tempfile.TemporaryDirectory() as d:
                rounds += [r["wall_s"] for r in run_federation(p, cfg, checkpoint_dir=d).history[2:]]
                sizes.append((Path(d) / CHECKPOINT_NAME).stat().st_size)
        write = float(np.median(timings))
        out.append({
            "method": method,
            "round_s": float(np.median(rounds)),
            "checkpoint_write_s": write,
            "overhead": write / float(np.median(rounds)),
            "checkpoint_mib": float(np.median(sizes)) / 2**20,
        })
    engine.save_checkpoint = original
    return out


def snapshot_cost() -> dict:
    import fedzoo.protocol as protocol

    p = make_problem("quadratic", dim=300, clients=5, heterogeneity=0.5, seed=0)
    cfg = RunConfig.from_mapping({"method": "fzoos", "rounds": 10})
    with tempfile.TemporaryDirectory() as d:
        run_federation(p, cfg, checkpoint_dir=d)
        arrays = load_checkpoint(d).clients[0]
    state = protocol.ClientState.from_arrays(arrays, cfg)
    times = []
    with tempfile.TemporaryDirectory() as d:
        store = StateStore(d, "bench", 0)
        for k in range(5):
            t = time.perf_counter()
            store.save((k + 1, 0), state.to_arrays())
            times.append(time.perf_counter() - t)
        size = store.path((5, 0)).stat().st_size
        t = time.perf_counter()
        store.load_before((6, 0))
        load_s = time.perf_counter() - t
    return {"save_s": float(np.median(times)), "load_s": load_s, "mib": size / 2**20,
            "history_points": len(state.history)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-reliability")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-processes", action="store_true", help="only the checkpoint costs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"load_average_before": os.getloadavg()[0]}
    if not args.skip_processes:
        with tempfile.TemporaryDirectory(prefix="fz-rel-") as d:
            scenarios = [supernode_restart(Path(d) / "a"), serverapp_resume(Path(d) / "b")]
        results["scenarios"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in scenarios]
    results["checkpoint"] = checkpoint_cost(args.repeats)
    results["snapshot"] = snapshot_cost()
    results["load_average_after"] = os.getloadavg()[0]
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = []
    for s in results.get("scenarios", []):
        extra = {k: v for k, v in s.items() if k not in ("scenario", "survived", "finished_rounds_lost")}
        lines.append(f"| {s['scenario']} | {'yes' if s['survived'] else 'NO'} | "
                     f"{s['finished_rounds_lost']} | {json.dumps(extra)} |")
    lines.append("")
    lines.append("| method | s/round (median) | one checkpoint write (s, median) | overhead | checkpoint MiB |")
    lines.append("|---|---|---|---|---|")
    for c in results["checkpoint"]:
        lines.append(f"| {c['method']} | {c['round_s']:.3f} | {c['checkpoint_write_s']:.3f} | "
                     f"{100 * c['overhead']:.0f} % | {c['checkpoint_mib']:.1f} |")
    sn = results["snapshot"]
    lines.append(f"\nclient snapshot (FZooS, {sn['history_points']} history points): save "
                 f"{sn['save_s']:.3f} s, load {sn['load_s']:.3f} s, {sn['mib']:.1f} MiB")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
