"""The ``fedzoo`` command line: run, compare, oracle serve, attack, attack prepare, metric.

Every :class:`~fedzoo.config.RunConfig` option is also a flag (``--gp-history 300``).
Progress goes to stderr, one line per round; tables to stdout. The attack commands live
in :mod:`fedzoo_cli.attack`.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
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
    g.add_argument("--problem", default="quadratic", help="quadratic, ackley, levy, paper-ackley, paper-levy or bbob:f1..bbob:f24 "
                   "(COCO's BBOB, the 'bbob' extra; default quadratic)")
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
    """Progress of one run on stderr: a bar on a terminal, else a line per round."""
    from fedzoo_cli.progress import RoundProgress

    return RoundProgress(label)


def _run_one(args: argparse.Namespace, config: Any, out: Path, label: str,
             tensorboard: Path | None = None, problem: Any = None) -> list[dict[str, Any]]:
    """One run into ``out`` (checked by the caller); TensorBoard scalars in ``tensorboard``;
    ``problem``: the in-process engine's problem when the caller built it already."""
    if getattr(args, "engine", "inprocess") == "flower":
        from fedzoo.results import read_history
        from launch.driver import run_flower  # lazy: Flower only for this engine

        run_config = {**config.to_dict(), "problem": args.problem, "dim": args.dim,
                      "num-clients": args.clients, "heterogeneity": args.heterogeneity,
                      "problem-seed": args.problem_seed if args.problem_seed is not None else config.seed}
        if getattr(args, "checkpoint", False):
            run_config.update(_flower_persistence(out))
        if tensorboard is not None:
            run_config["tensorboard-dir"] = str(tensorboard.expanduser().resolve())
        progress = _progress(label)
        with HistoryWatcher(out / "history.csv", progress, config.rounds):
            try:
                run_flower(run_config, out, num_clients=args.clients)
            finally:
                progress.close()
        _record_invocation(out / "summary.json")
        return read_history(out / "history.csv")
    from fedzoo.engine import run_federation

    problem = problem if problem is not None else _problem_from_args(args)
    reporter = None
    if tensorboard is not None:
        from fedzoo.tensorboard_log import TensorBoardReporter

        reporter = TensorBoardReporter(tensorboard)
    progress = _progress(label)
    if reporter is not None:
        progress.also.append(reporter.progress)
    try:
        result = run_federation(problem, config, out_dir=out, progress=progress,
                                workers=getattr(args, "workers", None),
                                checkpoint_dir=out if getattr(args, "checkpoint", False) else None)
        if reporter is not None:
            reporter.finish(result.history)
    except BaseException:
        progress.close()
        if (out / "summary.json").is_file():
            print(f"fedzoo: the rounds completed so far are in {out / 'history.csv'} "
                  f"(summary.json status: failed)", file=sys.stderr)
        raise
    finally:
        progress.close()
        if reporter is not None:
            reporter.close()
    return result.history


class HistoryWatcher:
    """Progress of a run in another process (the Flower ServerApp rewrites history.csv
    after every round): a thread polls the file and reports each new row once.

    Used as a context manager; stops (and reports the rows still unseen) on exit.
    """

    def __init__(self, path: Path, progress: Any, total: int, poll_s: float = 1.0) -> None:
        import threading

        self.path, self.progress, self.total, self.poll_s = path, progress, total, poll_s
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fedzoo-history-watcher", daemon=True)
        self._start_mtime = path.stat().st_mtime if path.exists() else None

    def __enter__(self) -> HistoryWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        """Report the rows written since the last look (a half-written file is skipped)."""
        from fedzoo.results import read_history

        try:
            if not self.path.exists() or self.path.stat().st_mtime == self._start_mtime:
                return  # nothing yet, or an earlier run's file
            rows = read_history(self.path)
        except (OSError, ValueError, KeyError, TypeError):
            return
        for row in rows[1:]:
            if int(row["round"]) > self.seen:
                self.seen = int(row["round"])
                self.progress(row, self.total)


def _failed_run(rows: list[dict[str, Any]], out: Path) -> int:
    """1 (after saying why on stderr) when a round of the run failed, else 0."""
    from fedzoo.results import failed_rounds, round_ranges

    failed = failed_rounds(rows)
    if not failed:
        return 0
    print(f"fedzoo: error: the run failed: no client could work in round(s) {round_ranges(failed)} "
          f"(fewer valid train replies than --min-replies); the rounds are in "
          f"{out / 'history.csv'} (status, notes: which clients were rejected or missing, "
          "the reasons in the log) and summary.json has status failed.", file=sys.stderr)
    return 1


#: The command line of this process, as summary.json records it (set by :func:`main`).
_INVOCATION: dict[str, Any] = {}


def _record_invocation(path: Path) -> None:
    """Add the CLI invocation to a summary.json written by another process (Flower)."""
    import json

    from fedzoo.provenance import provenance
    from fedzoo.results import write_summary

    if not path.is_file():
        return
    data = json.loads(path.read_text())
    data["provenance"] = {**provenance(), **(data.get("provenance") or {}),
                          "invocation": _INVOCATION or provenance()["invocation"]}
    write_summary(data, path)


def _check_out(args: argparse.Namespace, out: str | Path | None = None) -> Path:
    """--out checked before round 1: a writable directory, empty unless --overwrite."""
    from fedzoo.outdir import prepare_out_dir

    return prepare_out_dir(out if out is not None else args.out,
                           overwrite=bool(getattr(args, "overwrite", False)),
                           name="--out", overwrite_hint="--overwrite")


def _check_clients(config: Any, clients: int, dim: int | None = None) -> None:
    """RunConfig.check_clients (with ``dim``: RunConfig.check_limits, sizes and robust
    aggregation too) with the options named as flags."""
    from fedzoo.errors import ConfigError
    from fedzoo_cli.common import as_flags

    try:
        if dim is None:
            config.check_clients(clients)
        else:
            config.check_limits(dim, clients)
    except ConfigError as err:
        raise ConfigError(as_flags(str(err)).replace("'num-clients'", "--clients")
                          .replace("num-clients", "--clients").replace("'dim'", "--dim")) from err


def _check_problem(args: argparse.Namespace) -> None:
    """The problem flags (and --workers) checked before anything is built, named as flags."""
    import re

    from fedzoo.errors import ConfigError
    from fedzoo.objectives.problems import check_problem_args

    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise ConfigError(f"--workers = {args.workers} is not allowed; expected an integer >= 1 "
                          "(client threads).")
    seed = args.problem_seed if args.problem_seed is not None else (args.seed or 0)
    try:
        check_problem_args(args.clients, args.dim, args.heterogeneity, seed)
    except ConfigError as err:
        text = re.sub(r"^(clients|dim|heterogeneity)\b", r"--\1", str(err))
        raise ConfigError(text.replace("the problem seed", "--problem-seed")) from err


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume:
        return _resume(args)
    if not args.out:
        from fedzoo.errors import ConfigError

        raise ConfigError("fedzoo run needs --out DIR (or --resume DIR).")
    config = config_from_args(args, flag_names=True)
    _check_problem(args)
    _check_clients(config, args.clients, args.dim)
    problem = _problem_from_args(args) if args.engine == "inprocess" else None  # checked first
    out = _check_out(args)
    tensorboard = Path(args.tensorboard) if getattr(args, "tensorboard", None) else None
    rows = _run_one(args, config, out, config.method, tensorboard, problem)
    last = rows[-1]
    print(f"{config.method}: final value {last['value']:.6g} after {last['round']} rounds, "
          f"{last['queries']} queries; wrote {out / 'history.csv'} and {out / 'summary.json'}")
    return _failed_run(rows, out)


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
    _check_resume_flags(args, meta, out)
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
        rows = read_history(out / "history.csv")
        last = rows[-1]
        print(f"{config.method}: resumed (flower); final value {last['value']:.6g} after "
              f"{last['round']} rounds, {last['queries']} queries; wrote {out}")
        return _failed_run(rows, out)
    info = meta["info"]
    problem = make_problem(meta["problem"], dim=info["dim"], clients=info["clients"],
                           heterogeneity=info["heterogeneity"], seed=info["seed"])
    progress = _progress(config.method)
    try:
        result = run_federation(problem, config, out_dir=out, progress=progress,
                                workers=args.workers, checkpoint_dir=out, resume=True)
    finally:
        progress.close()
    print(f"{config.method}: resumed; final value {result.value:.6g} after "
          f"{result.history[-1]['round']} rounds, {result.num_queries} queries; wrote {out}")
    return _failed_run(result.history, out)


#: Flags --resume takes besides DIR: they do not change what the run computes.
RESUME_FLAGS = ("resume", "rounds", "workers", "verbose", "checkpoint", "overwrite")


def _check_resume_flags(args: argparse.Namespace, meta: dict[str, Any], out: Path) -> None:
    """Refuse flags given with --resume that contradict the checkpoint (or that --resume
    cannot honour), naming each with the checkpoint's value: the checkpoint fixes the
    run (options, problem, engine, directory); only --rounds (and --workers) may change."""
    import dataclasses

    from fedzoo.config import RunConfig
    from fedzoo.errors import ConfigError

    given = getattr(args, "given", None) or set()
    flower = meta.get("engine") == "flower"
    if flower:
        name, dim, clients, heterogeneity, problem_seed = meta["problem"]
    else:
        info = meta.get("info", {})
        name, dim, clients = meta["problem"], info.get("dim"), info.get("clients")
        heterogeneity, problem_seed = info.get("heterogeneity"), info.get("seed")
    saved = {"problem": name, "dim": dim, "clients": clients, "heterogeneity": heterogeneity,
             "problem_seed": problem_seed, "engine": "flower" if flower else "inprocess",
             "out": str(out.expanduser().resolve())}
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"rounds"}
    wrong = []
    for dest in sorted(given - set(RESUME_FLAGS)):
        flag = "--" + dest.replace("_", "-")
        value = getattr(args, dest, None)
        if dest in fields:
            have = meta["config"].get(dest.replace("_", "-"))
            try:
                value = getattr(RunConfig.from_mapping({dest: value}), dest)
            except ConfigError:
                pass
        elif dest in saved:
            have = saved[dest]
            if dest == "out":
                value = str(Path(value).expanduser().resolve())
        else:  # --config, --tensorboard, ...: not honoured by --resume
            wrong.append(f"{flag} (not used by --resume)")
            continue
        same = value == have or (isinstance(value, float) and isinstance(have, (int, float))
                                 and float(have) == value)
        if not same:
            wrong.append(f"{flag} {value!r} (the checkpoint's: {have!r})")
    if wrong:
        raise ConfigError(
            f"--resume {out} continues the checkpointed run as it was; these flags contradict "
            f"it: {'; '.join(wrong)}. Drop them (only --rounds and --workers may change on "
            "resume), or start a new run with --out.")


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


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` (or a range ``0-4``) -> [0, 1, 2]; distinct integers >= 0."""
    from fedzoo.errors import ConfigError

    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        seeds = []
    if not seeds or any(k < 0 for k in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} is not allowed; expected distinct integers >= 0, "
                          "comma-separated (e.g. 0,1,2 or 0-4).")
    return seeds


def _spread(values: Sequence[float | int | None]) -> tuple[Any, Any, Any, int]:
    """(median, min, max, how many are not None) of per-seed values; None = never.

    The median counts a None as +infinity (so it is None when most seeds never got
    there); min is over the seeds that got there, max is None when one did not.
    """
    import numpy as np

    got = [v for v in values if v is not None]
    if not got:
        return None, None, None, 0
    ranked = sorted(got) + [math.inf] * (len(values) - len(got))
    med = float(np.median(ranked))
    as_int = all(isinstance(v, int) for v in got)
    median = None if not math.isfinite(med) else (round(med) if as_int and med.is_integer() else med)
    return median, min(got), max(got) if len(got) == len(values) else None, len(got)


def comparison_table_seeds(
    histories: dict[str, list[list[dict[str, Any]]]], seeds: Sequence[int],
    baselines: Sequence[str] = BASELINES,
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """:func:`comparison_table` over several seeds: per method the median, min and max of
    the final value and of the queries to each target (targets are set per seed, from
    that seed's runs; ``reached``: seeds that got there), median s/round.

    Returns the rows and the targets (name -> one value per seed).
    """
    import numpy as np

    per_seed = [comparison_table({m: runs[i] for m, runs in histories.items()}, baselines)
                for i in range(len(seeds))]
    names: list[str] = []
    for _, targets in per_seed:
        names += [k for k in targets if k not in names]
    table = []
    for j, method in enumerate(histories):
        rows = [tab[j] for tab, _ in per_seed]
        med, lo, hi, _ = _spread([r["final_value"] for r in rows])
        row: dict[str, Any] = {"method": method, "seeds": ";".join(map(str, seeds)),
                               "final_value_median": med, "final_value_min": lo,
                               "final_value_max": hi,
                               "total_queries_median": _spread([r["total_queries"] for r in rows])[0]}
        for name in names:
            qs = [r.get(f"queries_to_{name}") for r in rows]
            qmed, qlo, qhi, got = _spread(qs)
            row[f"queries_to_{name}_median"] = qmed
            row[f"queries_to_{name}_min"] = qlo
            row[f"queries_to_{name}_max"] = qhi
            row[f"queries_to_{name}_reached"] = f"{got}/{len(rows)}"
        row["seconds_per_round"] = float(np.median([r["seconds_per_round"] for r in rows]))
        row["gradients"] = rows[0]["gradients"]
        table.append(row)
    targets = {name: [t.get(name, math.nan) for _, t in per_seed] for name in names}
    return table, targets


def _range_text(med: Any, lo: Any, hi: Any, fmt: str = "") -> str:
    """``median [min-max]``; '-' for never, '>' when a seed never got there."""
    if med is None and lo is None:
        return "-"
    one = (lambda v: "-" if v is None else format(v, fmt))
    return f"{one(med)} [{one(lo)}-{'never' if hi is None else one(hi)}]"


def cmd_compare(args: argparse.Namespace) -> int:
    """Run every method (for every seed of --seeds), write comparison.csv, print the
    table, then plot comparison.png.

    The plot needs the optional ``plot`` extra (matplotlib). Without it the runs, the
    CSV and the table are still produced; then the command fails with a
    :class:`~fedzoo.errors.MissingDependencyError` naming the extra (exit status 2).
    """
    from fedzoo.config import METHODS
    from fedzoo.errors import ConfigError, UnknownNameError

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UnknownNameError(f"Unknown method(s) {unknown or repr(args.methods)}; expected a comma-separated "
                               f"subset of {list(METHODS)}.")
    seeds = parse_seeds(args.seeds) if getattr(args, "seeds", None) else None
    if seeds is not None and args.seed is not None:
        raise ConfigError("--seed and --seeds are not allowed together; --seeds runs every seed it lists.")
    configs = {}
    for method in methods:  # every option checked before the first run
        for seed in seeds or [None]:
            extra = {} if seed is None else {"seed": seed}
            configs[method, seed] = config_from_args(args, flag_names=True, method=method, **extra)
            _check_clients(configs[method, seed], args.clients)
    for seed in seeds or [None]:  # the problem checked before any run (each run builds its own)
        _problem_from_args(args if seed is None else argparse.Namespace(**{**vars(args), "seed": seed}))
    out = _check_out(args)
    tb_root = Path(args.tensorboard) if getattr(args, "tensorboard", None) else None
    if seeds is None:
        histories = {}
        for method in methods:
            histories[method] = _run_one(args, configs[method, None], out / method, method,
                                         None if tb_root is None else tb_root / method)
        return _report_single(args, methods, histories, out)
    runs: dict[str, list[list[dict[str, Any]]]] = {m: [] for m in methods}
    for method in methods:
        for seed in seeds:
            seed_args = argparse.Namespace(**{**vars(args), "seed": seed})
            sub = out / method / f"seed{seed}"
            runs[method].append(_run_one(seed_args, configs[method, seed], _check_out(args, sub),
                                         f"{method} seed {seed}",
                                         None if tb_root is None else tb_root / method / f"seed{seed}"))
    return _report_seeds(args, methods, seeds, runs, out)


def _write_table(path: Path, table: list[dict[str, Any]]) -> None:
    from fedzoo.results import write_csv

    write_csv(path, list(table[0]), table)


def _report_single(args: argparse.Namespace, methods: list[str],
                   histories: dict[str, list[dict[str, Any]]], out: Path) -> int:
    """Table, comparison.csv and comparison.png of a single-seed comparison."""
    import csv

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
    _closing_lines(methods, table, targets)
    print(f"\nwrote {out / 'comparison.csv'}", flush=True)
    from fedzoo.plots import plot_comparison

    problem = _problem_from_args(args)
    _plot(out, lambda path: plot_comparison(
        histories, path, optimum=problem.optimum_value,
        title=f"{args.problem}, d={args.dim}, N={args.clients}, C={args.heterogeneity}",
        labels={m: method_label(m) for m in methods}))
    return 0


def _closing_lines(methods: list[str], table: list[dict[str, Any]], targets: dict[str, Any]) -> None:
    if any(exact_gradients(m) for m in methods):
        print("(exact gradients): a first-order reference on the synthetic problem, not a "
              "zeroth-order method; its queries count exact gradients")
    print("\nWhat this shows:")
    for line in explain(table, targets):
        print(f"  {line}")


def _plot(out: Path, draw: Any) -> None:
    """Draw comparison.png; without matplotlib, say what was written and fail clearly."""
    from fedzoo.errors import MissingDependencyError

    try:
        draw(out / "comparison.png")
    except MissingDependencyError as err:
        raise MissingDependencyError(
            f"{out / 'comparison.png'} was not written (the runs, the table and "
            f"{out / 'comparison.csv'} were): {err}"
        ) from err
    print(f"wrote {out / 'comparison.png'}")


def _report_seeds(args: argparse.Namespace, methods: list[str], seeds: list[int],
                  runs: dict[str, list[list[dict[str, Any]]]], out: Path) -> int:
    """Table (median [min-max] over seeds), comparison.csv and the band plot."""
    import numpy as np

    from fedzoo.objectives import make_problem
    from fedzoo.plots import plot_comparison_seeds

    table, targets = comparison_table_seeds(runs, seeds)
    _write_table(out / "comparison.csv", table)
    same_problem = args.problem_seed is not None
    print(f"\n{args.problem} d={args.dim} N={args.clients} C={args.heterogeneity}; seeds "
          f"{','.join(map(str, seeds))} ({'one problem' if same_problem else 'problem seed = run seed'}); "
          "median [min-max] over the seeds")
    print("targets per seed: " + "; ".join(
        f"{k} " + "/".join(f"{v:.4g}" for v in vals) for k, vals in targets.items()))
    width = max([10, *(len(method_label(m)) for m in methods)])
    final_w = max(30, *(len(_range_text(r["final_value_median"], r["final_value_min"],
                                        r["final_value_max"], ".4g")) for r in table))
    cells_w = {k: max(len(f"to {k}"), *(len(_range_text(r[f"queries_to_{k}_median"],
                                                        r[f"queries_to_{k}_min"],
                                                        r[f"queries_to_{k}_max"])) for r in table))
               for k in targets}
    print(f"{'method':<{width}} {'final value':>{final_w}} {'queries':>9} "
          + " ".join(f"{'to ' + k:>{cells_w[k]}}" for k in targets) + f" {'s/round':>8}")
    for row in table:
        final = _range_text(row["final_value_median"], row["final_value_min"], row["final_value_max"], ".4g")
        cells = [f"{_range_text(row[f'queries_to_{k}_median'], row[f'queries_to_{k}_min'], row[f'queries_to_{k}_max']):>{cells_w[k]}}"
                 for k in targets]
        print(f"{method_label(row['method']):<{width}} {final:>{final_w}} {row['total_queries_median']:>9} "
              + " ".join(cells) + f" {row['seconds_per_round']:>8.3f}")
    print("('to X': client queries until the value first reached target X, median [min-max] over "
          "the seeds; '-': never; 'never' as max: some seed never did; targets are set per seed)")
    medians = [{"method": r["method"], "final_value": r["final_value_median"],
                **{f"queries_to_{k}": r[f"queries_to_{k}_median"] for k in targets}} for r in table]
    _closing_lines(methods, medians, {k: float(np.nanmedian(v)) for k, v in targets.items()})
    print(f"  (medians over {len(seeds)} seeds; ranges and reached counts in comparison.csv)")
    print(f"\nwrote {out / 'comparison.csv'}", flush=True)

    def optimum(seed: int) -> float | None:
        if args.problem_seed is not None:
            seed = args.problem_seed
        return make_problem(args.problem, dim=args.dim, clients=args.clients,
                            heterogeneity=args.heterogeneity, seed=seed).optimum_value

    optima = [optimum(k) for k in seeds]
    _plot(out, lambda path: plot_comparison_seeds(
        runs, path, optima=None if any(o is None for o in optima) else optima,
        title=(f"{args.problem}, d={args.dim}, N={args.clients}, C={args.heterogeneity}: median over "
               f"seeds {','.join(map(str, seeds))}, band min-max"),
        labels={m: method_label(m) for m in methods}))
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
    p_run.add_argument("--overwrite", action="store_true",
                       help="write into a non-empty --out (its results are replaced)")
    p_run.add_argument("--tensorboard", metavar="DIR",
                       help="TensorBoard scalars per round in DIR (the 'tensorboard' extra)")
    p_run.add_argument("--config", metavar="FILE",
                       help="options from a TOML file (flag = value, no dashes) or a run's "
                            "summary.json (repeats that run); flags given here win")
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
    p_cmp.add_argument("--seeds", metavar="LIST",
                       help="run every method for every seed (e.g. 0,1,2 or 0-4) into "
                            "OUT/<method>/seed<k>; the table and plot show median and min-max")
    p_cmp.add_argument("--overwrite", action="store_true",
                       help="write into a non-empty --out (its results are replaced)")
    p_cmp.add_argument("--tensorboard", metavar="DIR",
                       help="TensorBoard scalars per round, one run per method (and seed) under DIR")
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
    from fedzoo.errors import FedZooError
    from fedzoo.provenance import invocation

    try:
        if argv[:2] == list(PREPARE):  # `fedzoo attack prepare ...`: its own parser
            args = build_prepare_parser().parse_args(argv[2:])
        else:
            parser = build_parser()
            args = parser.parse_args(argv)
            if getattr(args, "config", None) and args.command == "run":
                from fedzoo_cli.config_file import apply_config_file

                rest = argv[argv.index("run") + 1:]
                sub = apply_config_file(_subparser(parser, "run"), rest, args.config)
                args = argparse.Namespace(**{**vars(args), **vars(sub)})
    except FedZooError as err:
        print(f"fedzoo: error: {err}", file=sys.stderr)
        return 2
    if getattr(args, "command", None) == "run":
        args.given = _given_flags(_subparser(parser, "run"), argv[argv.index("run") + 1:])
    _terminate_on_sigterm()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _INVOCATION.clear()
    _INVOCATION.update({"argv": ["fedzoo", *argv]})
    try:
        with invocation(_INVOCATION):
            return int(args.func(args) or 0)
    except FedZooError as err:
        print(f"fedzoo: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:  # an optional dependency this command needs
        top = (err.name or "").split(".")[0]
        if top not in EXTRA_OF:
            raise
        extra = EXTRA_OF[top]
        print(f"fedzoo: error: `fedzoo {args.command}` needs {top}, which is not installed; "
              f"install the '{extra}' extra: pip install -e '.[{extra}]' (or "
              f"pip install 'fedzoo[{extra}]').", file=sys.stderr)
        return 2


#: The extra that installs each optional top-level module (pyproject.toml).
EXTRA_OF = {"torch": "attack", "sklearn": "attack", "mlxtend": "attack", "flwr": "flower",
            "grpc": "flower", "matplotlib": "plot", "cma": "cma", "tensorboardX": "tensorboard",
            "tensorboard": "tensorboard", "tqdm": "progress"}


def _given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests of the options given in ``argv`` (parsed again with every default
    suppressed, so a flag given with its default value counts as given)."""
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        found, _ = parser.parse_known_args(argv)
    finally:
        for action, default in saved:
            action.default = default
    return {d for d in vars(found) if d in {a.dest for a, _ in saved}}


def _terminate_on_sigterm() -> None:
    """SIGTERM ends the command like Ctrl-C does (SystemExit 143 through every cleanup:
    Flower processes stopped, partial results saved, locks released)."""
    import threading

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The sub-command parser ``name`` of ``parser``."""
    for action in parser._actions:  # argparse has no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


if __name__ == "__main__":
    sys.exit(main())
