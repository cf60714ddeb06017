"""Record, or compare against a record, the full history of every method and seed.

A refactor of the protocol, the methods or the round driver must not change a single
number: run this before the change with ``--record DIR`` and after it with
``--compare DIR``. Every column of ``history.csv`` but ``wall_s`` is compared exactly
(floats by their ``repr``), plus the final point's bytes; columns added after the record
are listed and not compared.

    python simulations/benchmarks/histories.py --record runs/histories-before
    python simulations/benchmarks/histories.py --compare runs/histories-before

Default: the benchmark quadratic (d=300, N=5, C=0.5), 10 rounds, seeds 0-2, every
registered method; ``--rounds``, ``--dim``, ``--methods`` and ``--seeds`` shrink or grow it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from fedzoo.config import RunConfig
from fedzoo.engine import run_federation
from fedzoo.objectives import make_problem

SKIP = ("wall_s",)


def _digest_rows(rows: list[dict]) -> list[dict]:
    return [{k: repr(v) for k, v in row.items() if k not in SKIP} for row in rows]


def _options(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def record(args: argparse.Namespace) -> dict[str, dict]:
    out: dict[str, dict] = {}
    methods = args.methods.split(",") if args.methods else sorted(
        RunConfig.__dataclass_fields__["method"].metadata["choices"]
    )
    for method in methods:
        for seed in (int(s) for s in args.seeds.split(",")):
            problem = make_problem(args.problem, dim=args.dim, clients=args.clients,
                                   heterogeneity=args.heterogeneity, seed=seed)
            config = RunConfig.from_mapping({**_options(args.set), "method": method,
                                             "rounds": args.rounds, "seed": seed})
            res = run_federation(problem, config, workers=1)
            key = f"{method}/seed{seed}"
            out[key] = {"rows": _digest_rows(res.history),
                        "x": hashlib.sha256(res.x.tobytes()).hexdigest()}
            print(f"{key}: final value {res.history[-1]['value']!r}, "
                  f"{res.history[-1]['queries']} queries", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", metavar="DIR", help="write the histories to DIR/histories.json")
    g.add_argument("--compare", metavar="DIR", help="compare with DIR/histories.json")
    p.add_argument("--problem", default="quadratic")
    p.add_argument("--dim", type=int, default=300)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--heterogeneity", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default="", help="comma-separated (default: every method)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another run option for every run (repeatable), e.g. fraction=0.6")
    p.add_argument("--renamed", action="append", default=[], metavar="OLD=NEW",
                   help="with --compare: the recorded method OLD is now called NEW (e.g. "
                        "fzoos=fzoos-paper); its record is compared with NEW's runs")
    args = p.parse_args(argv)
    if args.record:
        got = record(args)
        Path(args.record).mkdir(parents=True, exist_ok=True)
        (Path(args.record) / "histories.json").write_text(json.dumps(got, indent=1))
        print(f"recorded {len(got)} histories in {args.record}")
        return 0
    want = json.loads((Path(args.compare) / "histories.json").read_text())
    renamed = dict(pair.split("=", 1) for pair in args.renamed)
    want = {f"{renamed.get(k.split('/')[0], k.split('/')[0])}/{k.split('/')[1]}": v for k, v in want.items()}
    if not args.methods:
        args.methods = ",".join(sorted({k.split("/")[0] for k in want}))
    got = record(args)
    # columns added after the record (e.g. status, notes) are listed, not compared
    added = sorted({k for rec in got.values() for row in rec["rows"] for k in row}
                   - {k for rec in want.values() for row in rec["rows"] for k in row})
    for rec in got.values():
        rec["rows"] = [{k: v for k, v in row.items() if k not in added} for row in rec["rows"]]
    if added:
        print(f"columns newer than the record, not compared: {', '.join(added)}")
    bad = 0
    for key in sorted(want):
        if key not in got:
            print(f"{key}: MISSING")
            bad += 1
        elif got[key] != want[key]:
            rows = [i for i, (a, b) in enumerate(zip(got[key]["rows"], want[key]["rows"])) if a != b]
            print(f"{key}: DIFFERENT (rows {rows[:5]}{'...' if len(rows) > 5 else ''}, "
                  f"point {'same' if got[key]['x'] == want[key]['x'] else 'different'})")
            bad += 1
        else:
            print(f"{key}: identical ({len(want[key]['rows'])} rows, final point sha256 "
                  f"{want[key]['x'][:12]})")
    print(f"{len(want) - bad} of {len(want)} histories bit-identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
