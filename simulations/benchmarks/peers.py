"""FZooS against every registered method and CMA-ES, at equal exchanges and equal queries.

For each problem and seed every method runs on the same federation (d=300, N=5, T=10,
R=50 by default). Each history row is placed at its cumulative client queries and its
cumulative exchanges (one per train, one per sync, one for a final evaluation), so that
methods with one and two exchanges per round are compared on both axes:

* **final**: the value at the end of each method's run (every method gets the rounds
  that make its exchanges and its queries about FZooS's: ``fedcma`` runs 2R rounds of one
  exchange, λ = 51, which is 53 queries per client per round against FZooS's 106 over
  two exchanges);
* **at FZooS's budget**: the best value each method *returned* (history value, not a
  peek at points it did not return) within FZooS's exchanges and within FZooS's queries;
* **to target**: the queries and exchanges each method first needs to reach three
  targets per problem, F(x0) − q·(F(x0) − best final of all methods) for q = 0.5, 0.9,
  0.99 (F* is unknown for the paper's problems).

Variants under their own labels run a method with other options (``VARIANTS``): the step
control that ``fzoos`` uses by default offered to the baselines (``fedzo+inc`` is fedzo
with ``step-control = incumbent`` and its default wide start ``step-start`` = 30;
``fedzo+inc1`` the same with ``step-start`` = 1, the plain lr), and the ablations
``fzoos+inverse`` (the paper's γ/t), ``fzoos+nostep`` (no step control; ``fzoos-paper``
lacks both) and ``fzoos+narrow`` (``step-start`` = 1, i.e. ``fzoos`` before 4 Dec).

    python simulations/benchmarks/peers.py --out runs/peers                 # everything
    python simulations/benchmarks/peers.py --out runs/peers-q --problems quadratic:0.5 \
        --seeds 0,1,2 --methods fzoos,fzoos-paper,fedzo,fedprox,fedcma
    python simulations/benchmarks/peers.py --render runs/peers/results.json  # tables again

Writes ``results.json`` (every history), ``peers.md`` (the tables) and, with matplotlib,
``peers-<problem>.png`` (median value against exchanges and against queries).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

PROBLEMS = ("quadratic:0.5", "quadratic:5", "quadratic:50", "ackley:0.5", "levy:0.5",
            "paper-ackley:0.5", "paper-levy:0.5")
METHODS = ("fzoos", "fzoos-paper", "zord", "fedzo", "fedprox", "scaffold1", "scaffold2", "fedcma",
           "fedzo+inc", "fedprox+inc", "scaffold1+inc", "scaffold2+inc", "fedzo+inc1", "fedprox+inc1",
           "scaffold1+inc1", "scaffold2+inc1")
VARIANTS = {
    "+inc": {"step-control": "incumbent"},  # FZooS's step control (wide start included) offered to a baseline
    "+inc1": {"step-control": "incumbent", "step-start": 1.0},  # the same without the wide start
    "+narrow": {"step-start": 1.0},  # fzoos without the wide start (ablation; fzoos before 4 Dec)
    "+start3": {"step-start": 3.0},  # the wide start's screen (BENCHMARKS §8)
    "+start10": {"step-start": 10.0},
    "+start100": {"step-start": 100.0},
    "+grow12": {"step-grow": 1.2},  # a trust region that widens again after accepted rounds (§8)
    "+grow15": {"step-grow": 1.5},
    "+inverse": {"gamma-schedule": "inverse"},  # fzoos with the paper's gamma/t (ablation)
    "+nostep": {"step-control": "none"},  # fzoos without step control (ablation)
}
LEVELS = (0.5, 0.9, 0.99)


def _spec(label: str, rounds: int) -> tuple[str, dict[str, Any]]:
    """(method, options) of a label: ``name`` or ``name+variant``."""
    name, plus, variant = label.partition("+")
    options = dict(VARIANTS["+" + variant]) if plus else {}
    if name == "fedcma":
        options["rounds"] = 2 * rounds  # one exchange per round: FZooS's exchanges and queries
    return name, options


def run_one(job: tuple[str, str, int, dict[str, Any]]) -> dict[str, Any]:
    """One (problem, label, seed) run; rows reduced to what the tables need."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from fedzoo.config import RunConfig
    from fedzoo.engine import run_federation
    from fedzoo.methods import get_method
    from fedzoo.objectives import make_problem

    problem_key, label, seed, base = job
    name, heterogeneity = problem_key.split(":")
    method, options = _spec(label, base["rounds"])
    problem = make_problem(name, dim=base["dim"], clients=base["clients"],
                           heterogeneity=float(heterogeneity), seed=seed)
    config = RunConfig.from_mapping({"rounds": base["rounds"], "local-steps": base["local_steps"],
                                     "seed": seed, "method": method, **options})
    t0 = time.perf_counter()
    res = run_federation(problem, config, workers=1)
    per_round = 2 if get_method(method).has_sync else 1
    rows = []
    for row in res.history:
        exchanges = row["round"] * per_round
        rows.append({"round": row["round"], "queries": int(row["queries"]),
                     "exchanges": exchanges, "value": float(row["value"])})
    if per_round == 1 and len(res.history) > 1 and not math.isnan(res.history[-1]["reported_value"]):
        rows[-1]["exchanges"] += 1  # the final evaluation, charged to the last row
    return {"problem": problem_key, "label": label, "seed": seed, "rows": rows,
            "seconds": time.perf_counter() - t0, "optimum": problem.optimum_value}


def best_within(rows: list[dict[str, Any]], key: str, budget: float) -> float:
    """The best value a run had returned within ``budget`` exchanges or queries."""
    vals = [r["value"] for r in rows if r[key] <= budget]
    return min(vals) if vals else math.nan


def first_reach(rows: list[dict[str, Any]], target: float) -> tuple[float, float]:
    """(queries, exchanges) at the first row at or below ``target`` (inf if never)."""
    for r in rows:
        if r["value"] <= target:
            return r["queries"], r["exchanges"]
    return math.inf, math.inf


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "never"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.5g}" if isinstance(v, float) else str(v)


def render(results: list[dict[str, Any]], out: Path) -> str:
    """The markdown tables (one section per problem) and, with matplotlib, the plots."""
    lines = []
    problems = list(dict.fromkeys(r["problem"] for r in results))
    for prob in problems:
        runs = [r for r in results if r["problem"] == prob]
        labels = list(dict.fromkeys(r["label"] for r in runs))
        seeds = sorted({r["seed"] for r in runs})
        by = {(r["label"], r["seed"]): r["rows"] for r in runs}
        ref = "fzoos" if any(lb == "fzoos" for lb in labels) else labels[0]
        start = statistics.median(by[(labels[0], s)][0]["value"] for s in seeds if (labels[0], s) in by)
        lines += [f"### {prob} (seeds {','.join(map(str, seeds))}; median F(x0) = {start:.5g})", ""]
        lines += ["| method | final (median / worst) | best within fzoos's exchanges (median / worst) "
                  "| best within fzoos's queries (median / worst) | queries to the targets "
                  f"q={'/'.join(map(str, LEVELS))} (median) | exchanges to the targets (median) |",
                  "|---|---|---|---|---|---|"]
        targets = {}
        for s in seeds:
            finals = [by[(lb, s)][-1]["value"] for lb in labels if (lb, s) in by]
            x0 = next(by[(lb, s)][0]["value"] for lb in labels if (lb, s) in by)
            best = min(finals)
            targets[s] = [x0 - q * (x0 - best) for q in LEVELS]
        for lb in labels:
            have = [s for s in seeds if (lb, s) in by]
            finals = [by[(lb, s)][-1]["value"] for s in have]
            ex_b = [best_within(by[(lb, s)], "exchanges", by[(ref, s)][-1]["exchanges"])
                    for s in have if (ref, s) in by]
            q_b = [best_within(by[(lb, s)], "queries", by[(ref, s)][-1]["queries"])
                   for s in have if (ref, s) in by]
            reach = [[first_reach(by[(lb, s)], t) for t in targets[s]] for s in have]
            qs = [statistics.median(reach[i][k][0] for i in range(len(have))) for k in range(len(LEVELS))]
            es = [statistics.median(reach[i][k][1] for i in range(len(have))) for k in range(len(LEVELS))]

            def mw(v: list[float]) -> str:
                v = [x for x in v if not math.isnan(x)]
                return f"{_fmt(statistics.median(v))} / {_fmt(max(v))}" if v else "-"

            lines.append(f"| {lb} | {mw(finals)} | {mw(ex_b)} | {mw(q_b)} | "
                         f"{' / '.join(_fmt(float(q)) for q in qs)} | {' / '.join(_fmt(float(e)) for e in es)} |")
        lines.append("")
        lines += _fedzo_bar(by, seeds, ref)
        _plot(prob, labels, seeds, by, out)
    return "\n".join(lines)


def _fedzo_bar(by: dict, seeds: list[int], ref: str) -> list[str]:
    """The issue's "1/8 bar": queries ``ref`` needs to first reach FedZO's final value,
    divided by the queries FedZO itself needed to first reach it (per seed)."""
    parts = []
    for s in seeds:
        if ("fedzo", s) not in by or (ref, s) not in by or ref == "fedzo":
            continue
        target = by[("fedzo", s)][-1]["value"]
        q_fedzo = first_reach(by[("fedzo", s)], target)[0]
        q_ref = first_reach(by[(ref, s)], target)[0]
        ratio = q_ref / q_fedzo if math.isfinite(q_ref) else math.inf
        parts.append(f"seed {s}: {_fmt(float(q_ref))} / {_fmt(float(q_fedzo))} = {_fmt(ratio)}")
    if not parts:
        return []
    return [f"Queries {ref} needs to first reach FedZO's final value, over FedZO's own "
            f"queries to first reach it (the 1/8 bar is 0.125): {'; '.join(parts)}.", ""]


def _plot(prob: str, labels: list[str], seeds: list[int], by: dict, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for lb in labels:
        runs = [by[(lb, s)] for s in seeds if (lb, s) in by]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        med = [statistics.median(r[i]["value"] for r in runs) for i in range(n)]
        for ax, key in zip(axes, ("exchanges", "queries")):
            ax.plot([runs[0][i][key] for i in range(n)], med, label=lb,
                    linestyle="-" if "+" not in lb else ":")
    for ax, key in zip(axes, ("exchanges", "client queries")):
        ax.set_xlabel(key)
        ax.set_ylabel("F (median over seeds)")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{prob}: value against exchanges and against queries")
    fig.tight_layout()
    fig.savefig(out / f"peers-{prob.replace(':', '-C')}.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/peers")
    p.add_argument("--problems", default=",".join(PROBLEMS), help="name:heterogeneity, comma-separated")
    p.add_argument("--methods", default=",".join(METHODS), help="labels (method or method+inc)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--dim", type=int, default=300)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    p.add_argument("--render", metavar="RESULTS", help="only render an earlier results.json")
    p.add_argument("--keep", action="store_true",
                   help="keep the runs already in --out/results.json and run only the others")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        results = json.loads(Path(args.render).read_text())
    else:
        base = {"rounds": args.rounds, "local_steps": args.local_steps, "dim": args.dim,
                "clients": args.clients}
        jobs = [(prob, lb, int(s), base) for prob in args.problems.split(",")
                for s in args.seeds.split(",") for lb in args.methods.split(",")]
        results = []
        if args.keep and (out / "results.json").is_file():
            results = json.loads((out / "results.json").read_text())
            done = {(r["problem"], r["label"], r["seed"]) for r in results}
            jobs = [j for j in jobs if (j[0], j[1], j[2]) not in done]
        with ProcessPoolExecutor(args.jobs) as pool:
            for res in pool.map(run_one, jobs):
                results.append(res)
                print(f"{res['problem']} {res['label']} seed {res['seed']}: final "
                      f"{res['rows'][-1]['value']:.6g} after {res['rows'][-1]['exchanges']} exchanges, "
                      f"{res['rows'][-1]['queries']} queries ({res['seconds']:.0f} s)", flush=True)
                (out / "results.json").write_text(json.dumps(results))
    text = render(results, out)
    (out / "peers.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
