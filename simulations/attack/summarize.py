"""Markdown tables from the summary.json files of `fedzoo attack` runs.

Usage: python simulations/attack/summarize.py RUN_ROOT [RUN_ROOT ...]   (default runs/attack)

Every directory below the roots holding a summary.json written by `fedzoo attack` is
read; runs on the same problem (data set, N, P, eps, targeting, images, budget) are
merged into one table with a row per (method, run directory): success rate at each
reported budget, queries to 50 % and 90 % success (">B" when not reached within the budget B),
mean / median queries to success over the fooled images, and the median seconds per
round. A line per table compares FZooS with FedZO when both ran: the ratio of their
queries to 90 % success, or a bound set by the budget when one of them did not reach it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _q(v: object) -> str:
    return "-" if v is None else f"{float(v):.0f}"  # type: ignore[arg-type]


def _reach(q: float | None, cap: int | None) -> str:
    return _q(q) if q is not None else (f"> {cap}" if cap else "not reached")


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


def table(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    budgets = [str(b) for b in runs[0][1]["budgets"]]
    cap = runs[0][1].get("budget")
    head = [
        "method",
        "run",
        *[f"success @{int(b) // 1000}k" for b in budgets],
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


def main(argv: list[str]) -> int:
    groups: dict[tuple[Any, ...], list[tuple[str, dict[str, Any]]]] = {}
    for root in map(Path, argv or ["runs/attack"]):
        for path in sorted(root.glob("**/summary.json")):
            s = json.loads(path.read_text())
            if s.get("command") == "attack":
                groups.setdefault(_key(s), []).append((path.parent.name, s))
    for key, runs in groups.items():
        runs.sort(key=lambda r: ("fzoos" not in r[1]["methods"], r[0]))
        dataset, n, p, eps, targeted, images, budget = key
        wall = sum(s["wall_s"] for _, s in runs) / 60
        print(
            f"\n### {dataset}, N={n}, P={p}, eps={eps}, {'targeted' if targeted else 'untargeted'}, "
            f"K={len(images)} images, "
            + (f"budget {budget} queries per image" if budget else "no budget")
            + f", wall {wall:.1f} min\n"
        )
        print("\n".join(table(runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
