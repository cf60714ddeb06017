"""History rows, ``history.csv`` and ``summary.json`` (docs/design.md §6), shared by all engines.

Columns of ``history.csv`` (one row per round, row 0 = the start point):

* ``round``; ``queries``: cumulative black-box evaluations over all clients (every
  exploration, the x_r queries, extra exchanges and a final evaluation included);
* ``value``: F at the global point after the round — simulator-evaluated for synthetic
  problems (not a query), otherwise equal to ``reported_value``;
* ``reported_value``: sum_i p_i f_i(x_r) from the clients' own queries (what a deployment
  knows); NaN where no client reported it;
* ``bytes_up`` / ``bytes_down``: cumulative payload bytes; ``wall_s``: seconds the round
  took; ``clients``: valid train replies aggregated in the round; ``participants``: their
  client (partition) ids, ``;``-separated (empty in row 0);
* ``client_queries``: this round's queries per client as ``id:count`` pairs,
  ``;``-separated (e.g. ``0:45;1:45;2:46``; empty in row 0 and where the engine did not
  record them). They sum to the round's increment of ``queries`` (a trailing final
  evaluation included in the last row), and ``summary.json`` holds their totals per
  client (``queries_by_client``);
* ``status``: ``ok``, or ``failed`` for a round in which fewer than ``min-replies``
  clients could work (no valid train reply with the default 1: the global state did
  not move); any failed round makes ``summary.json``'s ``status`` ``failed``;
* ``notes``: what went wrong with single clients, ``;``-separated ``what=ids`` (e.g.
  ``train-rejected=2;sync-missing=0;correction-dropped=1``; empty when nothing did).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.errors import PayloadError, ResultsWriteError

COLUMNS = ("round", "queries", "value", "reported_value", "bytes_up", "bytes_down", "wall_s", "clients",
           "participants", "client_queries", "status", "notes")
INT_COLUMNS = ("round", "queries", "bytes_up", "bytes_down", "clients")
STR_COLUMNS = ("participants", "client_queries", "status", "notes")
#: ``status`` of a round: fine, or no usable work (fewer valid train replies than min-replies).
ROUND_OK, ROUND_FAILED = "ok", "failed"


class HistoryRecorder:
    """Builds the rows of history.csv round by round.

    Args:
        simulate: F for reporting (synthetic problems only; never a query), or None.
    """

    def __init__(self, simulate: Callable[[np.ndarray], float] | None = None) -> None:
        self.simulate = simulate
        self.rows: list[dict[str, Any]] = []

    def start(self, x0: np.ndarray, num_clients: int) -> None:
        self.rows = [self._row(0, x0, 0, 0, 0, 0.0, num_clients, "", "")]

    def _row(self, r: int, x: np.ndarray, queries: int, up: int, down: int, wall: float, clients: int,
             participants: str, client_queries: str, status: str = ROUND_OK,
             notes: str = "") -> dict[str, Any]:
        value = self.simulate(x) if self.simulate is not None else math.nan
        return {"round": r, "queries": queries, "value": value, "reported_value": math.nan,
                "bytes_up": up, "bytes_down": down, "wall_s": wall, "clients": clients,
                "participants": participants, "client_queries": client_queries,
                "status": status, "notes": notes}

    def end_round(self, r: int, x: np.ndarray, queries: int, up: int, down: int, wall: float,
                  participants: Iterable[int],
                  client_queries: Mapping[int, int] | None = None, *, status: str = ROUND_OK,
                  notes: str = "") -> dict[str, Any]:
        """Append row r; queries/bytes are this round's increments; ``participants`` are
        the clients whose train replies were aggregated; ``client_queries`` (optional)
        splits ``queries`` per client and must sum to it; ``status`` / ``notes``: see the
        module doc."""
        ids = sorted(int(c) for c in participants)
        last = self.rows[-1]
        row = self._row(r, x, last["queries"] + queries, last["bytes_up"] + up,
                        last["bytes_down"] + down, wall, len(ids), ";".join(map(str, ids)),
                        _encode_counts(client_queries, queries), status, notes)
        self.rows.append(row)
        return row

    def note_last(self, notes: str) -> None:
        """Append ``notes`` to the last row's (e.g. what the final evaluation lacked)."""
        if notes:
            row = self.rows[-1]
            row["notes"] = ";".join(filter(None, [row.get("notes", ""), notes]))

    def move_last(self, x: np.ndarray) -> None:
        """The last row's global point changed (step control returned to its incumbent
        after the final evaluation): its value is F there (simulated), reported next."""
        self.rows[-1]["value"] = self.simulate(x) if self.simulate is not None else math.nan

    def report(self, r: int, value: float) -> None:
        """Record sum_i p_i f_i(x_r) for row r (from clients' own queries)."""
        row = self.rows[r]
        row["reported_value"] = float(value)
        if self.simulate is None:
            row["value"] = float(value)

    def add_to_last(self, queries: int, up: int, down: int, wall: float,
                    client_queries: Mapping[int, int] | None = None) -> None:
        """Charge a trailing exchange (the final evaluation) to the last row;
        ``client_queries`` (optional) splits ``queries`` per client."""
        row = self.rows[-1]
        before = self.rows[-2]["queries"] if len(self.rows) > 1 else 0
        recorded = bool(row.get("client_queries")) or row["queries"] == before
        if client_queries is not None and recorded:  # else the row's split stays unknown ("")
            merged = client_queries_of(row)
            for cid, n in client_queries.items():
                merged[int(cid)] = merged.get(int(cid), 0) + int(n)
            row["client_queries"] = _encode_counts(merged, sum(client_queries_of(row).values()) + queries)
        row["queries"] += queries
        row["bytes_up"] += up
        row["bytes_down"] += down
        row["wall_s"] += wall


def write_csv(
    path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]], *, strict: bool = False
) -> None:
    """A CSV with the given columns, the one CSV writer of the result files.

    Cells: None is written empty, booleans as 0/1, floats as ``repr`` (``nan`` for NaN
    and infinities); a column missing from a row is empty. Keys that are not columns
    are ignored, or refused with ``strict`` (ValueError).
    """
    with open(path, "w", newline="") as fh:
        fh.write(_csv_text(columns, rows, strict=strict, header=True))


def _csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], *, strict: bool,
              header: bool) -> str:
    """The lines of :func:`write_csv` (``\\r\\n``-terminated, the csv module's dialect)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="raise" if strict else "ignore")
    if header:
        writer.writeheader()
    for row in rows:
        keys = row if strict else columns
        writer.writerow({k: _fmt(row.get(k)) for k in keys})
    return buf.getvalue()


def history_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns of ``history.csv``: :data:`COLUMNS`, then any other keys of the first row."""
    return [*COLUMNS, *(k for k in rows[0] if k not in COLUMNS)] if rows else list(COLUMNS)


def write_history(rows: list[dict[str, Any]], path: str | Path) -> None:
    """``history.csv``: :data:`COLUMNS`, then any other keys of the first row; written
    atomically (a temporary file beside it, fsync'd, renamed over it)."""
    text = _csv_text(history_columns(rows), rows, strict=True, header=True)
    write_atomic(path, text.encode())


def write_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically: a temporary file in the same directory,
    flushed and fsync'd, renamed over ``path``, then the directory fsync'd (POSIX). A
    crash or a failed write leaves the previous file as it was (never half of it).

    Raises:
        ResultsWriteError: the write failed (full disk, read-only file system, the
            directory gone, ...); ``filename`` is ``path``.
    """
    target = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp: 0600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as err:
        raise ResultsWriteError.of(err, target) from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    fsync_directory(target.parent)


def _umask() -> int:
    """The process's umask (read once: setting it is the only way to read it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot be
    opened or synced (Windows, some network file systems). Shared by the result files and
    the checkpoints (:mod:`fedzoo.checkpoint`)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class HistoryFile:
    """``history.csv`` kept on disk while a run goes, so that a killed run (``kill -9``,
    a power loss) leaves every round it finished.

    :meth:`sync` is called with the recorder's rows at the start (the header and row 0)
    and after every round: the rows that are new or changed since the last call (the
    previous row gets its reported value a round later) are written in place at the end
    of the file and flushed to the operating system, which keeps them whatever becomes
    of the process (``kill -9``); they are fsync'd too (kept through a power loss) when
    the last fsync is :attr:`FSYNC_INTERVAL_S` or more old (an fsync costs 1-3 ms, more
    than a whole round of a small problem; RELIABILITY.md). A full rewrite (first call,
    other columns, fewer rows, the file gone) is atomic and fsync'd
    (:func:`write_atomic`), as is the run's final :func:`write_history`. The file's
    bytes are always what :func:`write_history` writes for the same rows.

    Raises (from :meth:`sync`):
        ResultsWriteError: the file could not be written (``filename`` is its path).
    """

    #: Rows at the end compared again on every call (rows before them are not expected
    #: to change; the final :func:`write_history` rewrites the whole file anyway).
    TAIL = 3
    #: Seconds between two fsyncs of the appended rows at most (0: fsync every round).
    FSYNC_INTERVAL_S = 1.0

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._synced = time.monotonic()
        self._rows: list[dict[str, Any]] | None = None
        self._columns: list[str] = []
        self._header = 0  # bytes of the header line
        self._ends: list[int] = []  # end offset of each row's line
        self._tail: list[bytes] = []  # the last TAIL lines written

    def sync(self, rows: list[dict[str, Any]]) -> None:
        """Make the file hold ``rows`` (see the class doc)."""
        columns = history_columns(rows)
        if rows is not self._rows or columns != self._columns or len(rows) < len(self._ends):
            self._rewrite(rows, columns)
            return
        first = max(0, len(self._ends) - len(self._tail))
        lines = [_csv_text(columns, [row], strict=True, header=False).encode() for row in rows[first:]]
        start = first
        while start - first < len(self._tail) and lines[start - first] == self._tail[start - first]:
            start += 1
        if start == len(rows):
            return  # nothing new
        offset = self._ends[start - 1] if start else self._header
        data = b"".join(lines[start - first:])
        try:
            with open(self.path, "r+b") as fh:
                fh.seek(offset)
                fh.write(data)  # first the new bytes, then cut what is left of the old ones
                if offset + len(data) < self._ends[-1]:
                    fh.truncate()
                fh.flush()
                if time.monotonic() - self._synced >= self.FSYNC_INTERVAL_S:
                    os.fsync(fh.fileno())
                    self._synced = time.monotonic()
        except FileNotFoundError:  # history.csv removed under the run: write it again
            self._rewrite(rows, columns)
            return
        except OSError as err:
            raise ResultsWriteError.of(err, self.path) from err
        del self._ends[start:]
        for line in lines[start - first:]:
            self._ends.append((self._ends[-1] if self._ends else self._header) + len(line))
        self._tail = lines[-self.TAIL:]

    def _rewrite(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
        header = _csv_text(columns, [], strict=True, header=True).encode()
        lines = [_csv_text(columns, [row], strict=True, header=False).encode() for row in rows]
        write_atomic(self.path, header + b"".join(lines))
        self._synced = time.monotonic()
        self._rows, self._columns, self._header = rows, columns, len(header)
        self._ends, end = [], len(header)
        for line in lines:
            end += len(line)
            self._ends.append(end)
        self._tail = lines[-self.TAIL:]


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return v


def read_history(path: str | Path) -> list[dict[str, Any]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        out.append({k: (int(v) if k in INT_COLUMNS else v if k in STR_COLUMNS else float(v))
                    for k, v in row.items()})
    return out


def participants_of(row: dict[str, Any]) -> list[int]:
    """The client ids of a row's ``participants`` column."""
    text = row.get("participants", "")
    return [int(c) for c in str(text).split(";") if c != ""]


def _encode_counts(counts: Mapping[int, int] | None, total: int) -> str:
    """``id:count`` pairs by client id, ``;``-separated; "" for None (not recorded)."""
    if counts is None:
        return ""
    if sum(int(n) for n in counts.values()) != total:
        raise PayloadError(f"Per-client queries {dict(counts)} sum to {sum(counts.values())}, expected "
                         f"the round's total {total}.")
    return ";".join(f"{int(c)}:{int(counts[c])}" for c in sorted(counts, key=int))


def client_queries_of(row: dict[str, Any]) -> dict[int, int]:
    """A row's ``client_queries`` column as {client id: queries this round} ({} if empty)."""
    out: dict[int, int] = {}
    for pair in str(row.get("client_queries", "") or "").split(";"):
        if pair:
            cid, n = pair.split(":")
            out[int(cid)] = int(n)
    return out


def queries_by_client(rows: list[dict[str, Any]]) -> dict[str, int] | None:
    """Total queries per client over the rows (keys are client ids as strings, as in
    summary.json), or None when the rows do not account for every query (per-client
    counts not recorded, e.g. by an engine that does not pass them)."""
    totals: dict[int, int] = {}
    for row in rows:
        for cid, n in client_queries_of(row).items():
            totals[cid] = totals.get(cid, 0) + n
    if not rows or sum(totals.values()) != rows[-1]["queries"]:
        return None
    return {str(c): totals[c] for c in sorted(totals)}


def refused_queries_by_client(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Queries charged behind rejected or failed replies, per client, over the rows (the
    ``<exchange>-refused-queries=id:n`` notes); they are part of ``queries_by_client``."""
    totals: dict[int, int] = {}
    for row in rows:
        for note in str(row.get("notes", "") or "").split(";"):
            what, _, pairs = note.partition("=")
            if what.endswith("-refused-queries"):
                for pair in pairs.split(","):
                    cid, n = pair.split(":")
                    totals[int(cid)] = totals.get(int(cid), 0) + int(n)
    return {str(c): totals[c] for c in sorted(totals)}


def client_failures(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Rounds in which each client's exchange raised and was skipped (``<exchange>-failed``
    notes), by client id (as strings)."""
    out: dict[int, list[int]] = {}
    for row in rows:
        for note in str(row.get("notes", "") or "").split(";"):
            what, _, ids = note.partition("=")
            if what.endswith("-failed"):
                for cid in ids.split(","):
                    rounds = out.setdefault(int(cid), [])
                    if int(row["round"]) not in rounds:
                        rounds.append(int(row["round"]))
    return {str(c): out[c] for c in sorted(out)}


def versions() -> dict[str, str]:
    import scipy

    from fedzoo import __version__

    return {"fedzoo": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "platform": sys.platform}


def summary(
    rows: list[dict[str, Any]], config: dict[str, Any], problem: dict[str, Any], engine: str, wall_s: float,
    *, status: str = "completed", error: str | None = None, query_budget: int = 0,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The content of summary.json; ``status``: ``completed``, or ``failed`` /
    ``interrupted`` (the rows are those of the rounds completed, ``error`` says why).
    A run with a failed round (history ``status``) is ``failed`` too, and
    ``failed_rounds`` lists those rounds. ``query_budget``: the run's hard query budget
    (0: none); ``refused_queries_by_client`` the queries behind rejected or failed
    replies (counted in ``queries_by_client`` too), ``client_failures`` the rounds in
    which a client's exchange raised and was skipped."""
    from fedzoo.provenance import provenance

    failed = failed_rounds(rows)
    if failed and status == "completed":
        status = "failed"
        error = error or (f"no client could work in round(s) {round_ranges(failed)} (fewer valid train "
                          "replies than min-replies; see history.csv notes and the log)")
    last = rows[-1]
    return {
        "method": config.get("method"),
        "engine": engine,
        "run_id": run_id,
        "status": status,
        "error": error,
        "failed_rounds": failed,
        "config": config,
        "problem": problem,
        "rounds": last["round"],
        "final_value": last["value"],
        "final_reported_value": last["reported_value"],
        "best_value": min(r["value"] for r in rows if math.isfinite(r["value"])) if any(
            math.isfinite(r["value"]) for r in rows) else math.nan,
        "total_queries": last["queries"],
        "query_budget": int(query_budget or 0),
        "queries_by_client": queries_by_client(rows),
        "refused_queries_by_client": refused_queries_by_client(rows),
        "client_failures": client_failures(rows),
        "total_bytes": last["bytes_up"] + last["bytes_down"],
        "bytes_up": last["bytes_up"],
        "bytes_down": last["bytes_down"],
        "wall_s": wall_s,
        "median_round_s": float(np.median([r["wall_s"] for r in rows[1:]])) if len(rows) > 1 else 0.0,
        "versions": versions(),
        "provenance": provenance(),
    }


def failed_rounds(rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """The rounds whose history ``status`` is ``failed``."""
    return [int(r["round"]) for r in rows if r.get("status") == ROUND_FAILED]


def round_ranges(rounds: Sequence[int]) -> str:
    """1, 2, 3, 5 -> '1-3, 5'."""
    parts: list[str] = []
    for r in rounds:
        if parts and "-" not in parts[-1].split(", ")[-1] and int(parts[-1]) == r - 1:
            parts[-1] = f"{parts[-1]}-{r}"
        elif parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) == r - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{r}"
        else:
            parts.append(str(r))
    return ", ".join(parts)


def write_summary(data: Mapping[str, Any], path: str | Path) -> None:
    """A JSON file (``summary.json`` of every command), the one JSON writer of the result
    files: NaN and infinities as null, numpy scalars as Python numbers, keys as strings,
    keys sorted, indented; written atomically (:func:`write_atomic`)."""

    def clean(v: Any) -> Any:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    write_atomic(path, (json.dumps(clean(data), indent=2, sort_keys=True) + "\n").encode())


def queries_to_reach(rows: list[dict[str, Any]], target: float) -> int | None:
    """Cumulative queries at the first row whose value <= target (None if never)."""
    for row in rows:
        if math.isfinite(row["value"]) and row["value"] <= target:
            return int(row["queries"])
    return None
