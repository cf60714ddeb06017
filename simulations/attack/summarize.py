"""Markdown tables from the summary.json files of `fedzoo attack` runs.

Usage: python simulations/attack/summarize.py runs/attack [more run roots or dirs]

One table per run directory (any directory holding a summary.json written by
`fedzoo attack`): success rate at each reported budget, queries to 90 % success (">B"
when not reached within the budget B), mean / median queries to success over the fooled
images, and the median seconds per round. A final line per directory compares FZooS
with FedZO when both ran.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _q(v: object) -> str:
    return "-" if v is None else f"{float(v):.0f}"  # type: ignore[arg-type]


def table(summary: dict) -> list[str]:
    budgets = [str(b) for b in summary["budgets"]]
    cap = summary.get("budget")
    head = [
        "method",
        *[f"success @{int(b) // 1000}k" for b in budgets],
        "queries to 90 %",
        "mean / median queries to success",
        "s / round",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in summary["methods"]:
        r = summary["results"][method]
        q90 = r["queries_to_90pct"]
        q90s = _q(q90) if q90 is not None else (f"> {cap}" if cap else "not reached")
        rates = [
            f"{r['success_rate_at'][b]:.2f} ({round(r['success_rate_at'][b] * r['images'])}/{r['images']})"
            for b in budgets
        ]
        lines.append(
            "| "
            + " | ".join(
                [
                    method,
                    *rates,
                    q90s,
                    f"{_q(r['mean_queries_to_success'])} / {_q(r['median_queries_to_success'])}",
                    f"{r['median_round_s']:.2f}" if r["median_round_s"] is not None else "-",
                ]
            )
            + " |"
        )
    res = summary["results"]
    if "fzoos" in res and "fedzo" in res:
        a, b = res["fzoos"]["queries_to_90pct"], res["fedzo"]["queries_to_90pct"]
        if a is not None and b is not None:
            lines.append(f"\nFedZO / FZooS queries to 90 %: {b / a:.2f}x")
        elif a is not None:
            lines.append(
                f"\nFedZO / FZooS queries to 90 %: > {cap / a:.2f}x (FedZO never reached 90 %)"
            )
    return lines


def main(argv: list[str]) -> int:
    dirs = []
    for root in map(Path, argv or ["runs/attack"]):
        dirs += sorted(p.parent for p in root.glob("**/summary.json"))
    for d in dirs:
        s = json.loads((d / "summary.json").read_text())
        if s.get("command") != "attack":
            continue
        p = s["problem"]
        print(
            f"\n### {d.name}: {p.get('dataset')}, N={p.get('num_clients')}, P={p.get('portion')}, "
            f"eps={s['epsilon']}, {'targeted' if s['targeted'] else 'untargeted'}, "
            f"K={len(s['images'])} images, budget {s['budget']}, wall {s['wall_s'] / 60:.1f} min\n"
        )
        print("\n".join(table(s)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
