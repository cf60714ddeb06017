"""A client's state on disk: snapshots that survive a SuperNode restart or a resumed run.

Flower keeps ``context.state`` in the SuperNode's memory only: it is lost when the
SuperNode restarts and it starts empty in a new run (a run that resumes a checkpoint is a
new Flower run). A client whose node config names ``state-dir`` (or whose run-config has
``client-state-dir``) therefore writes its :class:`~fedzoo.protocol.ClientState` to disk
after every exchange it completes, and reads it back before every exchange.

Layout: ``<dir>/run-<key>/partition-<id>/state-<round>-<phase>.npz``, where ``key`` is
:func:`fedzoo_server.settings.run_key` of the run-config (everything but the rounds, the
timeouts and the paths, so a resumed run finds the snapshots of the run it continues)
and the tag ``(round, phase)`` names the exchange after which the snapshot was taken
(phase 0 train, 1 sync, 2 evaluate).

Rules:

* **load**: before the exchange tagged ``(r, p)`` the client starts from its latest
  snapshot tagged *before* ``(r, p)``. Normally that is the previous exchange; after a
  resume from round k it is the state after round k even if the client had already
  taken part in round k + 1 before the server died (those snapshots are newer than the
  resume point and are not used); with no snapshot the client starts fresh.
* **save**: atomically (temporary file, fsync, rename, directory fsync; stale temporary
  files of an interrupted write are removed first: ``fedzoo.checkpoint.write_npz_atomic``);
  then every snapshot tagged after the new one is deleted (it belonged to a run that
  diverged: the interrupted attempt) and only the newest :data:`KEEP` are kept. A
  client never persists a half-updated
  state: after a failed exchange that queried its objective it saves, under that
  exchange's tag, the state from before the exchange with only ``total-queries`` raised
  by those queries (``fedzoo_client.app.handle``), so the next exchange loads it and the
  server charges them; a retry of the same exchange after a resume loads the snapshot
  before it and loses that count, as it loses any snapshot newer than the resume point.
* **evaluate**: the final evaluation is not saved: it lies outside the rounds (the
  server's checkpoint is taken before it), so a run that extends a finished one
  continues from the state after its last round, as the server does.
* **size**: bounded by ``KEEP`` x the state's size (the history is capped by
  ``history-max``).
* **integrity**: every snapshot carries a SHA-256 of its content (the array names,
  dtypes, shapes and bytes: :func:`content_digest`) under the key :data:`DIGEST_KEY`, and
  the run id of its run (:data:`RUN_ID_KEY`, the id the ServerApp sends with every
  message) and its partition id (:data:`PARTITION_KEY`), both under the digest. A snapshot
  is read with bounds before anything is decoded
  (:class:`fedzoo.checkpoint.BoundedNpz`: file size, declared ``.npy`` shapes checked
  against the run's configuration by the caller's ``check``, decompression capped at the
  declared size). The latest snapshot before an exchange that cannot be read, fails its
  digest or its bounds, belongs to another run or to another partition is **refused**
  (:class:`SnapshotError`, one line naming the file and what is wrong): the client fails
  the exchange and the ServerApp ends the run (:mod:`fedzoo_server.failures`), since falling back
  to an older snapshot would silently continue from another state than the server's. A
  missing snapshot is refused the same way where the server says the partition has state
  (it has answered before: its running query total is known). Damaged files are left on
  disk for inspection. Only for a partition that has no state in this run yet (the server
  has not heard from it) is a latest snapshot of another run a leftover of a reused
  directory, ignored (logged) rather than refused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from fedzoo.checkpoint import _PARSE_ERRORS, BoundedNpz, write_npz_atomic
from fedzoo.checkpoint import content_digest as _content_digest
from fedzoo.errors import ConfigError

logger = logging.getLogger(__name__)

KEEP = 3
DIGEST_KEY = "__sha256__"
RUN_ID_KEY = "__run_id__"
PARTITION_KEY = "__partition__"
_DIGEST_DOMAIN = b"fedzoo client snapshot v1\0"
_NAME = re.compile(r"^state-(\d{6})-(\d)\.npz$")
PHASES = {"train": 0, "query.sync": 1, "query.evaluate": 2}

Tag = tuple[int, int]


def phase_of(message_type: str) -> int:
    try:
        return PHASES[message_type]
    except KeyError:
        raise ConfigError(
            f"No snapshot phase for message type {message_type!r}; expected one of {sorted(PHASES)}."
        ) from None


class SnapshotError(ConfigError):
    """A client snapshot that cannot be used: damaged, malformed, of another run or
    partition, or missing where the server says the partition has state."""


class ForeignSnapshotError(SnapshotError):
    """A snapshot of another run (another run id, or none)."""


class CorruptSnapshotError(SnapshotError, ValueError):
    """A snapshot whose content does not match its digest."""


def content_digest(arrays: Mapping[str, np.ndarray]) -> bytes:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (names sorted; every
    field length-prefixed, so no two different snapshots hash the same input): the
    checkpoints' digest (:func:`fedzoo.checkpoint.content_digest`) in the snapshots' domain."""
    return _content_digest(arrays, _DIGEST_DOMAIN)


CheckFn = Callable[[Mapping[str, tuple[np.dtype, tuple[int, ...]]]], None]


def read_snapshot(path: Path, *, run_id: str | None = None, partition: int | None = None,
                  check: CheckFn | None = None) -> dict[str, np.ndarray]:
    """The state arrays of the snapshot at ``path``, verified: bounds first (nothing
    decoded: :class:`fedzoo.checkpoint.BoundedNpz`; ``check`` gets the state arrays'
    declared (dtype, shape) and raises ``ValueError`` to refuse), then the digest, then
    the run id and partition (when given).

    Raises:
        CorruptSnapshotError: the digest is missing, malformed or does not match.
        SnapshotError: anything else (damaged, beyond its bounds, another run or partition).
    """
    reserved = (DIGEST_KEY, RUN_ID_KEY, PARTITION_KEY)
    try:
        with BoundedNpz(path) as npz:
            declared = npz.declared
            if DIGEST_KEY not in declared:
                # Also what a damaged central directory looks like: zipfile may list only the
                # members before the damage and raise nothing.
                raise CorruptSnapshotError(
                    "no content digest (damaged, or written by a fedzoo older than snapshot "
                    "digests, which cannot be verified)")
            if declared[DIGEST_KEY] != (np.dtype(np.uint8), (32,)):
                raise CorruptSnapshotError(f"malformed digest (dtype {declared[DIGEST_KEY][0]}, "
                                           f"shape {declared[DIGEST_KEY][1]})")
            for key, want in ((RUN_ID_KEY, (np.dtype(np.uint8), (16,))),
                              (PARTITION_KEY, (np.dtype("<i8"), (1,)))):
                if key in declared and declared[key] != want:
                    raise SnapshotError(f"malformed {key} ({declared[key][0]}{declared[key][1]})")
            if check is not None:
                try:
                    check({k: v for k, v in declared.items() if k not in reserved})
                except ValueError as err:
                    raise SnapshotError(str(err)) from None
            arrays = npz.read_all()
    except SnapshotError:
        raise
    except _PARSE_ERRORS as err:
        raise SnapshotError(f"damaged or malformed ({type(err).__name__}: {' '.join(str(err).split())})") from err
    stored = arrays.pop(DIGEST_KEY)
    if stored.tobytes() != content_digest(arrays):
        raise CorruptSnapshotError("content does not match its SHA-256 digest")
    saved_run = arrays.pop(RUN_ID_KEY, None)
    saved_pid = arrays.pop(PARTITION_KEY, None)
    if run_id is not None:
        if saved_run is None:
            raise ForeignSnapshotError(f"it holds no run id (written before run ids), this run is {run_id}")
        if saved_run.tobytes().hex() != run_id:
            raise ForeignSnapshotError(f"it belongs to another run (run id {saved_run.tobytes().hex()}, "
                                f"this run is {run_id})")
    if partition is not None:
        if saved_pid is None:
            raise SnapshotError(f"it names no partition, expected partition {partition}")
        if int(saved_pid[0]) != partition:
            raise SnapshotError(f"it holds the state of partition {int(saved_pid[0])}, "
                                f"not of partition {partition}")
    return arrays


class StateStore:
    """Snapshots of one client's state in one run (see the module docstring)."""

    def __init__(self, root: str | Path, run_key: str, partition: int, run_id: str | None = None,
                 *, create: bool = True) -> None:
        self.partition, self.run_id = int(partition), run_id
        root = Path(root).expanduser()
        if not root.is_absolute():
            root = root.resolve()
        self.directory = root / f"run-{run_key}" / f"partition-{int(partition)}"
        if not create:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"Cannot create the client state directory {self.directory}: {err}. Give a "
                "writable directory in the node config 'state-dir' or the run-config "
                "'client-state-dir'."
            ) from err

    def tags(self) -> list[Tag]:
        """Tags of the snapshots on disk, oldest first."""
        found = []
        if not self.directory.is_dir():
            return found
        for entry in self.directory.iterdir():
            m = _NAME.match(entry.name)
            if m:
                found.append((int(m.group(1)), int(m.group(2))))
        return sorted(found)

    def path(self, tag: Tag) -> Path:
        return self.directory / f"state-{tag[0]:06d}-{tag[1]}.npz"

    def load_before(self, tag: Tag, check: CheckFn | None = None,
                    foreign_is_none: bool = False) -> tuple[Tag, dict[str, np.ndarray]] | None:
        """The latest snapshot tagged before ``tag`` (its tag and arrays), or None.

        ``foreign_is_none``: a latest snapshot of another run counts as none (logged): a
        leftover in a reused directory, for a client that has no state in this run yet.

        Raises:
            SnapshotError: that snapshot cannot be used (:func:`read_snapshot`: damaged,
                beyond its bounds, another run or partition); the message names the file.
        """
        before = [t for t in self.tags() if t < tag]
        if not before:
            return None
        path = self.path(before[-1])
        try:
            return before[-1], read_snapshot(path, run_id=self.run_id, partition=self.partition, check=check)
        except ForeignSnapshotError as err:
            if foreign_is_none:
                logger.info("ignoring %s, a snapshot of another run (%s): this partition has no "
                            "state in this run yet", path, err)
                return None
            raise SnapshotError(f"The client snapshot {path} is refused: {err}.") from err
        except (SnapshotError, ValueError) as err:
            raise SnapshotError(f"The client snapshot {path} is refused: {err}.") from err

    def save(self, tag: Tag, arrays: dict[str, np.ndarray]) -> Path:
        """Write the snapshot ``tag`` atomically (with its content digest), drop newer
        and surplus ones."""
        for key in (DIGEST_KEY, RUN_ID_KEY, PARTITION_KEY):
            if key in arrays:
                raise ConfigError(f"A client state may not hold the reserved key {key!r}.")
        arrays = {**arrays, PARTITION_KEY: np.array([self.partition], dtype=np.int64)}
        if self.run_id is not None:
            arrays[RUN_ID_KEY] = np.frombuffer(bytes.fromhex(self.run_id), dtype=np.uint8)
        digest = np.frombuffer(content_digest(arrays), dtype=np.uint8)
        target = write_npz_atomic(self.path(tag), {**arrays, DIGEST_KEY: digest})
        tags = self.tags()
        stale = [t for t in tags if t > tag] + [t for t in tags if t <= tag][:-KEEP]
        for t in stale:
            self.path(t).unlink(missing_ok=True)
        return target
