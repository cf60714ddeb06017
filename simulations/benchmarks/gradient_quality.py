"""Benchmark: gradient quality along real runs (the paper's Fig. 5, measured).

For FZooS, every local step's local surrogate gradient and corrected gradient are compared
with the client's true gradient grad f_i and the global grad F (cosine similarity); the
same for FedZO's RGF estimate (Q = 20). Quadratic d=300, N=5, T=10. For FZooS the
correction itself, gamma_t (grad global RFF - grad own RFF), is compared with what it
estimates, grad F - grad f_i: its cosine and its length relative to that target.

    python simulations/benchmarks/gradient_quality.py --rounds 10 --heterogeneity 0.5,5 \
        --csv runs/gradient-quality.csv

Prints two markdown tables: the mean cosine per round block, and the mean per local step
t = 1..T over rounds 2..R (round 1 has no correction yet); ``--csv`` writes every local
step of every client (method, C, round, client, t and the six measures).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from fedzoo import RunConfig, make_problem, run_federation  # noqa: E402

MEASURES = ("local-fi", "local-F", "corr-fi", "corr-F", "c-cos", "c-len")
HEADER = ("cos(local, grad f_i) | cos(local, grad F) | cos(corrected, grad f_i) | "
          "cos(corrected, grad F) | cos(correction, grad F - grad f_i) | "
          "len(correction) / len(grad F - grad f_i)")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def measure(method: str, C: float, rounds: int, seed: int, schedule: str = "inverse") -> list[dict]:
    """One row per local step of every client: round (1-based), client, t and MEASURES
    (the correction's two are NaN where there is no correction)."""
    p = make_problem("quadratic", dim=300, clients=5, heterogeneity=C, seed=seed)
    steps: list[dict] = []
    round_of = {"r": 1}

    def observer(cid: int, t: int, x: np.ndarray, g: np.ndarray, g_hat: np.ndarray) -> None:
        gi = p.objectives[cid].gradient(x[None])[0]
        G = p.global_gradient(x)
        c = g_hat - g
        steps.append({
            "method": method, "C": C, "round": round_of["r"], "client": cid, "t": t,
            "local-fi": cosine(g, gi), "local-F": cosine(g, G),
            "corr-fi": cosine(g_hat, gi), "corr-F": cosine(g_hat, G),
            "c-cos": cosine(c, G - gi) if np.any(c) else float("nan"),
            "c-len": float(np.linalg.norm(c) / np.linalg.norm(G - gi)) if np.any(c) else float("nan"),
        })

    def progress(row: dict, total: int) -> None:
        round_of["r"] = row["round"] + 1  # the round whose local steps come next

    cfg = RunConfig.from_mapping({"method": method, "rounds": rounds, "seed": seed,
                                  "gamma-schedule": schedule})
    run_federation(p, cfg, observer=observer, progress=progress, workers=1)
    return steps


def means(rows: list[dict]) -> str:
    cells = []
    for k in MEASURES:
        vals = [r[k] for r in rows if not np.isnan(r[k])]
        cells.append(f"{np.mean(vals):.3f}" if vals else "nan")
    return " | ".join(cells)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--heterogeneity", default="0.5,5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gamma-schedule", default="inverse", help="FZooS gamma_t schedule")
    ap.add_argument("--csv", help="write every local step's measures here")
    args = ap.parse_args()
    runs = [(C, method, measure(method, C, args.rounds, args.seed, args.gamma_schedule))
            for C in [float(c) for c in args.heterogeneity.split(",")] for method in ("fzoos", "fedzo")]
    print(f"| C | method | rounds | {HEADER} |")
    print("|---|---|---|---|---|---|---|---|---|")
    blocks = [(1, 1), (2, args.rounds // 2), (args.rounds // 2 + 1, args.rounds)]
    for C, method, steps in runs:
        for lo, hi in blocks:
            rows = [s for s in steps if lo <= s["round"] <= hi]
            print(f"| {C:g} | {method} | {lo}-{hi} | {means(rows)} |", flush=True)
    print(f"\nBy local step t (rounds 2-{args.rounds}):\n")
    print(f"| C | method | t | {HEADER} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for C, method, steps in runs:
        for t in sorted({s["t"] for s in steps}):
            rows = [s for s in steps if s["t"] == t and s["round"] >= 2]
            print(f"| {C:g} | {method} | {t} | {means(rows)} |")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["method", "C", "round", "client", "t", *MEASURES])
            w.writeheader()
            w.writerows(s for _, _, steps in runs for s in steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
