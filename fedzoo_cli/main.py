"""The ``fedzoo`` command line: run, compare, oracle serve, attack, attack prepare, metric.

Every :class:`~fedzoo.config.RunConfig` option is also a flag (``--gp-history 300``).
Progress goes to stderr, one line per round; tables to stdout. The attack commands live
in :mod:`fedzoo_cli.attack`.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedzoo._threads import single_threaded_blas_env
from fedzoo_cli.common import add_config_args, config_from_args

BASELINES = ("fedzo", "fedprox", "scaffold1", "scaffold2")


def exact_gradients(method: str) -> bool:
    """Whether a registered method reads exact gradients (a reference, e.g. ``fo``)."""
    from fedzoo.methods import get_method

    return get_method(method).exact_gradients


def method_label(method: str) -> str:
    """How tables and plots name a method: exact-gradient references are marked."""
    return f"{method} (exact gradients)" if exact_gradients(method) else method


def cmd_methods(args: argparse.Namespace) -> int:
    """Every registered method: what it does, its exchanges and the options it reads."""
    from fedzoo.methods import methods

    shared = "rounds, local-steps, seed, optimizer, lr, fraction, min-replies, aggregation, server-lr, step-control"
    for m in methods():
        exchanges = "train + sync" if m.has_sync else "train"
        print(f"{m.name}\n    {m.summary}\n    exchanges per round: {exchanges}; "
              f"step-control auto = {m.step_control}")
        print(f"    options: {', '.join(m.options) if m.options else '(only the shared ones)'}")
    print(f"\nshared by every method: {shared}")
    return 0


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem")
    g.add_argument("--problem", default="quadratic", help="quadratic, ackley or levy (default quadratic)")
    g.add_argument("--dim", type=int, default=300, help="dimension d (default 300)")
    g.add_argument("--clients", type=int, default=5, help="number of clients N (default 5)")
    g.add_argument("--heterogeneity", type=float, default=0.5, help="heterogeneity C (default 0.5)")
    g.add_argument("--problem-seed", type=int, default=None, help="problem seed (default: --seed)")


def _problem_from_args(args: argparse.Namespace) -> Any:
    from fedzoo.objectives import make_problem

    seed = args.problem_seed if args.problem_seed is not None else (args.seed or 0)
    return make_problem(args.problem, dim=args.dim, clients=args.clients,
                        heterogeneity=args.heterogeneity, seed=seed)


def _progress(label: str) -> Any:
    def show(row: dict[str, Any], total: int) -> None:
        print(f"[{label}] round {row['round']:>3}/{total}  value {row['value']:.6g}  "
              f"queries {row['queries']:>7}  {row['wall_s']:.2f}s", file=sys.stderr, flush=True)

    return show


def _run_one(args: argparse.Namespace, config: Any, out: Path, label: str) -> list[dict[str, Any]]:
    if getattr(args, "engine", "inprocess") == "flower":
        from fedzoo.results import read_history
        from launch.driver import run_flower  # lazy: Flower only for this engine

        run_config = {**config.to_dict(), "problem": args.problem, "dim": args.dim,
                      "num-clients": args.clients, "heterogeneity": args.heterogeneity,
                      "problem-seed": args.problem_seed if args.problem_seed is not None else config.seed}
        if getattr(args, "checkpoint", False):
            run_config.update(_flower_persistence(out))
        run_flower(run_config, out, num_clients=args.clients)
        return read_history(out / "history.csv")
    from fedzoo.engine import run_federation

    problem = _problem_from_args(args)
    result = run_federation(problem, config, out_dir=out, progress=_progress(label),
                            workers=getattr(args, "workers", None),
                            checkpoint_dir=out if getattr(args, "checkpoint", False) else None)
    return result.history


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume:
        return _resume(args)
    if not args.out:
        from fedzoo.errors import ConfigError

        raise ConfigError("fedzoo run needs --out DIR (or --resume DIR).")
    config = config_from_args(args)
    out = Path(args.out)
    rows = _run_one(args, config, out, config.method)
    last = rows[-1]
    print(f"{config.method}: final value {last['value']:.6g} after {last['round']} rounds, "
          f"{last['queries']} queries; wrote {out / 'history.csv'} and {out / 'summary.json'}")
    return 0


def _flower_persistence(out: Path) -> dict[str, Any]:
    """Run-config keys of a Flower run that can be resumed from ``out``: the server's
    checkpoint there, the clients' snapshots under ``out/client-state``."""
    out = out.expanduser().resolve()
    return {"checkpoint-dir": str(out), "client-state-dir": str(out / "client-state")}


def _resume(args: argparse.Namespace) -> int:
    """Continue the checkpointed run in --resume DIR up to --rounds rounds in total."""
    from fedzoo.checkpoint import load_checkpoint
    from fedzoo.config import RunConfig
    from fedzoo.engine import run_federation
    from fedzoo.objectives import make_problem

    out = Path(args.resume)
    meta = load_checkpoint(out).meta
    rounds = args.rounds if args.rounds is not None else meta["rounds"]
    config = RunConfig.from_mapping({**meta["config"], "rounds": rounds})
    if meta.get("engine") == "flower":  # a run of the Flower app (server.app)
        from fedzoo.results import read_history
        from launch.driver import run_flower

        name, dim, clients, heterogeneity, problem_seed = meta["problem"]
        run_config = {**config.to_dict(), "problem": name, "dim": dim, "num-clients": clients,
                      "heterogeneity": heterogeneity, "problem-seed": problem_seed,
                      "resume": True, **_flower_persistence(out)}
        run_flower(run_config, out, num_clients=clients)
        last = read_history(out / "history.csv")[-1]
        print(f"{config.method}: resumed (flower); final value {last['value']:.6g} after "
              f"{last['round']} rounds, {last['queries']} queries; wrote {out}")
        return 0
    info = meta["info"]
    problem = make_problem(meta["problem"], dim=info["dim"], clients=info["clients"],
                           heterogeneity=info["heterogeneity"], seed=info["seed"])
    result = run_federation(problem, config, out_dir=out, progress=_progress(config.method),
                            workers=args.workers, checkpoint_dir=out, resume=True)
    print(f"{config.method}: resumed; final value {result.value:.6g} after "
          f"{result.history[-1]['round']} rounds, {result.num_queries} queries; wrote {out}")
    return 0


#: Targets of the comparison table: the fraction q of the way from F(x0) to the best
#: final value any method reached (F* may be unknown), besides the best baseline's final.
TARGET_LEVELS = (0.5, 0.9, 0.99)


def comparison_table(
    histories: dict[str, list[dict[str, Any]]], baselines: Sequence[str] = BASELINES
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows (method, final value, queries to several targets, s/round) and the targets.

    Targets: ``best-baseline`` (the best final value of the baselines present) and
    ``q=0.5`` / ``q=0.9`` / ``q=0.99``: F(x0) - q (F(x0) - best final of all methods).
    Each ``queries to`` entry is the cumulative queries at the first round at or below
    the target (None: never). ``gradients`` says what a method's local steps use:
    ``zeroth-order`` (queries only) or ``exact (reference)`` for methods that read exact
    gradients (synthetic problems only), an upper bound, not a zeroth-order method.
    """
    import numpy as np

    from fedzoo.results import queries_to_reach

    finals = {m: rows[-1]["value"] for m, rows in histories.items()}
    base = [finals[m] for m in histories if m in baselines and math.isfinite(finals[m])]
    targets: dict[str, float] = {}
    if base:
        targets["best-baseline"] = min(base)
    start = next(iter(histories.values()))[0]["value"]
    best = min((v for v in finals.values() if math.isfinite(v)), default=math.nan)
    if math.isfinite(start) and math.isfinite(best) and best < start:
        for q in TARGET_LEVELS:
            targets[f"q={q:g}"] = start - q * (start - best)
    table = []
    for method, rows in histories.items():
        row = {
            "method": method,
            "final_value": finals[method],
            "total_queries": rows[-1]["queries"],
        }
        for name, value in targets.items():
            row[f"queries_to_{name}"] = queries_to_reach(rows, value)
        row["seconds_per_round"] = float(np.median([r["wall_s"] for r in rows[1:]])) if len(rows) > 1 else 0.0
        row["gradients"] = "exact (reference)" if exact_gradients(method) else "zeroth-order"
        table.append(row)
    return table, targets


def explain(table: list[dict[str, Any]], targets: dict[str, float]) -> list[str]:
    """A few sentences, from the table's own numbers, on what the comparison shows."""
    if not table:
        return []
    rows = {r["method"]: r for r in table}
    lines = []
    ranked = sorted(table, key=lambda r: r["final_value"])
    lines.append(f"Lowest final value: {ranked[0]['method']} ({ranked[0]['final_value']:.6g}); "
                 f"highest: {ranked[-1]['method']} ({ranked[-1]['final_value']:.6g}).")
    if "best-baseline" in targets:
        key = "queries_to_best-baseline"
        reached = sorted((r[key], r["method"]) for r in table if r[key] is not None)
        if reached:
            q, m = reached[0]
            lines.append(f"The best baseline's final value {targets['best-baseline']:.6g} was first "
                         f"reached by {m} after {q} client queries"
                         + (f"; {', '.join(f'{n} after {k}' for k, n in reached[1:])}." if len(reached) > 1
                            else "; no other method reached it."))
    if "q=0.9" in targets:
        key = "queries_to_q=0.9"
        fast = sorted((r[key], r["method"]) for r in table if r[key] is not None)
        if len(fast) > 1:
            lines.append(f"90% of the way from F(x0) to the best final value ({targets['q=0.9']:.6g}): "
                         + ", ".join(f"{m} {q}" for q, m in fast) + " queries.")
    if "fzoos" in rows and len(rows) > 1:
        lines.append("Queries count every black-box call (exploration, the new global point and "
                     "final evaluations included); fzoos makes two exchanges per round, the "
                     "baselines one: see BENCHMARKS.md for the comparison at equal exchanges.")
    return lines


def cmd_compare(args: argparse.Namespace) -> int:
    """Run every method, write comparison.csv, print the table, then plot comparison.png.

    The plot needs the optional ``plot`` extra (matplotlib). Without it the runs, the
    CSV and the table are still produced; then the command fails with a
    :class:`~fedzoo.errors.MissingDependencyError` naming the extra (exit status 2).
    """
    import csv

    from fedzoo.config import METHODS
    from fedzoo.errors import MissingDependencyError, UnknownNameError
    from fedzoo.plots import plot_comparison

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UnknownNameError(f"Unknown method(s) {unknown or repr(args.methods)}; expected a comma-separated "
                               f"subset of {list(METHODS)}.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    histories = {}
    for method in methods:
        config = config_from_args(args, method=method)
        histories[method] = _run_one(args, config, out / method, method)
    table, targets = comparison_table(histories)
    with open(out / "comparison.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    print(f"\n{args.problem} d={args.dim} N={args.clients} C={args.heterogeneity}; targets: "
          + ", ".join(f"{k} {v:.6g}" for k, v in targets.items()))
    width = max([10, *(len(method_label(m)) for m in methods)])
    heads = [f"to {k}" for k in targets]
    print(f"{'method':<{width}} {'final value':>12} {'queries':>9} "
          + " ".join(f"{h:>17}" for h in heads) + f" {'s/round':>8}")
    for row in table:
        cells = []
        for k in targets:
            qt = row[f"queries_to_{k}"]
            cells.append(f"{(str(qt) if qt is not None else '-'):>17}")
        print(f"{method_label(row['method']):<{width}} {row['final_value']:>12.6g} {row['total_queries']:>9} "
              + " ".join(cells) + f" {row['seconds_per_round']:>8.3f}")
    print("('to X': client queries until the value first reached target X; '-': never)")
    if any(exact_gradients(m) for m in methods):
        print("(exact gradients): a first-order reference on the synthetic problem, not a "
              "zeroth-order method; its queries count exact gradients")
    print("\nWhat this shows:")
    for line in explain(table, targets):
        print(f"  {line}")
    print(f"\nwrote {out / 'comparison.csv'}", flush=True)
    problem = _problem_from_args(args)
    try:
        plot_comparison(histories, out / "comparison.png", optimum=problem.optimum_value,
                        title=f"{args.problem}, d={args.dim}, N={args.clients}, C={args.heterogeneity}",
                        labels={m: method_label(m) for m in methods})
    except MissingDependencyError as err:
        raise MissingDependencyError(
            f"{out / 'comparison.png'} was not written (the runs, the table and "
            f"{out / 'comparison.csv'} were): {err}"
        ) from err
    print(f"wrote {out / 'comparison.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedzoo", description="Federated zeroth-order optimisation")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run one method on a synthetic problem")
    _add_problem_args(p_run)
    add_config_args(p_run)
    p_run.add_argument("--out", help="output directory")
    p_run.add_argument("--engine", choices=("inprocess", "flower"), default="inprocess")
    p_run.add_argument("--checkpoint", action="store_true",
                       help="write an atomic checkpoint to --out after every round (flower "
                            "engine: the clients also keep their state under --out/client-state)")
    p_run.add_argument("--resume", metavar="DIR",
                       help="continue the checkpointed run in DIR up to --rounds rounds in total")
    p_run.add_argument("--workers", type=int, default=None, help="client threads (default: cores)")
    p_run.set_defaults(func=cmd_run)

    p_cmp = sub.add_parser("compare", help="run several methods and compare them")
    _add_problem_args(p_cmp)
    add_config_args(p_cmp, skip=("method",))
    p_cmp.add_argument("--methods", default="fzoos,fedzo,fedprox,scaffold1,scaffold2",
                       help="comma-separated registered methods (`fedzoo methods` lists them; "
                            "default fzoos,fedzo,fedprox,scaffold1,scaffold2)")
    p_cmp.add_argument("--out", required=True, help="output directory")
    p_cmp.add_argument("--engine", choices=("inprocess", "flower"), default="inprocess")
    p_cmp.add_argument("--workers", type=int, default=None, help="client threads (default: cores)")
    p_cmp.set_defaults(func=cmd_compare)

    p_me = sub.add_parser("methods", help="list the registered methods and the options each reads")
    p_me.set_defaults(func=cmd_methods)

    p_or = sub.add_parser("oracle", help="black-box oracle service over gRPC")
    try:
        from client.oracle_cli import add_arguments as add_oracle
        from client.oracle_cli import main as oracle_main
    except ImportError:  # the client package is not installed
        p_or.set_defaults(func=lambda a: _missing("the client package (pip install -e .[flower])"))
    else:
        add_oracle(p_or)
        p_or.set_defaults(func=oracle_main)

    from fedzoo_cli.attack import add_attack_commands

    add_attack_commands(sub)
    return parser


def _missing(what: str) -> int:
    print(f"fedzoo: this command needs {what}.", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    single_threaded_blas_env()  # before numpy is imported: many small factorisations
    from fedzoo_cli.attack import PREPARE, build_prepare_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == list(PREPARE):  # `fedzoo attack prepare ...`: its own parser
        args = build_prepare_parser().parse_args(argv[2:])
    else:
        args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from fedzoo.errors import FedZooError

    try:
        return int(args.func(args) or 0)
    except FedZooError as err:
        print(f"fedzoo: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
