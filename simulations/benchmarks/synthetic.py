"""Benchmark: FZooS against the baselines on the paper's heterogeneous quadratic.

Quadratic, d=300, N=5, T=10, R=50, C in {0.5, 5, 50}, 3 seeds, every method. For each
(C, seed) the target is FedZO's final value of the same seed; the table shows, per method,
the median (and worst) over seeds of the final value, the queries needed to reach the
target, that count as a fraction of FedZO's total (the reading of the paper's bar: FZooS's
queries to FedZO's 50-round value against FedZO's 50 rounds), the same count as a fraction
of the queries FedZO itself needed to first reach its final value (FedZO often gets there
early and then wanders), and the median seconds per round.

    python simulations/benchmarks/synthetic.py --out runs/bench-synthetic
    python simulations/benchmarks/synthetic.py --render runs/bench-synthetic/results.json

Writes every run's history.csv/summary.json under --out, results.json and a markdown
table (stdout and --out/table.md).

``--variant LABEL=METHOD:KEY=VALUE,...`` adds a run of METHOD with options changed under
its own label, e.g. ``--variant fzoos-sqrt=fzoos:gamma-schedule=inverse-sqrt``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from fedzoo import RunConfig, make_problem, run_federation  # noqa: E402
from fedzoo.results import queries_to_reach  # noqa: E402

METHODS = ("fzoos", "zord", "fedzo", "fedprox", "scaffold1", "scaffold2", "fo")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-synthetic")
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--heterogeneity", default="0.5,5,50")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=METHOD:K=V,...")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="print the table of an earlier run's results.json and exit")
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return 0
    runs_to_do = [(m, m, {}) for m in args.methods.split(",")]
    for text in args.variant:
        label, _, rest = text.partition("=")
        method, _, opts = rest.partition(":")
        options = {}
        for kv in filter(None, opts.split(",")):
            key, _, value = kv.partition("=")
            options[key] = _value(value)
        runs_to_do.append((label, method, options))
    out = Path(args.out)
    results = []
    for C in [float(c) for c in args.heterogeneity.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            problem = make_problem("quadratic", dim=args.dim, clients=args.clients, heterogeneity=C, seed=seed)
            runs = {}
            for label, method, options in runs_to_do:
                cfg = RunConfig.from_mapping({"method": method, "rounds": args.rounds,
                                              "local-steps": args.local_steps, "seed": seed, **options})
                t0 = time.perf_counter()
                res = run_federation(problem, cfg, out_dir=out / f"C{C:g}" / f"seed{seed}" / label,
                                     workers=args.workers)
                runs[label] = res.history
                print(f"C={C:g} seed={seed} {label:<9} final {res.value:.6g} queries {res.num_queries} "
                      f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
            target = runs["fedzo"][-1]["value"] if "fedzo" in runs else None
            for method, rows in runs.items():
                results.append({
                    "C": C, "seed": seed, "method": method, "final_value": rows[-1]["value"],
                    "total_queries": rows[-1]["queries"],
                    "fedzo_final": target,
                    "fedzo_queries": runs["fedzo"][-1]["queries"] if "fedzo" in runs else None,
                    "queries_to_fedzo_final": queries_to_reach(rows, target) if target is not None else None,
                    "median_round_s": float(np.median([r["wall_s"] for r in rows[1:]])),
                    "optimum": problem.optimum_value,
                })
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    table = render(results)
    (out / "table.md").write_text(table)
    print(table)
    return 0


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def render(results: list[dict]) -> str:
    lines = []
    for C in sorted({r["C"] for r in results}):
        sub = [r for r in results if r["C"] == C]
        fz = [r for r in sub if r["method"] == "fedzo"]
        fz_final = np.median([r["final_value"] for r in fz]) if fz else math.nan
        lines.append(f"\n**C = {C:g}** (F* = {sub[0]['optimum']:.5f}; FedZO final, median of seeds: {fz_final:.5f})\n")
        lines.append("| method | final value (median / worst) | queries to FedZO's final (per seed) | "
                     "fraction of FedZO's queries (median / worst) | fraction of FedZO's own queries "
                     "to its final (median / worst) | s per round (median) |")
        lines.append("|---|---|---|---|---|---|")
        fedzo_own = {r["seed"]: r["queries_to_fedzo_final"] for r in fz}
        for method in dict.fromkeys(r["method"] for r in sub):
            rs = [r for r in sub if r["method"] == method]
            finals = [r["final_value"] for r in rs]
            q = [r["queries_to_fedzo_final"] for r in rs]
            frac = [qi / r["fedzo_queries"] if qi is not None else math.inf for qi, r in zip(q, rs)]
            qs = ", ".join(str(x) if x is not None else "never" for x in q)
            fr = _ratio(frac)
            own = [qi / fedzo_own[r["seed"]] if qi is not None and fedzo_own.get(r["seed"]) else math.inf
                   for qi, r in zip(q, rs)]
            lines.append(f"| {method} | {np.median(finals):.5f} / {max(finals):.5f} | {qs} | {fr} | "
                         f"{_ratio(own)} | {np.median([r['median_round_s'] for r in rs]):.3f} |")
    return "\n".join(lines) + "\n"


def _ratio(fractions: list[float]) -> str:
    """'median / worst' of per-seed fractions; 'never' for a seed that never got there."""
    worst = f"{max(fractions):.3f}" if all(math.isfinite(f) for f in fractions) else "never"
    return f"{np.median(fractions):.3f} / {worst}"


if __name__ == "__main__":
    sys.exit(main())
