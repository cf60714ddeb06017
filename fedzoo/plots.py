"""Plots of value against cumulative client queries and exchanges (matplotlib, imported
lazily): one line per method, or over several seeds the median with a min-max band.
Each method has its own colour, dash pattern and marker, so curves that coincide (e.g.
two methods at the same start) stay visible."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedzoo.errors import MissingDependencyError

#: Dash patterns and markers cycled over the methods (with the colour cycle).
_DASHES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*")


def _style(i: int, n_points: int) -> dict[str, Any]:
    """Line style of the i-th method: dashes and sparse markers besides the colour."""
    return {"ls": _DASHES[i % len(_DASHES)], "marker": _MARKERS[i % len(_MARKERS)],
            "markevery": max(1, n_points // 8), "ms": 4, "lw": 1.6, "alpha": 0.9}


def _exchanges(method: str, rows: list[dict[str, Any]]) -> list[int]:
    """Cumulative exchanges per row (a method the registry does not know: rounds)."""
    from fedzoo.comparison import exchanges_per_row

    try:
        return exchanges_per_row(rows, method)
    except Exception:  # noqa: BLE001 - e.g. a label that is not a registered method
        return [int(r["round"]) for r in rows]

def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError as err:
        raise MissingDependencyError(
            "plotting needs matplotlib, which is not installed; install the 'plot' extra "
            "(pip install -e '.[plot]', or pip install 'matplotlib>=3.8')."
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def comparison_figure(
    histories: Mapping[str, list[dict[str, Any]]],
    *,
    title: str = "",
    optimum: float | None = None,
    labels: Mapping[str, str] | None = None,
) -> Any:
    """The comparison figure (not saved): two panels, value vs cumulative client queries
    and value vs cumulative exchanges, one line per method (legend: ``labels[method]``
    or the method).

    With a known optimum F*, the gap F - F* is shown on a log scale (F* in the label).
    """
    plt = pyplot()
    fig, (ax_q, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (method, rows) in enumerate(histories.items()):
        label = (labels or {}).get(method, method)
        q = [r["queries"] for r in rows]
        v = [r["value"] for r in rows]
        if optimum is not None:
            v = [max(x - optimum, 1e-12) if math.isfinite(x) else math.nan for x in v]
        style = _style(i, len(rows))
        ax_q.plot(q, v, label=label, **style)
        ax_r.plot(_exchanges(method, rows), v, label=label, **style)
    return _finish(fig, ax_q, ax_r, "cumulative queries (all clients)", optimum, title)


def plot_comparison(
    histories: Mapping[str, list[dict[str, Any]]],
    path: str | Path,
    *,
    title: str = "",
    optimum: float | None = None,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Save :func:`comparison_figure` to ``path`` (PNG); returns the path.

    Raises MissingDependencyError when matplotlib (the ``plot`` extra) is not installed.
    """
    plt = pyplot()
    fig = comparison_figure(histories, title=title, optimum=optimum, labels=labels)
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def comparison_figure_seeds(
    runs: Mapping[str, list[list[dict[str, Any]]]],
    *,
    title: str = "",
    optima: list[float] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Any:
    """The comparison figure over several seeds (not saved): per method the median value
    over the seeds as a line and their min-max as a band, against the median cumulative
    queries and against rounds (``runs[method]``: one history per seed, same order).

    With the seeds' optima F*_k known (``optima``), the gap F - F*_k of each seed is
    aggregated and shown on a log scale. Runs that stopped early are cut to the
    shortest.
    """
    import numpy as np

    plt = pyplot()
    fig, (ax_q, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (method, histories) in enumerate(runs.items()):
        label = (labels or {}).get(method, method)
        length = min(len(rows) for rows in histories)
        values = np.array([[r["value"] for r in rows[:length]] for rows in histories], dtype=float)
        if optima is not None:
            values = np.maximum(values - np.asarray(optima, dtype=float)[:, None], 1e-12)
        queries = np.array([[r["queries"] for r in rows[:length]] for rows in histories], dtype=float)
        exchanges = _exchanges(method, histories[0][:length])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (unreported)
            med, lo, hi = np.nanmedian(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)
        q = np.median(queries, 0)
        for ax, x in ((ax_q, q), (ax_r, exchanges)):
            (line,) = ax.plot(x, med, label=label, **_style(i, length))
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return _finish(fig, ax_q, ax_r, "cumulative queries (all clients, median over seeds)",
                   "per seed" if optima is not None else None, title)


def plot_comparison_seeds(
    runs: Mapping[str, list[list[dict[str, Any]]]],
    path: str | Path,
    *,
    title: str = "",
    optima: list[float] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Save :func:`comparison_figure_seeds` to ``path`` (PNG); returns the path.

    Raises MissingDependencyError when matplotlib (the ``plot`` extra) is not installed.
    """
    plt = pyplot()
    fig = comparison_figure_seeds(runs, title=title, optima=optima, labels=labels)
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _finish(fig: Any, ax_q: Any, ax_r: Any, qlabel: str, optimum: Any, title: str) -> Any:
    """Axis labels, log scale for F - F*, grid, legend and title of a comparison figure
    (``optimum``: F*, ``"per seed"``, or None when unknown)."""
    gap = optimum is not None
    if not gap:
        ylabel = "F(x)"
    elif isinstance(optimum, str):
        ylabel = "F(x) - F* (F* of each seed's problem)"
    else:
        ylabel = f"F(x) - F*  (F* = {optimum:.6g})"
    for ax, xlabel in ((ax_q, qlabel), (ax_r, "cumulative exchanges (server-client message rounds)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if gap:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    ax_q.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
