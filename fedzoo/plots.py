"""Plots of value against cumulative queries and rounds (matplotlib, imported lazily)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedzoo.errors import MissingDependencyError


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
    """The comparison figure (not saved): two panels, value vs cumulative queries and
    value vs rounds, one line per method (legend: ``labels[method]`` or the method).

    With a known optimum F*, the gap F - F* is shown on a log scale.
    """
    plt = pyplot()
    fig, (ax_q, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, rows in histories.items():
        label = (labels or {}).get(method, method)
        q = [r["queries"] for r in rows]
        rounds = [r["round"] for r in rows]
        v = [r["value"] for r in rows]
        if optimum is not None:
            v = [max(x - optimum, 1e-12) if math.isfinite(x) else math.nan for x in v]
        ax_q.plot(q, v, label=label, lw=1.6)
        ax_r.plot(rounds, v, label=label, lw=1.6)
    ylabel = "F(x) - F*" if optimum is not None else "F(x)"
    for ax, xlabel in ((ax_q, "cumulative queries (all clients)"), (ax_r, "round")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if optimum is not None:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    ax_q.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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
