"""What writing history.csv every round costs (issue 24: a kill keeps every finished round).

Runs the in-process engine on a small quadratic (fedzo, d = 4, N = 2, one local step: a
round of about a millisecond, the worst case for a per-round write) and on the defaults'
scale (fzoos, d = 300, N = 5), once with history.csv kept on disk every round (append,
flush, fsync: :class:`fedzoo.results.HistoryFile`) and once with that write switched off
(the history is then only written at the end), alternating, and prints the median seconds
per run and the cost per round.

    OPENBLAS_NUM_THREADS=1 python simulations/benchmarks/history_cost.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fedzoo import results
from fedzoo.config import RunConfig
from fedzoo.engine import run_federation
from fedzoo.objectives import make_problem

CASES = [("fedzo", 4, 2, 400, {"local-steps": 1}), ("fzoos", 300, 5, 5, {})]


def one(method: str, dim: int, clients: int, rounds: int, extra: dict, live: bool) -> float:
    problem = make_problem("quadratic", dim=dim, clients=clients, seed=0)
    config = RunConfig.from_mapping({"method": method, "rounds": rounds, **extra})
    real = results.HistoryFile.sync
    if not live:
        results.HistoryFile.sync = lambda self, rows: None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_federation(problem, config, out_dir=Path(tmp) / "o", workers=1)
            return time.perf_counter() - t0
    finally:
        results.HistoryFile.sync = real


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for method, dim, clients, rounds, extra in CASES:
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for live in (True, False):
                times[live].append(one(method, dim, clients, rounds, extra, live))
        on, off = statistics.median(times[True]), statistics.median(times[False])
        print(f"{method} d={dim} N={clients} {rounds} rounds: per-round history {on:.3f} s, "
              f"at the end only {off:.3f} s; {1e3 * (on - off) / rounds:.2f} ms per round "
              f"({100 * (on - off) / off:.0f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
