"""What writing history.csv every round costs (issue 24: a kill keeps every finished round).

Runs the in-process engine on a small quadratic (fedzo, d = 4, N = 2, one local step: a
round of about a millisecond, the worst case for a per-round write) and on fedzo at the
defaults' scale (d = 300, N = 5), once with history.csv kept on disk every round (append,
flush, fsync at most once a second: :class:`fedzoo.results.HistoryFile`), with an fsync
every round, and with the per-round write switched off (the history is then only written
at the end), alternating; prints the median seconds per run and the cost per round.

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

CASES = [("fedzo", 4, 2, 400, {"local-steps": 1}), ("fedzo", 300, 5, 100, {})]


def one(method: str, dim: int, clients: int, rounds: int, extra: dict, mode: str) -> float:
    """Seconds of one run; ``mode``: off (history at the end only), live (the default:
    every round, fsync at most once a second) or fsync (fsync every round)."""
    problem = make_problem("quadratic", dim=dim, clients=clients, seed=0)
    config = RunConfig.from_mapping({"method": method, "rounds": rounds, **extra})
    real, interval = results.HistoryFile.sync, results.HistoryFile.FSYNC_INTERVAL_S
    if mode == "off":
        results.HistoryFile.sync = lambda self, rows: None
    if mode == "fsync":
        results.HistoryFile.FSYNC_INTERVAL_S = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_federation(problem, config, out_dir=Path(tmp) / "o", workers=1)
            return time.perf_counter() - t0
    finally:
        results.HistoryFile.sync, results.HistoryFile.FSYNC_INTERVAL_S = real, interval


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for method, dim, clients, rounds, extra in CASES:
        times: dict[str, list[float]] = {"off": [], "live": [], "fsync": []}
        for _ in range(args.repeats):
            for mode in times:
                times[mode].append(one(method, dim, clients, rounds, extra, mode))
        med = {mode: statistics.median(t) for mode, t in times.items()}
        off = med["off"]
        print(f"{method} d={dim} N={clients} {rounds} rounds: history at the end only {off:.3f} s; "
              + "; ".join(f"{label} {med[mode]:.3f} s ({1e3 * (med[mode] - off) / rounds:+.2f} ms "
                          f"per round, {100 * (med[mode] - off) / off:+.0f} %)"
                          for mode, label in (("live", "every round (fsync <= 1/s)"),
                                              ("fsync", "every round, fsync every round"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
