"""Attacks II, "Must show": fedzoo's default attack against fedsquare's best lambda.

Reads the runs of ``must_show.sh`` (OUT_ROOT/<seed-setting>/<label>/summary.json and
attack.csv) and prints, per setting and seed, the success rate of the reference run
(``--ref``, default the label ``fzoos``) and of every other run at 2k/5k/10k/20k client
queries and at 10/20/40 exchanges (an image counts at an exchange budget when it was
fooled within that many exchanges, inside the query budget), the best fedsquare lambda at
each budget, and whether the reference is at least as good (the issue's bar: "at every
query budget and every exchange budget ... >= that of fedsquare", fedsquare given its best
lambda from {1, 5, 10, 27} per budget). Ends with the cells met and, for each miss, the
distance in images.

Usage: python simulations/attack/must_show.py OUT_ROOT [--ref LABEL]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from summarize import EXCHANGE_BUDGETS, outcomes  # noqa: E402

QUERY_BUDGETS = (2000, 5000, 10000, 20000)


def rates(run: Path, method: str) -> tuple[int, dict[str, int]]:
    """(images, fooled count per budget key "2000 q" / "10 ex")."""
    outs = outcomes(run, method)
    got = {f"{b} q": sum(q is not None and q <= b for q, _ in outs) for b in QUERY_BUDGETS}
    got.update({f"{b} ex": sum(e is not None and e <= b for _, e in outs) for b in EXCHANGE_BUDGETS})
    return len(outs), got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--ref", default="fzoos", help="label of the run judged (default fzoos)")
    args = ap.parse_args(argv)
    keys = [f"{b} q" for b in QUERY_BUDGETS] + [f"{b} ex" for b in EXCHANGE_BUDGETS]
    met = total = 0
    misses: list[str] = []
    for setting in sorted(p for p in args.root.iterdir() if p.is_dir()):
        runs = {}
        for run in sorted(p for p in setting.iterdir() if (p / "summary.json").is_file()):
            summary = json.loads((run / "summary.json").read_text())
            method = summary["methods"][0]
            lam = summary["results"][method]["config"].get("square-candidates")
            runs[run.name] = (method, lam, *rates(run, method))
        if args.ref not in runs:
            continue
        squares = {k: v for k, v in runs.items() if v[0] == "fedsquare"}
        k_img = runs[args.ref][2]
        others = [k for k in runs if k != args.ref]
        print(f"\n### {setting.name} ({k_img} images; fedsquare lambdas: "
              f"{sorted(v[1] for v in squares.values())})\n")
        print("| budget | " + " | ".join([args.ref, *others]) + " | best fedsquare (λ) | ref ≥ best |")
        print("|---|" + "---|" * (len(others) + 3))
        for key in keys:
            cells = [f"{runs[n][3][key]}/{runs[n][2]}" for n in [args.ref, *others]]
            if squares:
                best_name = max(squares, key=lambda n: (squares[n][3][key], -squares[n][1]))
                best = squares[best_name][3][key]
                ok = runs[args.ref][3][key] >= best
                met += ok
                total += 1
                if not ok:
                    misses.append(f"{setting.name} @{key}: {runs[args.ref][3][key]} against {best} "
                                  f"(λ={squares[best_name][1]}), {best - runs[args.ref][3][key]} image(s) short")
                verdict = ("yes" if ok else "**no**")
                print(f"| {key} | " + " | ".join(cells) + f" | {best} (λ={squares[best_name][1]}) | {verdict} |")
            else:
                print(f"| {key} | " + " | ".join(cells) + " | - | - |")
    print(f"\n{args.ref} at least as good as fedsquare's best lambda in {met} of {total} cells.")
    for m in misses:
        print(f"* miss: {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
