"""Markdown tables from the summary.json files of `fedzoo attack` runs.

Usage: python simulations/attack/summarize.py [--plots DIR] RUN_ROOT [RUN_ROOT ...]
       (default runs/attack)

Every directory below the roots holding a summary.json written by `fedzoo attack` is
read; runs on the same problem (data set, N, P, eps, targeting, images, budget) are
merged into one table with a row per (method, run directory): success rate at each
reported budget, queries to 50 % and 90 % success (">B" when not reached within the budget B),
mean / median queries to success over the fooled images, and the median seconds per
round. A line per table compares FZooS with FedZO when both ran: the ratio of their
queries to 90 % success, or a bound set by the budget when one of them did not reach it.

Exchanges: the success rate within 10, 20 and 40 exchanges (server <-> clients message
rounds: rounds x 2 for methods with a sync exchange, x 1 otherwise; an image counts when it
was fooled within the run's query budget *and* that many exchanges), read from each run's
attack.csv. With several fedsquare runs (one per ``--square-candidates`` lambda) a line
names the best lambda at each query and exchange budget. ``--plots DIR`` writes, per
problem, success rate against queries and against exchanges (matplotlib), in
DIR/<dataset>-n<N>-p<P>-eps<EPS>[-targeted]/ (plus -k<K>-b<budget> when two problems
of the roots share that name). For grid.sh's output: grid_summary.py.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any


def _q(v: object) -> str:
    return "-" if v is None else f"{float(v):.0f}"  # type: ignore[arg-type]


def _reach(q: float | None, cap: int | None) -> str:
    return _q(q) if q is not None else (f"> {cap}" if cap else "not reached")


def _budget(b: object) -> str:
    """A query budget as a column name: 2000 -> 2k, 2500 -> 2500."""
    v = int(b)  # type: ignore[call-overload]
    return f"{v // 1000}k" if v >= 1000 and v % 1000 == 0 else str(v)


def _key(s: dict[str, Any]) -> tuple[Any, ...]:
    p = s["problem"]
    return (
        p.get("dataset"),
        p.get("num_clients"),
        p.get("portion"),
        s["epsilon"],
        s["targeted"],
        tuple(s["images"]),
        s["budget"],
    )


EXCHANGE_BUDGETS = (10, 20, 40)


def exchanges_per_round(method: str) -> int:
    from fedzoo.methods import get_method

    return 2 if get_method(method).has_sync else 1


def outcomes(summary_dir: Path, method: str) -> list[tuple[int | None, int | None]]:
    """(queries, exchanges) to success per image of ``method`` (None: not fooled)."""
    rows = list(csv.DictReader(open(summary_dir / "attack.csv")))
    per = exchanges_per_round(method)
    out = []
    for r in rows:
        if r.get("method", method) != method:
            continue
        ok = r["success"] in ("1", "True", "true")
        out.append((int(float(r["queries_to_success"])) if ok else None,
                    int(float(r["rounds_to_success"])) * per if ok else None))
    return out


def label(method: str, name: str, summary: dict[str, Any]) -> str:
    lam = summary["results"][method]["config"].get("square-candidates")
    return f"{method} (λ={lam})" if method == "fedsquare" else method


def exchange_table(runs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    head = ["method", "run", *[f"success @{e} exchanges" for e in EXCHANGE_BUDGETS],
            "median exchanges to success"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best: dict[str, tuple[float, str]] = {}
    for path, summary in runs:
        for method in summary["methods"]:
            outs = outcomes(path, method)
            k = max(len(outs), 1)
            ex = sorted(e for _, e in outs if e is not None)
            rates = [sum(e is not None and e <= b for _, e in outs) / k for b in EXCHANGE_BUDGETS]
            med = f"{ex[len(ex) // 2]:.0f}" if ex else "-"
            lines.append("| " + " | ".join([label(method, path.name, summary), path.name,
                                            *[f"{r:.2f}" for r in rates], med]) + " |")
            if method == "fedsquare":
                lam = label(method, path.name, summary)
                qs = summary["results"][method]["success_rate_at"]
                for key, rate in [*((f"{b} queries", qs[b]) for b in sorted(qs, key=int)),
                                  *((f"{b} exchanges", r) for b, r in zip(EXCHANGE_BUDGETS, rates))]:
                    if key not in best or rate > best[key][0]:
                        best[key] = (rate, lam)
    if best:
        lines.append("\nBest fedsquare λ (first listed wins ties): " + "; ".join(
            f"@{k}: {v[1]} {v[0]:.2f}" for k, v in best.items()))
    return lines


def plots(runs: list[tuple[Path, dict[str, Any]]], out: Path, title: str) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plots)")
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for axis, index, top in (("queries", 0, None), ("exchanges", 1, 60)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for path, summary in runs:
            for method in summary["methods"]:
                outs = outcomes(path, method)
                vals = sorted(o[index] for o in outs if o[index] is not None)
                cap = top or summary.get("budget") or (vals[-1] if vals else 1)
                xs = [0, *vals, cap]
                ys = [0, *[(i + 1) / len(outs) for i in range(len(vals))], len(vals) / max(len(outs), 1)]
                ax.step(xs, ys, where="post", label=label(method, path.name, summary))
        ax.set_xlabel(f"{axis} (all clients)" if axis == "queries" else "exchanges (server <-> clients)")
        ax.set_ylabel("success rate")
        ax.set_title(title, fontsize=9)
        if axis == "queries":
            ax.set_xscale("symlog", linthresh=100)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"success_vs_{axis}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def table(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    budgets = [str(b) for b in runs[0][1]["budgets"]]
    cap = runs[0][1].get("budget")
    head = [
        "method",
        "run",
        *[f"success @{_budget(b)}" for b in budgets],
        "queries to 50 %",
        "queries to 90 %",
        "mean / median queries to success",
        "s / round",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    q90: dict[str, list[float | None]] = {}
    for name, summary in runs:
        for method in summary["methods"]:
            r = summary["results"][method]
            q = r["queries_to_90pct"]
            q90.setdefault(method, []).append(q)
            rates = [
                f"{r['success_rate_at'][b]:.2f} ({round(r['success_rate_at'][b] * r['images'])}/{r['images']})"
                for b in budgets
            ]
            lines.append(
                "| "
                + " | ".join(
                    [
                        method,
                        name,
                        *rates,
                        _reach(r["queries_to_50pct"], cap),
                        _reach(q, cap),
                        f"{_q(r['mean_queries_to_success'])} / {_q(r['median_queries_to_success'])}",
                        f"{r['median_round_s']:.2f}" if r["median_round_s"] is not None else "-",
                    ]
                )
                + " |"
            )
    if "fzoos" in q90 and "fedzo" in q90 and len(q90["fzoos"]) == len(q90["fedzo"]) == 1:
        lines.append("\n" + ratio_line(q90["fzoos"][0], q90["fedzo"][0], cap))
    return lines


def ratio_line(fzoos: float | None, fedzo: float | None, budget: int | None) -> str:
    """FedZO / FZooS queries to 90 % success; a bound when one did not get there.

    A method that did not reach 90 % within the budget B would need more than B queries,
    so the ratio is then only bounded by B. Without a budget nothing bounds it.
    """
    head = "FedZO / FZooS queries to 90 %:"
    if fzoos is not None and fedzo is not None:
        return f"{head} {fedzo / fzoos:.2f}x (FedZO {fedzo:.0f}, FZooS {fzoos:.0f} queries)"
    if fzoos is None and fedzo is None:
        within = f"within the budget of {budget} queries" if budget else "(no budget)"
        return f"{head} not measured (neither reached 90 % {within})"
    if not budget:
        who = "FedZO" if fedzo is None else "FZooS"
        return (f"{head} not bounded ({who} did not reach 90 % and the runs had no budget; "
                "rerun with --budget)")
    if fedzo is None:
        assert fzoos is not None
        return (f"{head} > {budget / fzoos:.2f}x, a lower bound = budget / FZooS's queries "
                f"= {budget} / {fzoos:.0f} (FedZO did not reach 90 % within the budget of "
                f"{budget} queries)")
    return (f"{head} < {fedzo / budget:.2f}x, an upper bound = FedZO's queries / budget "
            f"= {fedzo:.0f} / {budget} (FZooS did not reach 90 % within the budget of "
            f"{budget} queries)")


def plot_name(key: tuple[Any, ...], used: set[str]) -> str:
    """The plot directory of one problem: data set, N, P, eps (and -targeted); when two
    problems of one invocation share it (other images or budget), K and the budget are
    added, then a counter, so that no problem's plots overwrite another's."""
    dataset, n, p, eps, targeted, images, budget = key
    name = f"{dataset}-n{n}-p{p}-eps{eps}{'-targeted' if targeted else ''}"
    if name in used:
        name += f"-k{len(images)}-b{budget}"
    base, i = name, 2
    while name in used:
        name, i = f"{base}-{i}", i + 1
    used.add(name)
    return name


def main(argv: list[str]) -> int:
    plot_dir = None
    if argv[:1] == ["--plots"]:
        plot_dir, argv = Path(argv[1]), argv[2:]
    groups: dict[tuple[Any, ...], list[tuple[str, dict[str, Any]]]] = {}
    dirs: dict[tuple[Any, ...], list[tuple[Path, dict[str, Any]]]] = {}
    for root in map(Path, argv or ["runs/attack"]):
        for path in sorted(root.glob("**/summary.json")):
            s = json.loads(path.read_text())
            if s.get("command") == "attack":
                groups.setdefault(_key(s), []).append((path.parent.name, s))
                dirs.setdefault(_key(s), []).append((path.parent, s))
    used: set[str] = set()
    for key, runs in groups.items():
        runs.sort(key=lambda r: ("fzoos" not in r[1]["methods"], r[0]))
        with_dirs = sorted(dirs[key], key=lambda r: ("fzoos" not in r[1]["methods"], r[0].name))
        dataset, n, p, eps, targeted, images, budget = key
        wall = sum(s["wall_s"] for _, s in runs) / 60
        print(
            f"\n### {dataset}, N={n}, P={p}, eps={eps}, {'targeted' if targeted else 'untargeted'}, "
            f"K={len(images)} images, "
            + (f"budget {budget} queries per image" if budget else "no budget")
            + f", wall {wall:.1f} min\n"
        )
        print("\n".join(table(runs)))
        if all((p / "attack.csv").exists() for p, _ in with_dirs):
            print()
            print("\n".join(exchange_table(with_dirs)))
        if plot_dir is not None:
            name = plot_name(key, used)
            kind = "targeted" if targeted else "untargeted"
            for f in plots(with_dirs, plot_dir / name,
                           f"{dataset}, N={n}, P={p}, eps={eps}, {kind}, K={len(images)}"):
                print(f"\nwrote {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
