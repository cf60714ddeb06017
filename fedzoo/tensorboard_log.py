"""TensorBoard scalars per round (tensorboardX, the optional ``tensorboard`` extra).

One :class:`TensorBoardReporter` per run, fed the history rows as the rounds end (the
round driver's ``on_round`` hook: the engine's ``progress`` callback and the ServerApp's
``on_round``), so both transports log the same scalars at step = round:

* ``value``: F(x_r) (simulated on synthetic problems, else the reported value);
* ``reported_value``: sum_i p_i f_i(x_r) from the clients' own queries;
* ``queries/total`` (cumulative) and ``queries/client_<id>`` (this round's, per client);
* ``bytes/up`` and ``bytes/down`` (cumulative payload bytes);
* ``time/seconds_per_round``; ``clients/replies`` (valid train replies aggregated);
* ``value_vs_queries``: F(x_r) again, at step = cumulative client queries (the
  value-against-queries curve: compare methods at equal queries in one chart).

Row 0 (the start point, step 0) is written by :meth:`TensorBoardReporter.start`.

A row's reported value is often known only a round later (single-exchange methods learn
F(x_{r-1}) from round r's replies; the final evaluation reports the last row): the value
tags of a row are written as soon as they are known, in step order, and :meth:`close`
writes what is still pending. Rows never reported are skipped.

``import fedzoo.tensorboard_log`` loads nothing; the writer is imported when a reporter is
built (tensorboardX imports torch when torch is installed: a few seconds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fedzoo.errors import MissingDependencyError

#: Tags written when the row's round ends (the value tags follow when known).
VALUE_TAGS = ("value", "reported_value")


def summary_writer(logdir: str | Path) -> Any:
    """A ``tensorboardX.SummaryWriter`` on ``logdir``, or a clear error naming the extra."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as err:
        raise MissingDependencyError(
            "TensorBoard logging needs tensorboardX, which is not installed; install the "
            "'tensorboard' extra (pip install -e '.[tensorboard]')."
        ) from err
    return SummaryWriter(logdir=str(logdir), flush_secs=5)


class TensorBoardReporter:
    """Writes a run's history rows as TensorBoard scalars (see the module doc).

    Args:
        logdir: the run's event directory (created).
    """

    def __init__(self, logdir: str | Path) -> None:
        from fedzoo.outdir import OutDirError, check_writable

        path = Path(logdir).expanduser()
        if path.exists() and not path.is_dir():
            raise OutDirError(f"TensorBoard directory {str(path)!r} is a file, not a directory.")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutDirError(f"TensorBoard directory {str(path)!r} cannot be created: "
                              f"{err.strerror or err}.") from err
        check_writable(path, "TensorBoard directory")
        self.logdir = path
        self.writer = summary_writer(path)
        self._pending: list[dict[str, Any]] = []  # rows whose value tags are not all written
        self._next = dict.fromkeys(VALUE_TAGS, 0)  # per tag: its first pending row
        self._written: dict[int, dict[str, float]] = {}  # round -> the tags' last values
        self._last_row: dict[str, Any] | None = None  # its value_vs_queries not written yet
        self._closed = False

    def start(self, row: dict[str, Any]) -> None:
        """Row 0, the start point (called before round 1)."""
        self.round(row)

    def progress(self, row: dict[str, Any], total: int) -> None:
        """The engine's ``progress`` callback signature."""
        self.round(row)

    def round(self, row: dict[str, Any]) -> None:
        """Row ``row`` (a live history row: later reports update it) ended."""
        self._value_vs_queries()  # the previous row's count and value are final now
        self._last_row = row
        self._write_counts(row)
        self._pending.append(row)
        self._flush_values(final=False)
        self.writer.flush()

    def finish(self, rows: Iterable[dict[str, Any]]) -> None:
        """After the run: the last row's counts if a final evaluation changed them (it is
        charged to that row), then every pending value."""
        rows = list(rows)
        if rows and int(rows[-1]["round"]) in self._written:
            self._write_counts(rows[-1], only_changed=True)
        self._flush_values(final=True)
        self._value_vs_queries()
        self.writer.flush()

    def close(self) -> None:
        """Write what is pending and close the event file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._flush_values(final=True)
        self._value_vs_queries()
        self.writer.close()

    # -- internals ---------------------------------------------------------------------
    def _value_vs_queries(self) -> None:
        """``value_vs_queries`` of the last row seen, at step = its cumulative queries (a
        row's count is final once the next row exists, or after the final evaluation)."""
        row, self._last_row = self._last_row, None
        if row is not None and math.isfinite(float(row["value"])):
            self.writer.add_scalar("value_vs_queries", float(row["value"]), int(row["queries"]))
    def _scalar(self, tag: str, value: float, step: int, only_changed: bool = False) -> None:
        if not math.isfinite(value):
            return
        last = self._written.setdefault(step, {})
        if only_changed and last.get(tag) == value:
            return
        self.writer.add_scalar(tag, value, step)
        last[tag] = value

    def _write_counts(self, row: dict[str, Any], only_changed: bool = False) -> None:
        from fedzoo.results import client_queries_of

        step = int(row["round"])
        self._written.setdefault(step, {})
        self._scalar("queries/total", float(row["queries"]), step, only_changed)
        self._scalar("bytes/up", float(row["bytes_up"]), step, only_changed)
        self._scalar("bytes/down", float(row["bytes_down"]), step, only_changed)
        if step > 0:
            self._scalar("time/seconds_per_round", float(row["wall_s"]), step, only_changed)
            self._scalar("clients/replies", float(row["clients"]), step, only_changed)
        for cid, n in client_queries_of(row).items():
            self._scalar(f"queries/client_{cid}", float(n), step, only_changed)

    def _flush_values(self, final: bool) -> None:
        """Per value tag, write the pending rows in step order while they are known; a row
        still unknown two rows later (or at the end) is skipped."""
        last = len(self._pending) - 1
        for tag in VALUE_TAGS:
            i = self._next[tag]
            while i <= last:
                row = self._pending[i]
                value = float(row[tag])
                if math.isfinite(value):
                    self._scalar(tag, value, int(row["round"]))
                elif not (final or i < last - 1):
                    break  # may still be reported
                i += 1
            self._next[tag] = i
        done = min(self._next.values())
        if done:  # rows every tag is past
            self._pending = self._pending[done:]
            self._next = {tag: i - done for tag, i in self._next.items()}
