"""Benchmark: gradient quality along real runs (the paper's Fig. 5, measured).

For FZooS, every local step's local surrogate gradient and corrected gradient are compared
with the client's true gradient grad f_i and the global grad F (cosine similarity); the
same for FedZO's RGF estimate (Q = 20). Quadratic d=300, N=5, T=10. For FZooS the
correction itself, gamma_t (grad global RFF - grad own RFF), is compared with what it
estimates, grad F - grad f_i: its cosine and its length relative to that target.

    python simulations/benchmarks/gradient_quality.py --rounds 10 --heterogeneity 0.5,5

Prints a markdown table of the mean cosine per round block.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402

import numpy as np  # noqa: E402

from fedzoo import RunConfig, make_problem, run_federation  # noqa: E402


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def measure(method: str, C: float, rounds: int, seed: int, schedule: str = "inverse") -> dict[str, list[float]]:
    p = make_problem("quadratic", dim=300, clients=5, heterogeneity=C, seed=seed)
    out: dict[str, list[float]] = defaultdict(list)
    round_of = {"r": 0}

    def observer(cid: int, t: int, x: np.ndarray, g: np.ndarray, g_hat: np.ndarray) -> None:
        gi = p.objectives[cid].gradient(x[None])[0]
        G = p.global_gradient(x)
        r = round_of["r"]
        out[f"local-fi-{r}"].append(cosine(g, gi))
        out[f"local-F-{r}"].append(cosine(g, G))
        out[f"corr-fi-{r}"].append(cosine(g_hat, gi))
        out[f"corr-F-{r}"].append(cosine(g_hat, G))
        c = g_hat - g
        if np.any(c):
            out[f"c-cos-{r}"].append(cosine(c, G - gi))
            out[f"c-len-{r}"].append(float(np.linalg.norm(c) / np.linalg.norm(G - gi)))

    def progress(row: dict, total: int) -> None:
        round_of["r"] = row["round"]

    cfg = RunConfig.from_mapping({"method": method, "rounds": rounds, "seed": seed,
                                  "gamma-schedule": schedule})
    run_federation(p, cfg, observer=observer, progress=progress, workers=1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--heterogeneity", default="0.5,5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gamma-schedule", default="inverse", help="FZooS gamma_t schedule")
    args = ap.parse_args()
    print("| C | method | rounds | cos(local, grad f_i) | cos(local, grad F) | cos(corrected, grad f_i) | "
          "cos(corrected, grad F) | cos(correction, grad F - grad f_i) | len(correction) / len(grad F - grad f_i) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for C in [float(c) for c in args.heterogeneity.split(",")]:
        for method in ("fzoos", "fedzo"):
            res = measure(method, C, args.rounds, args.seed, args.gamma_schedule)
            blocks = [(0, 0), (1, args.rounds // 2 - 1), (args.rounds // 2, args.rounds - 1)]
            for lo, hi in blocks:
                def m(kind: str, lo: int = lo, hi: int = hi, res: dict = res) -> float:
                    vals = [v for r in range(lo, hi + 1) for v in res.get(f"{kind}-{r}", [])]
                    return float(np.mean(vals)) if vals else float("nan")
                print(f"| {C:g} | {method} | {lo + 1}-{hi + 1} | {m('local-fi'):.3f} | {m('local-F'):.3f} | "
                      f"{m('corr-fi'):.3f} | {m('corr-F'):.3f} | {m('c-cos'):.3f} | {m('c-len'):.3f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
