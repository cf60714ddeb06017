"""Live progress of ``fedzoo run`` / ``compare`` on stderr.

Where stderr is a terminal: a tqdm bar per run (rounds done, rate, ETA, the last value
and queries; the optional ``progress`` extra, else plain lines). Elsewhere (a pipe, a
log file, CI): one plain line per round, as ``[label] round   3/10  value ...``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO


def _value_text(row: dict[str, Any]) -> str:
    """The row's value, else the latest reported one, else 'not reported yet'."""
    value = float(row["value"])
    if math.isfinite(value):
        return f"value {value:.6g}"
    return "value not reported yet"


class RoundProgress:
    """A ``progress(row, total)`` callback for :func:`fedzoo.engine.run_federation`.

    Args:
        label: the run's name (method, seed).
        stream: where progress goes (default stderr).
        bar: draw a tqdm bar (default: when ``stream`` is a terminal and tqdm is installed).
        also: further callbacks called with every row (e.g. a TensorBoard reporter).
    """

    def __init__(self, label: str, *, stream: TextIO | None = None, bar: bool | None = None,
                 also: Sequence[Callable[[dict[str, Any], int], None]] = ()) -> None:
        self.label, self.stream, self.also = label, stream or sys.stderr, list(also)
        #: called with row 0 before round 1 (the engine calls :meth:`start`)
        self.on_start: list[Callable[[dict[str, Any]], None]] = []
        if bar is None:
            isatty = getattr(self.stream, "isatty", None)
            bar = bool(isatty and isatty())
        self._bar: Any = None
        self._want_bar = bar

    def _make_bar(self, total: int) -> Any:
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc=self.label, unit="round", file=self.stream,
                    dynamic_ncols=True, leave=True)

    def start(self, row: dict[str, Any]) -> None:
        for fn in self.on_start:
            fn(row)

    def __call__(self, row: dict[str, Any], total: int) -> None:
        for fn in self.also:
            fn(row, total)
        r = int(row["round"])
        if self._want_bar and self._bar is None:
            self._bar = self._make_bar(total)
            if self._bar is None:
                self._want_bar = False
        if self._bar is not None:
            self._bar.update(max(r - self._bar.n, 0))
            self._bar.set_postfix_str(f"{_value_text(row)}, queries {row['queries']}")
            return
        print(f"[{self.label}] round {r:>3}/{total}  {_value_text(row)}  "
              f"queries {row['queries']:>7}  {row['wall_s']:.2f}s", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
