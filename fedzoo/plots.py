"""Plots of value against cumulative queries and rounds (matplotlib, imported lazily)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def plot_comparison(
    histories: Mapping[str, list[dict[str, Any]]],
    path: str | Path,
    *,
    title: str = "",
    optimum: float | None = None,
) -> Path:
    """Two panels: value vs cumulative queries, value vs rounds; one line per method.

    With a known optimum F*, the gap F - F* is shown on a log scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_q, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, rows in histories.items():
        q = [r["queries"] for r in rows]
        rounds = [r["round"] for r in rows]
        v = [r["value"] for r in rows]
        if optimum is not None:
            v = [max(x - optimum, 1e-12) if math.isfinite(x) else math.nan for x in v]
        ax_q.plot(q, v, label=method, lw=1.6)
        ax_r.plot(rounds, v, label=method, lw=1.6)
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
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
