"""Federated BBOB: every federated method at its defaults and the two central peers.

Problems ``bbob:f1`` .. ``bbob:f24`` (fedzoo/objectives/bbob.py: client i holds instance
1 + sN + i of the function, s = ``--problem-seed``; 0 = instances 1..N, the tuning set),
N = 5 clients, d in {10, 40} and a few functions at d = 320 (``--large``; cocoex offers
no d = 300, docs/design.md §7.4). Budget: ``--budget-factor`` · d client queries (1000 d,
summed over the clients; a run stops before a round that could pass it and
keeps N queries for the final evaluation). ``fedcma`` / ``fedngopt`` run the rounds that
fit the budget (NGOpt's ``budget`` hint is rounds × batch).

Results: one JSON per (function, d, method, seed) under ``--out``/runs (resumable: an
existing file is kept; written atomically), then runtime ECDFs (COCO-style, the fraction
of (problem, target) pairs reached) against client queries / d and against exchanges,
aggregated and per function group (separable f1-5, moderate f6-9, ill-conditioned
f10-14, multimodal with global structure f15-19, weak structure f20-24), one PNG per d
and axis, plus ``summary.md``. F* of the federated mean is unknown, so targets are
relative: F_L + τ (F(x0) - F_L) for τ = 10^-1 .. 10^-6 with F_L the lowest F any run of
that problem (all methods and seeds) reached (Moré and Wild's data profiles). A run
reaches a target at the first round whose global point has F (simulated, never a query)
at or below it.

    # the full benchmark
    python simulations/benchmarks/bbob.py --out runs/bbob --jobs 2
    # a smoke run (two functions, d = 10, budget 2000, three methods; BENCHMARKS.md §10)
    python simulations/benchmarks/bbob.py --out runs/bbob-smoke --functions 1,8 --dims 10 \\
        --large none --budget 2000 --methods fedzo,fedngopt,fedcma --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

#: Federated methods at their defaults and the two central peers (fedsquare, fzoos-vertex
#: and fzoos-square search an L-inf ball's vertices, for attacks; fo needs exact gradients).
METHODS = ("fzoos", "fzoos-paper", "fzoos-lagged", "zord", "fedzo", "fedprox", "scaffold1",
           "scaffold2", "fedzo-gauss", "fedcma", "fedngopt")
CENTRAL = ("fedcma", "fedngopt")
GROUPS = {
    "separable f1-5": range(1, 6),
    "moderate f6-9": range(6, 10),
    "ill-conditioned f10-14": range(10, 15),
    "multimodal f15-19": range(15, 20),
    "weak structure f20-24": range(20, 25),
}
TAUS = tuple(10.0 ** -k for k in range(1, 7))


def parse_ints(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def run_path(out: Path, f: int, d: int, method: str, seed: int) -> Path:
    return out / "runs" / f"f{f:02d}-d{d}-{method}-s{seed}.json"


def one_run(task: dict[str, Any]) -> dict[str, Any]:
    """One (function, d, method, seed) run; returns what its JSON holds."""
    from fedzoo.config import RunConfig
    from fedzoo.engine import run_federation
    from fedzoo.methods import get_method
    from fedzoo.objectives import make_problem

    f, d, method, seed, n = task["function"], task["dim"], task["method"], task["seed"], task["clients"]
    budget = task["budget"]
    problem = make_problem(f"bbob:f{f}", dim=d, clients=n, heterogeneity=0.0, seed=task["problem_seed"])
    m = get_method(method)
    options: dict[str, Any] = {"method": method, "seed": seed}
    if method in CENTRAL:
        # the rounds that fit the budget (B + 1 queries per client and round, B + 2 when the
        # point moved): NGOpt's budget hint is rounds x B
        per_round = (m.query_bound(RunConfig.from_mapping({**options, "rounds": 1}), d, "train", False) or 2) - 1
        rounds = max(1, (budget - n) // (n * per_round))
    else:  # the budget ends the run (every round costs each client at least one query)
        rounds = max(1, min(budget // n, 100_000))
    config = RunConfig.from_mapping({**options, "rounds": rounds})
    t0 = time.perf_counter()
    res = run_federation(problem, config, workers=1, query_budget=budget)
    wall = time.perf_counter() - t0
    per_exchange = 2 if m.has_sync else 1
    rows = [{"round": int(r["round"]), "queries": int(r["queries"]), "exchanges": int(r["round"]) * per_exchange,
             "value": float(r["value"])} for r in res.history]
    return {**{k: task[k] for k in ("function", "dim", "method", "seed", "clients", "budget", "problem_seed")},
            "instances": problem.info["instances"], "rounds": rounds, "wall_s": wall,
            "f_x0": rows[0]["value"], "best": min(r["value"] for r in rows), "history": rows}


def run_and_save(task: dict[str, Any]) -> tuple[str, float]:
    path = Path(task["path"])
    result = one_run(task)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)
    return path.name, result["wall_s"]


def first_reach(rows: list[dict[str, Any]], target: float, key: str) -> float:
    best = math.inf
    for r in rows:
        best = min(best, r["value"])
        if best <= target:
            return float(r[key])
    return math.inf


def ecdf_data(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per (problem, seed): F_L, targets and, per method, the runtimes to each target."""
    by_problem: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in results:
        by_problem.setdefault((r["function"], r["dim"]), []).append(r)
    out: dict[str, Any] = {}
    for (f, d), runs in by_problem.items():
        f_l = min(r["best"] for r in runs)
        f0 = runs[0]["f_x0"]
        targets = [f_l + tau * (f0 - f_l) for tau in TAUS]
        for r in runs:
            scale = d if key == "queries" else 1
            times = [first_reach(r["history"], t, key) / scale for t in targets]
            out.setdefault(r["method"], []).append({"function": f, "dim": d, "times": times})
    return out


def plot_ecdfs(results: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for d in sorted({r["dim"] for r in results}):
        sub = [r for r in results if r["dim"] == d]
        for key, label in (("queries", "client queries / d"), ("exchanges", "exchanges")):
            data = ecdf_data(sub, key)
            # the axis spans what any run spent (queries / d, or exchanges)
            xmax = max(r["history"][-1][key] / (d if key == "queries" else 1) for r in sub)
            xmin = min(1.0, xmax / 10)
            panels = [("all functions", range(1, 25)), *GROUPS.items()]
            fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), sharey=True)
            for ax, (title, fs) in zip(axes.ravel(), panels):
                fs = set(fs)
                drawn = False
                for method in sorted(data):
                    times = [t for e in data[method] if e["function"] in fs for t in e["times"]]
                    if not times:
                        continue
                    drawn = True
                    finite = np.sort([max(t, xmin) for t in times if math.isfinite(t)])
                    xs = np.concatenate([[xmin], finite, [xmax]])
                    ys = np.concatenate([[0.0], np.arange(1, finite.size + 1) / len(times),
                                         [finite.size / len(times)]])
                    style = "--" if method in CENTRAL else "-"
                    ax.step(xs, ys, where="post", ls=style, label=method)
                nfun = len({e["function"] for m in data.values() for e in m if e["function"] in fs})
                ax.set_title(f"{title} ({nfun} functions)")
                ax.set_xscale("log")
                ax.set_xlim(xmin, xmax * 1.05)
                ax.set_xlabel(label)
                ax.set_ylim(0, 1)
                ax.grid(alpha=0.3)
                if drawn and ax is axes[0, 0]:
                    ax.legend(fontsize=7, loc="upper left")
            axes[0, 0].set_ylabel("fraction of (function, target) pairs")
            axes[1, 0].set_ylabel("fraction of (function, target) pairs")
            fig.suptitle(f"Federated BBOB, d = {d}, N = {sub[0]['clients']}: runtime ECDF, targets "
                         f"F_L + tau (F(x0) - F_L), tau = 1e-1 .. 1e-6 (F_L: best of all runs)")
            fig.tight_layout()
            path = out / f"ecdf-{key}-d{d}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
    return written


def summary_table(results: list[dict[str, Any]]) -> str:
    lines = ["| d | method | runs | targets reached | median wall s |", "|---|---|---|---|---|"]
    for d in sorted({r["dim"] for r in results}):
        data = ecdf_data([r for r in results if r["dim"] == d], "queries")
        for method in sorted(data):
            times = [t for e in data[method] for t in e["times"]]
            walls = sorted(r["wall_s"] for r in results if r["dim"] == d and r["method"] == method)
            reached = sum(math.isfinite(t) for t in times)
            lines.append(f"| {d} | {method} | {len(data[method])} | {reached}/{len(times)} | "
                         f"{walls[len(walls) // 2]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bbob"))
    ap.add_argument("--functions", default="1-24", help="BBOB functions, e.g. 1-24 or 1,8")
    ap.add_argument("--dims", default="10,40")
    ap.add_argument("--large", default="320:1,8,15,21",
                    help="DIM:FUNCTIONS also run in a large dimension ('none' for none)")
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--budget-factor", type=int, default=1000, help="client queries per dimension")
    ap.add_argument("--budget", type=int, default=0, help="client queries (overrides the factor)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0", help="run seeds")
    ap.add_argument("--problem-seed", type=int, default=0, help="instances 1+sN..: 0 = tuning set")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)

    combos = [(f, d) for d in parse_ints(args.dims) for f in parse_ints(args.functions)]
    if args.large != "none":
        dim, fs = args.large.split(":")
        combos += [(f, int(dim)) for f in parse_ints(fs)]
    methods = [m for m in args.methods.split(",") if m]
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    tasks = []
    for f, d in combos:
        for method in methods:
            for seed in parse_ints(args.seeds):
                path = run_path(args.out, f, d, method, seed)
                budget = args.budget or args.budget_factor * d
                tasks.append({"function": f, "dim": d, "method": method, "seed": seed, "clients": args.clients,
                              "budget": budget, "problem_seed": args.problem_seed, "path": str(path)})
    todo = [t for t in tasks if not Path(t["path"]).exists()]
    print(f"{len(tasks)} runs, {len(tasks) - len(todo)} already done, {len(todo)} to run "
          f"({args.jobs} jobs)", flush=True)
    t0 = time.perf_counter()
    if args.jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_and_save, t) for t in todo]
            for i, fut in enumerate(as_completed(futures), 1):
                name, wall = fut.result()
                print(f"[{i}/{len(todo)}] {name} {wall:.1f}s", flush=True)
    else:
        for i, t in enumerate(todo, 1):
            name, wall = run_and_save(t)
            print(f"[{i}/{len(todo)}] {name} {wall:.1f}s", flush=True)
    print(f"ran {len(todo)} runs in {time.perf_counter() - t0:.1f}s", flush=True)

    results = [json.loads(Path(t["path"]).read_text()) for t in tasks]
    table = summary_table(results)
    (args.out / "summary.md").write_text(
        "# Federated BBOB\n\n" + " ".join(sys.argv) + "\n\n" + table)
    print(table, end="")
    if not args.no_plot:
        for path in plot_ecdfs(results, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
