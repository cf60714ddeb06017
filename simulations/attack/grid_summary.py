"""Tables (and plots) of the attack grid written by grid.sh.

Usage: python simulations/attack/grid_summary.py [--plots DIR] [--no-settings] OUT_ROOT

Reads OUT_ROOT/<dataset>-p<P>-eps<EPS>-<untargeted|targeted>/ (grid.sh's layout; other
directories under OUT_ROOT are ignored) and prints

(a) per setting: summarize.py's tables (success at each query budget with the queries to
    50 / 90 % and the mean / median queries to success; success at 10 / 20 / 40
    exchanges with the median exchanges to success; the best fedsquare lambda per
    budget), the white-box count (whitebox.json), the runs not made (fzoos outside
    FZOOS_CELLS, too few eligible images) and each run's wall time (wall.tsv);
(b) one overview table: a row per setting, the success rate within the full budget (20k
    queries) of every method (fedsquare: its best lambda, named), the white-box count
    (any method: the images fooled by at least one run) and the setting's wall time;
    then a line per setting naming the best method at the smallest query budget (2k) and
    at 20 exchanges.

``--plots DIR`` writes DIR/<setting>/success_vs_queries.png and success_vs_exchanges.png
(summarize.py's plots: every run of the setting, fedsquare once per lambda).
``--no-settings`` prints the overview only.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
SETTING = re.compile(r"^(?P<ds>.+)-p(?P<p>[0-9.]+)-eps(?P<eps>[0-9.]+)-(?P<tgt>untargeted|targeted)$")
DATASET_ORDER = ("mnist5k", "digits")
METHOD_ORDER = ("fedsquare", "fzoos-vertex", "fzoos", "fzoos-square", "fzoos-paper", "fedzo",
                "fedprox", "scaffold1", "scaffold2")
EXCHANGES = 20


def _summarize() -> ModuleType:
    spec = importlib.util.spec_from_file_location("attack_summarize", HERE / "summarize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


S = _summarize()


def settings(root: Path) -> list[tuple[Path, dict[str, str]]]:
    found = []
    for d in root.iterdir():
        m = SETTING.match(d.name)
        if d.is_dir() and m:
            found.append((d, m.groupdict()))

    def order(item: tuple[Path, dict[str, str]]) -> tuple[Any, ...]:
        g = item[1]
        ds = DATASET_ORDER.index(g["ds"]) if g["ds"] in DATASET_ORDER else len(DATASET_ORDER)
        return (ds, g["ds"], float(g["p"]), float(g["eps"]), g["tgt"] == "targeted")

    return sorted(found, key=order)


def load_runs(d: Path) -> list[tuple[Path, dict[str, Any]]]:
    runs = []
    for path in sorted(d.glob("*/summary.json")):
        s = json.loads(path.read_text())
        if s.get("command") == "attack":
            runs.append((path.parent, s))
    def order(run: tuple[Path, dict[str, Any]]) -> tuple[Any, ...]:
        lam = run[1]["results"].get("fedsquare", {}).get("config", {}).get("square-candidates")
        return (lam is None, int(lam or 0), run[0].name)

    runs.sort(key=order)
    return runs


def walls(root: Path) -> dict[tuple[str, str], float]:
    """(setting, run) -> seconds of the last attempt recorded in wall.tsv."""
    out: dict[tuple[str, str], float] = {}
    path = root / "wall.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                out[(parts[0], parts[1])] = float(parts[2])
    return out


def method_label(method: str, summary: dict[str, Any]) -> str:
    return S.label(method, "", summary)


def candidates(runs: list[tuple[Path, dict[str, Any]]]) -> list[tuple[str, str, Path, dict[str, Any]]]:
    """(column, label, run dir, summary) per method run; a method that appears in several
    runs (other than fedsquare's lambdas) is told apart by its run directory."""
    count: dict[str, int] = {}
    for _, s in runs:
        for m in s["methods"]:
            count[m] = count.get(m, 0) + 1
    out = []
    for path, s in runs:
        for m in s["methods"]:
            column = m if m == "fedsquare" or count[m] == 1 else f"{m} [{path.name}]"
            label = method_label(m, s) if m == "fedsquare" else column
            out.append((column, label, path, s))
    return out


def rate_at_queries(s: dict[str, Any], method: str, budget: int) -> float | None:
    return s["results"][method]["success_rate_at"].get(str(budget))


def rate_at_exchanges(path: Path, method: str, exchanges: int) -> float | None:
    if not (path / "attack.csv").exists():
        return None
    outs = S.outcomes(path, method)
    return sum(e is not None and e <= exchanges for _, e in outs) / max(len(outs), 1)


def best(entries: list[tuple[str, float | None]]) -> str:
    vals = [(lab, r) for lab, r in entries if r is not None]
    if not vals:
        return "-"
    top = max(r for _, r in vals)
    if top == 0:
        return "none (no method fools an image)"
    names: list[str] = []
    lams: list[str] = []
    for lab, r in vals:
        if r != top:
            continue
        m = re.fullmatch(r"fedsquare \(λ=(.+)\)", lab)
        if m:
            if not lams:
                names.append("fedsquare")
            lams.append(m.group(1))
        else:
            names.append(lab)
    if lams:
        names[names.index("fedsquare")] = f"fedsquare (λ={'/'.join(lams)})"
    return ", ".join(names) + f" ({top:.2f})"


def whitebox(d: Path, images: list[int] | None) -> tuple[str, str]:
    """(cell text, line) of the setting's white-box reference."""
    path = d / "whitebox.json"
    if not path.exists():
        return "-", "White-box reference: not run."
    w = json.loads(path.read_text())
    note = ""
    if images is not None and w.get("images") != images:
        note = f" (WARNING: on images {w.get('images')}, the runs attacked {images})"
    return (f"{w['attackable']}/{w['total']}",
            f"White-box reference (exact gradients, not comparable in queries): attackable "
            f"{w['attackable']}/{w['total']}, not attackable {w['not_attackable']}{note}.")


def fooled_images(runs: list[tuple[Path, dict[str, Any]]]) -> set[int]:
    """The images some black-box run fooled within its budget (attack.csv)."""
    import csv

    out: set[int] = set()
    for path, _ in runs:
        if (path / "attack.csv").exists():
            with open(path / "attack.csv", newline="") as fh:
                out |= {int(r["image"]) for r in csv.DictReader(fh)
                        if r["success"] in ("1", "True", "true")}
    return out


def fedsquare_best(cands: list[tuple[str, str, Path, dict[str, Any]]], budget: int) -> str:
    rates = [(s["results"]["fedsquare"]["config"].get("square-candidates"),
              rate_at_queries(s, "fedsquare", budget)) for c, _, _, s in cands if c == "fedsquare"]
    rates = [(lam, r) for lam, r in rates if r is not None]
    if not rates:
        return "-"
    top = max(r for _, r in rates)
    lams = "/".join(str(lam) for lam, r in rates if r == top)
    return f"{top:.2f} (λ={lams})"


def main(argv: list[str]) -> int:
    plot_dir = None
    show_settings = True
    while argv[:1] and argv[0].startswith("--"):
        if argv[0] == "--plots":
            plot_dir, argv = Path(argv[1]), argv[2:]
        elif argv[0] == "--no-settings":
            show_settings, argv = False, argv[1:]
        else:
            print(__doc__, file=sys.stderr)
            return 2
    root = Path(argv[0] if argv else "runs/attack-grid")
    wall = walls(root)
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    fulls: set[int] = set()
    aliases: dict[str, str] = {}
    for d, _ in settings(root):
        runs = load_runs(d)
        ineligible = sorted(d.glob("ineligible-k*.txt"))
        skipped = sorted(p.stem for p in d.glob("*.skipped"))
        row: dict[str, Any] = {"setting": d.name, "cells": {}, "notes": []}
        rows.append(row)
        for p in ineligible:
            row["notes"].append(f"too few eligible images for K={p.stem.split('-k')[-1]}: "
                                f"{p.read_text().strip()}")
        for name in skipped:
            row["notes"].append(f"{name} not run: {(d / (name + '.skipped')).read_text().strip()}")
            column = name.removesuffix("-ls10")  # fzoos-paper
            row["cells"][column] = "skip"
            if column not in columns:
                columns.append(column)
        present = {path.name for path, _ in runs} | {"whitebox"}
        secs = sum(v for (setting, r), v in wall.items() if setting == d.name and r in present)
        row["wall"] = secs
        if not runs:
            row["images"] = "-"
            row["wb"] = "-"
            if show_settings:
                print(f"\n### {d.name}\n")
                print("No finished run." + "".join(f"\n- {n}" for n in row["notes"]))
            continue
        images = runs[0][1]["images"]
        mixed = sorted({tuple(s["images"]) for _, s in runs})
        if len(mixed) > 1:
            row["notes"].append(f"WARNING: the runs attacked different images: {mixed}")
        budgets = sorted(int(b) for b in runs[0][1]["budgets"])
        full = runs[0][1].get("budget") or budgets[-1]
        fulls.add(full)
        row["images"] = len(images)
        row["wb"], wb_line = whitebox(d, images)
        fooled = fooled_images(runs)
        row["any"] = f"{len(fooled)}/{len(images)}"
        if (d / "whitebox.json").exists():
            wb_not = json.loads((d / "whitebox.json").read_text())["not_attackable"]
            missed = sorted(fooled & set(wb_not))
            if missed:
                row["notes"].append(f"images {missed} were fooled by a black-box run but not "
                                    "by the white-box reference (it is not an upper bound)")
        cands = candidates(runs)
        for _, s in runs:
            for asked, ran in (s.get("aliases") or {}).items():
                aliases.setdefault(ran, asked)
        for column, _, _, s in cands:
            if column not in columns:
                columns.append(column)
            if column != "fedsquare":
                row["cells"][column] = f"{rate_at_queries(s, column.split(' [')[0], full):.2f}"
        if any(c == "fedsquare" for c, *_ in cands):
            row["cells"]["fedsquare"] = fedsquare_best(cands, full)
        low = budgets[0]
        row["best_q"] = best([(lab, rate_at_queries(s, c.split(" [")[0], low))
                              for c, lab, _, s in cands])
        row["best_x"] = best([(lab, rate_at_exchanges(p, c.split(" [")[0], EXCHANGES))
                              for c, lab, p, s in cands])
        row["low"] = low
        if show_settings:
            p = runs[0][1]["problem"]
            print(f"\n### {d.name}: {p['dataset']}, N={p['num_clients']}, P={p['portion']}, "
                  f"eps={runs[0][1]['epsilon']}, "
                  f"{'targeted' if runs[0][1]['targeted'] else 'untargeted'}, "
                  f"K={len(images)} images {images}, budget {full} queries per image\n")
            print("\n".join(S.table([(path.name, s) for path, s in runs])))
            if all((path / "attack.csv").exists() for path, _ in runs):
                print()
                print("\n".join(S.exchange_table(runs)))
            print(f"\n{wb_line}")
            for note in row["notes"]:
                print(f"- {note}")
            times = [f"{r} {wall[(d.name, r)]:.0f} s" for r in
                     [path.name for path, _ in runs] + ["whitebox"] if (d.name, r) in wall]
            if times:
                print(f"- wall: {', '.join(times)}; setting {secs / 60:.1f} min")
            print(f"- best at {low} queries: {row['best_q']}; best at {EXCHANGES} exchanges: "
                  f"{row['best_x']}")
        if plot_dir is not None:
            title = (f"{d.name}: N={runs[0][1]['problem']['num_clients']}, K={len(images)}, "
                     f"budget {full}")
            for f in S.plots(runs, plot_dir / d.name, title):
                print(f"wrote {f}")

    def order(c: str) -> tuple[int, str]:
        base = c.split(" [")[0]
        return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), c)

    columns.sort(key=order)
    full_k = "/".join(str(b) for b in sorted(fulls)) or "the budget"
    print(f"\n## Overview: success rate within {full_k} queries per image "
          "(fedsquare: its best λ of the grid's runs; skip: not run, cost control)\n")
    head = ["setting", "K", *columns, "any method", "white-box", "wall (min)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["cells"].get(c, "-") for c in columns]
        print("| " + " | ".join([row["setting"], str(row.get("images", "-")), *cells,
                                 row.get("any", "-"), row.get("wb", "-"),
                                 f"{row['wall'] / 60:.1f}"]) + " |")
    if aliases:
        print("\n" + "; ".join(f"{ran}: what `--method {asked}` runs in an attack"
                               for ran, asked in sorted(aliases.items())) + ".")
    print(f"\nBest method per setting (highest success rate; ties listed) at the smallest "
          f"query budget and at {EXCHANGES} exchanges:\n")
    for row in rows:
        if "best_q" in row:
            print(f"- {row['setting']}: @{row['low']} queries {row['best_q']}; "
                  f"@{EXCHANGES} exchanges {row['best_x']}")
        else:
            print(f"- {row['setting']}: no finished run"
                  + (f" ({'; '.join(row['notes'])})" if row["notes"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
