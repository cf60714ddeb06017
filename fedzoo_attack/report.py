"""The result files and plots of ``fedzoo attack`` / ``fedzoo metric``.

CSV and JSON go through the core's writers (:func:`fedzoo.results.write_csv`,
:func:`fedzoo.results.write_summary`); the plots use :func:`fedzoo.plots.pyplot`
(matplotlib, imported only when a plot is drawn). No torch here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.errors import MissingDependencyError
from fedzoo.plots import pyplot
from fedzoo.results import versions, write_csv
from fedzoo_attack.stats import success_curve

logger = logging.getLogger(__name__)

ATTACK_COLUMNS = (
    "image",
    "label",
    "target",
    "success",
    "queries_to_success",
    "rounds_to_success",
    "predicted",
    "linf",
    "l2",
    "fooled_fraction",
    "final_queries",
    "rounds",
    "final_predicted",
    "final_linf",
    "final_l2",
    "final_fooled_fraction",
    "median_round_s",
    "wall_s",
)
ATTACK_HISTORY_COLUMNS = (
    "image",
    "round",
    "queries",
    "value",
    "success",
    "ensemble_margin",
    "fooled_fraction",
    "wall_s",
    "bytes_up",
    "bytes_down",
)
METRIC_COLUMNS = (
    "seed",
    "final_value",
    "final_queries",
    "value_at_budget",
    "queries_at_budget",
    "best_value",
    "rounds",
    "median_round_s",
    "wall_s",
)
METRIC_HISTORY_COLUMNS = (
    "seed",
    "round",
    "queries",
    "value",
    "reported_value",
    "wall_s",
    "bytes_up",
    "bytes_down",
)


def attack_title(info: Mapping[str, Any] | None, epsilon: float, targeted: bool) -> str:
    i = dict(info or {})
    parts = [
        str(i.get("dataset", "")),
        f"N={i['num_clients']}" if "num_clients" in i else "",
        f"P={i['portion']:g}" if "portion" in i else "",
        f"eps={epsilon:g}",
        "targeted" if targeted else "untargeted",
    ]
    return ", ".join(p for p in parts if p)


def write_attack_files(outcomes: Sequence[Any], out_dir: str | Path) -> None:
    """``attack.csv``, ``history.csv`` and ``points.npz`` of one method.

    ``points.npz`` holds ``image`` (K ids), ``x`` (K x d: the recorded point of each image,
    where ``success``, ``predicted``, ``linf``, ... of attack.csv were measured) and
    ``x_final`` (K x d: the final points); it is written when every outcome kept them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "attack.csv", ATTACK_COLUMNS, [o.row() for o in outcomes])
    rows = [{"image": o.image, **h} for o in outcomes for h in o.history]
    write_csv(out / "history.csv", ATTACK_HISTORY_COLUMNS, rows)
    if outcomes and all(o.point is not None and o.final_point is not None for o in outcomes):
        np.savez(
            out / "points.npz",
            image=np.array([o.image for o in outcomes], dtype=np.int64),
            x=np.stack([np.asarray(o.point, np.float64) for o in outcomes]),
            x_final=np.stack([np.asarray(o.final_point, np.float64) for o in outcomes]),
        )


def write_method_tables(
    results: Mapping[str, Sequence[Any]],
    out_dir: str | Path,
    name: str,
    columns: Sequence[str],
    history_columns: Sequence[str],
    run_key: str,
) -> None:
    """The top-level ``<name>.csv`` (``method`` + ``columns``: one row per method and
    image / seed) and ``history.csv`` (``method`` + ``history_columns``) of every method;
    ``run_key`` (``image`` or ``seed``) names each outcome's run in the history rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        out / f"{name}.csv",
        ("method", *columns),
        [{"method": m, **o.row()} for m, outs in results.items() for o in outs],
    )
    write_csv(
        out / "history.csv",
        ("method", *history_columns),
        [{"method": m, run_key: getattr(o, run_key), **h} for m, outs in results.items()
         for o in outs for h in o.history],
    )


def package_versions() -> dict[str, str]:
    """Package versions for summary.json; torch's is read from its installed metadata,
    so recording it never imports torch (the metric problem runs without it)."""
    from importlib.metadata import PackageNotFoundError, version

    out = versions()
    for package in ("torch", "scikit-learn", "mlxtend"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:  # not installed: nothing to record
            pass
    return out


def maybe_plot(fn: Callable[..., Path], *args: Any, **kwargs: Any) -> Path | None:
    """``fn(*args, **kwargs)``, or a warning and None when matplotlib is not installed."""
    try:
        return fn(*args, **kwargs)
    except MissingDependencyError as err:
        logger.warning("No plot written: %s", err)
        return None


def plot_attack_success(
    results: Mapping[str, Sequence[Any]],
    path: str | Path,
    *,
    budget: int | None = None,
    title: str = "",
) -> Path:
    """Success rate against cumulative queries (all clients), one line per method."""
    plt = pyplot()
    top = budget or max((o.final_queries for outs in results.values() for o in outs), default=1)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, outcomes in results.items():
        xs, ys = success_curve(outcomes, top)
        ax.plot(xs, ys, label=method, lw=1.8)
    ax.set_xlabel("cumulative queries per image (all clients)")
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_metric(
    results: Mapping[str, Sequence[Any]],
    path: str | Path,
    *,
    budget: int | None = None,
    title: str = "",
) -> Path:
    """F = 1 - metric against cumulative queries: mean over seeds, band = min..max."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, outcomes in results.items():
        top = max(o.final_queries for o in outcomes)
        grid = np.linspace(0, budget or top, 200)
        curves = np.stack([_step_interp(o.history, grid) for o in outcomes])
        (line,) = ax.plot(grid, np.nanmean(curves, axis=0), label=method, lw=1.8)
        if len(outcomes) > 1:
            ax.fill_between(
                grid,
                np.nanmin(curves, axis=0),
                np.nanmax(curves, axis=0),
                color=line.get_color(),
                alpha=0.15,
                lw=0,
            )
    ax.set_xlabel("cumulative queries (all clients)")
    ax.set_ylabel("F = 1 - metric")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _step_interp(history: Sequence[Mapping[str, Any]], grid: np.ndarray) -> np.ndarray:
    """Value of the last round with queries <= q, for each q of grid (NaN after the end)."""
    q = np.array([h["queries"] for h in history], dtype=np.float64)
    v = np.array([h["value"] for h in history], dtype=np.float64)
    idx = np.searchsorted(q, grid, side="right") - 1
    out = v[np.clip(idx, 0, None)]
    out[grid > q[-1]] = np.nan
    return out


def plot_attack_grid(
    results: Mapping[str, Sequence[Any]],
    classify: Callable[[np.ndarray], np.ndarray],
    images: Sequence[np.ndarray],
    epsilon: float,
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """A grid of the clean and perturbed images with every client's prediction.

    One row per attacked image: the clean image, then for each method the image under
    the perturbation of its recorded point (the first success, or the final point).
    ``classify(batch) -> (clients x batch)`` gives each client model's predicted class;
    each panel's caption lists them, those that differ from the true label marked with
    ``*``. Simulator-side pictures: the predictions are not queries.
    """
    from fedzoo_attack.objectives import perturbed_images

    plt = pyplot()
    methods = [m for m, outs in results.items() if outs and all(o.point is not None for o in outs)]
    rows = len(images)
    fig, axes = plt.subplots(rows, 1 + len(methods), figsize=(2.6 * (1 + len(methods)), 2.7 * rows),
                             squeeze=False)
    for k, image in enumerate(images):
        label = int(next(iter(results.values()))[k].label)
        panels = [("clean", np.asarray(image, dtype=np.float32), None)]
        for m in methods:
            o = results[m][k]
            adv = perturbed_images(np.asarray(image), np.asarray(o.point)[None], epsilon)[0]
            panels.append((f"{m}: {'fooled' if o.success else 'not fooled'}", adv, o))
        preds = classify(np.stack([p[1] for p in panels]))  # clients x panels
        for j, (name, img, _) in enumerate(panels):
            ax = axes[k][j]
            ax.imshow(np.squeeze(img), cmap="gray" if np.squeeze(img).ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            clients = " ".join(f"{p}{'*' if p != label else ''}" for p in preds[:, j])
            ax.set_title(f"{name} (label {label})\nclients: {clients}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
