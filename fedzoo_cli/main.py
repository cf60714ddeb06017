"""The ``fedzoo`` command line: run, compare, oracle serve, attack, attack prepare, metric.

Every :class:`~fedzoo.config.RunConfig` option is also a flag (``--gp-history 300``).
Progress goes to stderr, one line per round; tables to stdout. The attack commands live
in :mod:`fedzoo_cli.attack`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedzoo._threads import single_threaded_blas_env
from fedzoo.comparison import TARGET_LEVELS, comparison_table, comparison_table_seeds  # numpy-free
from fedzoo.comparison import spread as _spread
from fedzoo.errors import os_error_text, short_path
from fedzoo_cli.common import add_config_args, config_from_args

__all__ = ["TARGET_LEVELS", "_spread", "comparison_table", "comparison_table_seeds", "main"]


def exact_gradients(method: str) -> bool:
    """Whether a registered method reads exact gradients (a reference, e.g. ``fo``)."""
    from fedzoo.methods import get_method

    return get_method(method).exact_gradients


def method_label(method: str) -> str:
    """How tables and plots name a method: exact-gradient references are marked."""
    return f"{method} (exact gradients)" if exact_gradients(method) else method


def cmd_methods(args: argparse.Namespace) -> int:
    """Every registered method: what it does, its module, its exchanges and the options it
    reads, with their defaults (all from the registry and RunConfig)."""
    import dataclasses

    from fedzoo.config import RunConfig
    from fedzoo.methods import methods

    defaults = {f.name.replace("_", "-"): f.default for f in dataclasses.fields(RunConfig)}
    shared = ("rounds", "local-steps", "seed", "optimizer", "lr", "fraction", "min-replies",
              "aggregation", "clip-factor", "server-lr", "step-control")
    for m in methods():
        exchanges = "train + sync" if m.has_sync else "train"
        print(f"{m.name}  ({type(m).__module__})\n    {m.summary}\n    exchanges per round: "
              f"{exchanges}; step-control auto = {m.step_control}")
        opts = ", ".join(f"{k}={defaults.get(k)!r}" for k in m.options)
        print(f"    options: {opts if opts else '(only the shared ones)'}")
    print("\nshared by every method: " + ", ".join(f"{k}={defaults[k]!r}" for k in shared))
    return 0


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem")
    g.add_argument("--problem", default="quadratic",
                   help="a synthetic problem (quadratic, ackley, levy, paper-ackley, paper-levy, or "
                        "bbob:f1 .. bbob:f24, COCO's BBOB with the 'bbob' extra; default quadratic) "
                        "or your own objectives as 'package.module:function', a factory called as "
                        "function(partition_id=i, num_clients=N, **--objective-options) for each "
                        "client i, returning f_i(X) -> y or an Objective (start point: the centre "
                        "of the box)")
    g.add_argument("--objective-options", default="", metavar="JSON",
                   help="keyword options of a --problem factory, a JSON object (default none)")
    g.add_argument("--dim", type=int, default=300, help="dimension d (default 300)")
    g.add_argument("--clients", type=int, default=5, help="number of clients N (default 5)")
    g.add_argument("--heterogeneity", type=float, default=0.5, help="heterogeneity C (default 0.5)")
    g.add_argument("--problem-seed", type=int, default=None, help="problem seed (default: --seed)")


def _is_factory(name: str) -> bool:
    """--problem names a user's objective factory ('package.module:function'), not a
    registered problem (``bbob:f7`` is one)."""
    from fedzoo.objectives import PROBLEMS

    return ":" in name and name not in PROBLEMS


def _problem_from_args(args: argparse.Namespace) -> Any:
    from fedzoo.objectives import make_problem

    if _is_factory(args.problem):
        return _factory_problem(args.problem, getattr(args, "objective_options", ""), args.dim,
                                args.clients)
    seed = args.problem_seed if args.problem_seed is not None else (args.seed or 0)
    return make_problem(args.problem, dim=args.dim, clients=args.clients,
                        heterogeneity=args.heterogeneity, seed=seed)


def _factory_problem(spec: str, options_text: str, dim: int, clients: int) -> Any:
    """The clients' objectives from a factory, loaded as the Flower ClientApp loads
    ``objective-factory`` (:func:`fedzoo.objectives.loading.objective_from_factory`);
    x0 the centre of the box, uniform weights."""
    import numpy as np

    from fedzoo.objectives.loading import objective_from_factory, parse_objective_options
    from fedzoo.objectives.problems import problem_from_callables

    options = parse_objective_options(options_text or "", what="--objective-options")
    objectives = [objective_from_factory(spec, options, partition_id=i, num_clients=clients, dim=dim,
                                         what="--problem") for i in range(clients)]
    problem = problem_from_callables(objectives, np.full(dim, 0.5), name=spec)
    problem.info.update({"dim": dim, "clients": clients, "factory": spec,
                         "objective-options": options_text or ""})
    return problem


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
        from fedzoo_launch.driver import run_flower  # lazy: Flower only for this engine

        run_config = {**config.to_dict(), "problem": args.problem, "dim": args.dim,
                      "num-clients": args.clients, "heterogeneity": args.heterogeneity,
                      "problem-seed": args.problem_seed if args.problem_seed is not None else config.seed}
        if _is_factory(args.problem):  # the ClientApps build it with the same loader
            run_config.update({"problem": "custom", "objective-factory": args.problem,
                               "objective-options": getattr(args, "objective_options", "") or ""})
        if getattr(args, "budget", None):
            run_config["query-budget"] = int(args.budget)
        if getattr(args, "checkpoint", False):
            run_config.update(_flower_persistence(out))
        if tensorboard is not None:
            run_config["tensorboard-dir"] = str(tensorboard.expanduser().resolve())
        progress = _progress(label)
        print(f"[{label}] starting Flower: a private SuperLink, the simulation runtime (Ray) "
              f"and {args.clients} virtual SuperNode(s); round 1 follows once they are up "
              "(about a minute on a small machine) ...", file=sys.stderr, flush=True)
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
        progress.on_start.append(reporter.start)
    try:
        result = run_federation(problem, config, out_dir=out, progress=progress,
                                workers=getattr(args, "workers", None),
                                checkpoint_dir=out if getattr(args, "checkpoint", False) else None,
                                query_budget=getattr(args, "budget", None),
                                on_client_error=getattr(args, "on_client_error", "skip"))
        if reporter is not None:
            reporter.finish(result.history)
    except BaseException as err:
        progress.close()
        stopped = _stopped(err, out, bool(getattr(args, "checkpoint", False)))
        if stopped is err:
            raise
        raise stopped from err
    finally:
        progress.close()
        if reporter is not None:
            reporter.close()
    return result.history


def _saved_note(out: Path, checkpoint: bool) -> str:
    """What a stopped run left in ``out``: its rounds, summary.json's status, how to go on."""
    import json

    from fedzoo.checkpoint import CHECKPOINT_NAME
    from fedzoo.errors import short_path
    from fedzoo.results import read_history

    where = short_path(out / "history.csv")
    try:
        last = int(read_history(out / "history.csv")[-1]["round"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return f"no results could be saved in {short_path(out)}"
    try:
        status = json.loads((out / "summary.json").read_text())["status"]
    except (OSError, ValueError, KeyError, TypeError):
        status = "not written"
    text = (f"the rounds completed so far ({'1' if last == 1 else f'1-{last}'}) are in {where}"
            if last else f"no round was completed (row 0 is in {where})")
    text += f" and summary.json has status {status}" if status != "not written" \
        else " (summary.json could not be written)"
    if checkpoint and (out / CHECKPOINT_NAME).is_file():
        text += f"; continue with: fedzoo run --resume {short_path(out)}"
    return text


def _stopped(err: BaseException, out: Path, checkpoint: bool) -> BaseException:
    """The exception that ends ``fedzoo run`` when its run stopped with ``err``, its
    message saying what was saved (one line in :func:`main`)."""
    from fedzoo.errors import FedZooError, ResultsWriteError

    note = _saved_note(out, checkpoint)
    if isinstance(err, KeyboardInterrupt):
        return KeyboardInterrupt(f"interrupted (Ctrl-C); {note}.")
    if isinstance(err, SystemExit):
        print(f"fedzoo: terminated; {note}.", file=sys.stderr)
        return err
    if isinstance(err, OSError):  # the results could not be written (disk full, ...)
        text = os_error_text(err, action="cannot write" if isinstance(err, ResultsWriteError) else "")
        if not err.filename:
            text = f"writing the results in {short_out(out)} failed: {text}"
        return FedZooError(f"the run stopped: {text} {note[0].upper()}{note[1:]}.")
    print(f"fedzoo: {note}.", file=sys.stderr)
    return err


def short_out(out: Path) -> str:
    return repr(short_path(out))


class HistoryWatcher:
    """Progress of a run in another process (the Flower ServerApp appends each round's
    row to history.csv): a thread polls the file and reports each new row once.

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
    config = _budget_rounds(args, config)
    problem = _problem_from_args(args) if args.engine == "inprocess" else None  # checked first
    out = _check_out(args)
    tensorboard = Path(args.tensorboard) if getattr(args, "tensorboard", None) else None
    rows = _run_one(args, config, out, config.method, tensorboard, problem)
    last = rows[-1]
    budget = f" of the budget of {args.budget}" if getattr(args, "budget", None) else ""
    print(f"{config.method}: final value {last['value']:.6g} after {last['round']} rounds, "
          f"{last['queries']} queries{budget}; wrote {out / 'history.csv'} and {out / 'summary.json'}")
    return _failed_run(rows, out)


def _budget_rounds(args: argparse.Namespace, config: Any) -> Any:
    """With --budget B and no --rounds: the rounds B pays for (fedzoo.budget.rounds_for_budget),
    so the method's schedules span the budget; the budget itself is the hard limit."""
    from fedzoo.errors import ConfigError

    budget = getattr(args, "budget", None)
    if budget is None:
        return _exchange_rounds(args, config)
    if budget < 1:
        raise ConfigError(f"--budget {budget} is not allowed; expected a number of client queries >= 1.")
    if getattr(args, "rounds", None) is None:
        from fedzoo.budget import rounds_for_budget

        try:
            config = config.replace(rounds=rounds_for_budget(config, args.dim, args.clients, budget))
        except ConfigError as err:
            raise ConfigError(str(err).replace("A query budget", "--budget")) from err
    return _exchange_rounds(args, config)


def _exchange_rounds(args: argparse.Namespace, config: Any) -> Any:
    """--max-exchanges E: at most the rounds that fit in E exchanges."""
    from fedzoo.errors import ConfigError

    cap = getattr(args, "max_exchanges", None)
    if cap is None:
        return config
    from fedzoo.budget import rounds_for_exchanges

    try:
        rounds = rounds_for_exchanges(config, cap)
    except ConfigError as err:
        raise ConfigError(str(err).replace("max-exchanges =", "--max-exchanges")) from err
    return config.replace(rounds=min(config.rounds, rounds))


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
    from fedzoo.errors import ConfigError
    from fedzoo.objectives import make_problem

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers = {args.workers} is not allowed; expected an integer >= 1 "
                          "(client threads).")
    out = Path(args.resume)
    ckpt = load_checkpoint(out)  # refused here if damaged, malformed or of another run
    meta = ckpt.meta
    _check_resume_flags(args, meta, out)
    rounds = args.rounds if args.rounds is not None else meta["rounds"]
    config = RunConfig.from_mapping({**meta["config"], "rounds": rounds})
    if meta.get("engine") == "flower":  # a run of the Flower app (fedzoo_server.app)
        from fedzoo.results import read_history
        from fedzoo_launch.driver import run_flower

        name, dim, clients, heterogeneity, problem_seed = meta["problem"]
        run_config = {**config.to_dict(), "problem": name, "dim": dim, "num-clients": clients,
                      "heterogeneity": heterogeneity, "problem-seed": problem_seed,
                      "resume": True, **_flower_persistence(out)}
        from fedzoo_client.app import check_saved_states

        check_saved_states({**run_config, "num-clients": clients}, ckpt)  # before Flower starts
        run_flower(run_config, out, num_clients=clients)
        rows = read_history(out / "history.csv")
        last = rows[-1]
        print(f"{config.method}: resumed (flower); final value {last['value']:.6g} after "
              f"{last['round']} rounds, {last['queries']} queries; wrote {out}")
        return _failed_run(rows, out)
    info = meta["info"]
    if "factory" in info:
        problem = _factory_problem(info["factory"], info.get("objective-options", ""), info["dim"],
                                   info["clients"])
    else:
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


def explain(table: list[dict[str, Any]], targets: dict[str, float], budget: int | None = None) -> list[str]:
    """A few sentences, from the table's own numbers, on what the comparison shows."""
    from fedzoo.comparison import budget_lines

    if not table:
        return []
    lines = []
    if budget:
        lines.append(f"Every method had the same budget of {budget} client queries (the axis equalised).")
    else:
        lines.append("Every method ran the same rounds, not the same queries (per-round costs differ "
                     "between methods): give --budget to compare at equal client queries.")
    ranked = sorted(table, key=lambda r: r["final_value"])
    lines.append(f"Lowest final value: {ranked[0]['method']} ({ranked[0]['final_value']:.6g}); "
                 f"highest: {ranked[-1]['method']} ({ranked[-1]['final_value']:.6g}).")
    lines += [line[0].upper() + line[1:] + "." for line in budget_lines(table, budget)]
    if "runner-up" in targets:
        key = "queries_to_runner-up"
        reached = sorted((r[key], r["method"]) for r in table if r[key] is not None)
        if reached:
            q, m = reached[0]
            lines.append(f"The runner-up's final value {targets['runner-up']:.6g} was first "
                         f"reached by {m} after {q} client queries"
                         + (f"; {', '.join(f'{n} after {k}' for k, n in reached[1:])}." if len(reached) > 1
                            else "; no other method reached it."))
    if "q=0.9" in targets:
        key = "queries_to_q=0.9"
        fast = sorted((r[key], r["method"]) for r in table if r[key] is not None)
        if len(fast) > 1:
            lines.append(f"90% of the way from F(x0) to the best final value ({targets['q=0.9']:.6g}): "
                         + ", ".join(f"{m} {q}" for q, m in fast) + " queries.")
    lines.append("Queries count every black-box call (exploration, the new global point and "
                 "final evaluations included); exchanges count message rounds (two per round for "
                 "methods with a sync exchange): comparison.csv has both axes.")
    return lines


#: The most seeds ``compare --seeds`` runs (each runs every method once).
MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` (or a range ``0-4``) -> [0, 1, 2]; distinct integers >= 0, at
    most :data:`MAX_SEEDS` of them."""
    from fedzoo.errors import ConfigError

    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                span = range(int(lo), int(hi) + 1)
                if len(seeds) + max(span.stop - span.start, 0) > MAX_SEEDS:  # before building it
                    seeds = [0] * (MAX_SEEDS + 1)
                    break
                seeds.extend(span)
            else:
                seeds.append(int(part))
                if len(seeds) > MAX_SEEDS:
                    break
    except ValueError:
        seeds = []
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"--seeds {short_path(text)!r} lists more than {MAX_SEEDS} seeds (each "
                          f"runs every method); expected at most {MAX_SEEDS}, e.g. 0-{MAX_SEEDS - 1}.")
    if not seeds or any(k < 0 for k in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} is not allowed; expected distinct integers >= 0, "
                          "comma-separated (e.g. 0,1,2 or 0-4).")
    return seeds


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
            configs[method, seed] = _budget_rounds(args, configs[method, seed])
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

    budget = getattr(args, "budget", None)
    table, targets = comparison_table(histories, budget)
    with open(out / "comparison.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    problem = _problem_from_args(args)
    print(f"\n{args.problem} d={args.dim} N={args.clients} C={args.heterogeneity}; "
          + _axis_text(args) + "; targets (over all methods): "
          + ", ".join(f"{k} {v:.6g}" for k, v in targets.items()))
    print("values are F(x), the objective itself (F* = "
          + ("unknown" if problem.optimum_value is None else f"{problem.optimum_value:.6g}")
          + "; the plot shows F - F* where F* is known)")
    width = max([10, *(len(method_label(m)) for m in methods)])
    fracs = [k for k in table[0] if k.startswith("best_at_")]
    heads = [f"to {k}" for k in targets]
    print(f"{'method':<{width}} {'final value':>12} {'queries':>9} {'exch':>5} "
          + " ".join(f"{'best@' + k[8:]:>11}" for k in fracs) + " "
          + " ".join(f"{h:>17}" for h in heads) + f" {'s/round':>8}")
    for row in table:
        cells = []
        for k in targets:
            qt, et = row[f"queries_to_{k}"], row[f"exchanges_to_{k}"]
            cells.append(f"{(f'{qt} ({et})' if qt is not None else '-'):>17}")
        best = " ".join(f"{(format(row[k], '.5g') if row[k] is not None else '-'):>11}" for k in fracs)
        print(f"{method_label(row['method']):<{width}} {row['final_value']:>12.6g} {row['total_queries']:>9} "
              f"{row['exchanges']:>5} {best} " + " ".join(cells) + f" {row['seconds_per_round']:>8.3f}")
    print("('best@p%': the lowest value within p% of the " + ("budget" if budget else "largest spend")
          + "; 'to X': client queries (exchanges) until the value first reached target X; '-': never)")
    _closing_lines(methods, table, targets, budget)
    print(f"\nwrote {out / 'comparison.csv'}", flush=True)
    from fedzoo.plots import plot_comparison

    _plot(out, lambda path: plot_comparison(
        histories, path, optimum=problem.optimum_value,
        title=f"{args.problem}, d={args.dim}, N={args.clients}, C={args.heterogeneity}",
        labels={m: method_label(m) for m in methods}))
    return 0


def _axis_text(args: argparse.Namespace) -> str:
    budget = getattr(args, "budget", None)
    if budget:
        return f"equal budgets: {budget} client queries per method"
    rounds = getattr(args, "rounds", None)
    return f"equal rounds ({rounds if rounds is not None else 50}) per method, not equal queries"


def _closing_lines(methods: list[str], table: list[dict[str, Any]], targets: dict[str, Any],
                   budget: int | None = None) -> None:
    if any(exact_gradients(m) for m in methods):
        print("(exact gradients): a first-order reference on the synthetic problem, not a "
              "zeroth-order method; its queries count exact gradients")
    print("\nWhat this shows:")
    for line in explain(table, targets, budget):
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

    budget = getattr(args, "budget", None)
    table, targets = comparison_table_seeds(runs, seeds, budget)
    _write_table(out / "comparison.csv", table)
    same_problem = args.problem_seed is not None
    print(f"\n{args.problem} d={args.dim} N={args.clients} C={args.heterogeneity}; seeds "
          f"{','.join(map(str, seeds))} ({'one problem' if same_problem else 'problem seed = run seed'}); "
          + _axis_text(args) + "; median [min-max] over the seeds")
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
                "total_queries": r["total_queries_median"],
                **{k[:-7]: r[k] for k in r if k.startswith("best_at_") and k.endswith("_median")},
                **{f"queries_to_{k}": r[f"queries_to_{k}_median"] for k in targets}} for r in table]
    _closing_lines(methods, medians, {k: float(np.nanmedian(v)) for k, v in targets.items()}, budget)
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
    _add_budget_args(p_run)
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
    _add_budget_args(p_cmp, compare=True)
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
        from fedzoo_oracle.cli import add_arguments as add_oracle
        from fedzoo_oracle.cli import main as oracle_main
    except ImportError:  # the client package is not installed
        p_or.set_defaults(func=lambda a: _missing("the client package (pip install -e .[flower])"))
    else:
        add_oracle(p_or)
        p_or.set_defaults(func=oracle_main)

    from fedzoo_cli.attack import add_attack_commands

    add_attack_commands(sub)
    return parser


def _add_budget_args(p: argparse.ArgumentParser, compare: bool = False) -> None:
    p.add_argument("--budget", type=int, default=None, metavar="B",
                   help=("every method gets the same hard budget of B client queries (the fair "
                         "comparison; without it every method runs the same --rounds)" if compare else
                         "a hard budget of B client queries (all clients, every query counted): the "
                         "run never spends past it")
                   + "; without --rounds, the rounds B pays for")
    p.add_argument("--max-exchanges", type=int, default=None, metavar="E",
                   help="at most E exchanges (server-client message rounds: one per round, two for "
                        "methods with a sync exchange, one for a final evaluation): for deployments "
                        "where messages, not queries, are the cost")
    p.add_argument("--on-client-error", choices=("skip", "fail"), default="skip",
                   help="in-process engine: a client whose objective raises is left out of that "
                        "exchange, its queries counted (skip, the Flower engine's rule; default), or "
                        "ends the run (fail)")


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
    except OSError as err:  # reading --config: a file system fault, one line
        print(f"fedzoo: error: {os_error_text(err)}", file=sys.stderr)
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
    except KeyboardInterrupt as err:  # Ctrl-C: results saved on the way out; no traceback
        print(f"fedzoo: {err or 'interrupted (Ctrl-C)'}", file=sys.stderr)
        _exit_if_threads_hang(130)
        return 130
    except SystemExit as err:  # SIGTERM (see _terminate_on_sigterm)
        _exit_if_threads_hang(err.code if isinstance(err.code, int) else 1)
        raise
    except OSError as err:  # the safety net: a file system fault named in one line
        print(f"fedzoo: error: {os_error_text(err)}", file=sys.stderr)
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


def _exit_if_threads_hang(code: int) -> None:
    """End the process now with ``code`` when a client thread of the engine is still
    alive (an objective that hangs): Python would wait for it at exit, forever. The
    results were saved before; logs, stdout and stderr are flushed first."""
    import os
    import threading

    if any(t.is_alive() and not t.daemon and t.name.startswith(CLIENT_THREAD_PREFIX)
           for t in threading.enumerate()):
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


#: The names of the in-process engine's client threads (fedzoo.engine.run_federation).
CLIENT_THREAD_PREFIX = "fedzoo-client"


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
