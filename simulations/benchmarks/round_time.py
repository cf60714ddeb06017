"""Benchmark: wall seconds per round of each method at the benchmark size.

Quadratic d=300, N=5, T=10, default settings; --rounds rounds, --repeats runs per method;
reports the median over all rounds of all runs (round 1 excluded: it has no history yet)
and the load average seen, since the box is shared.

    python simulations/benchmarks/round_time.py --rounds 10 --repeats 3
    python simulations/benchmarks/round_time.py --methods fzoos --busy-cores 1

``--busy-cores K`` keeps K other processes spinning during the measurement (a box shared
with another job).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

from fedzoo import RunConfig, make_problem, run_federation  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="fzoos,zord,fedzo,fedprox,scaffold1,scaffold2")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--busy-cores", type=int, default=0, help="spinning processes meanwhile")
    args = ap.parse_args()
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy_cores)]
    for p in spinners:
        p.start()
    try:
        return _measure(args)
    finally:
        for p in spinners:
            p.terminate()


def _spin() -> None:
    while True:
        pass


def _measure(args: argparse.Namespace) -> int:
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| method | s per round (median) | min | max | runs x rounds |")
    print("|---|---|---|---|---|")
    for method in args.methods.split(","):
        times = []
        for rep in range(args.repeats):
            p = make_problem("quadratic", dim=args.dim, clients=args.clients, heterogeneity=0.5, seed=rep)
            cfg = RunConfig.from_mapping({"method": method, "rounds": args.rounds, "seed": rep})
            res = run_federation(p, cfg, workers=args.workers)
            times += [r["wall_s"] for r in res.history[2:]]
        print(f"| {method} | {np.median(times):.3f} | {min(times):.3f} | {max(times):.3f} | "
              f"{args.repeats} x {args.rounds - 1} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
