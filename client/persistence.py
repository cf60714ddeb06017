"""A client's state on disk: snapshots that survive a SuperNode restart or a resumed run.

Flower keeps ``context.state`` in the SuperNode's memory only: it is lost when the
SuperNode restarts and it starts empty in a new run (a run that resumes a checkpoint is a
new Flower run). A client whose node config names ``state-dir`` (or whose run-config has
``client-state-dir``) therefore writes its :class:`~fedzoo.protocol.ClientState` to disk
after every exchange it completes, and reads it back before every exchange.

Layout: ``<dir>/run-<key>/partition-<id>/state-<round>-<phase>.npz``, where ``key`` is
:func:`server.settings.run_key` of the run-config (everything but the rounds, the
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
  by those queries (``client.app.handle``), so the next exchange loads it and the
  server charges them; a retry of the same exchange after a resume loads the snapshot
  before it and loses that count, as it loses any snapshot newer than the resume point.
* **evaluate**: the final evaluation is not saved: it lies outside the rounds (the
  server's checkpoint is taken before it), so a run that extends a finished one
  continues from the state after its last round, as the server does.
* **size**: bounded by ``KEEP`` x the state's size (the history is capped by
  ``history-max``).
* **integrity**: every snapshot carries a SHA-256 of its content (the array names,
  dtypes, shapes and bytes: :func:`content_digest`) under the key :data:`DIGEST_KEY`,
  verified on load. A snapshot that cannot be read (truncated, bit-flipped: the zip
  layer raises ``zipfile.BadZipFile``, ``zlib.error``, ``KeyError``, ...) or whose
  content does not match its digest (a well-formed file with an edited array) is skipped
  with a logged warning in favour of the one before it; it is left on disk for
  inspection and ages out like any other snapshot. A snapshot without a digest is
  skipped too: a damaged zip directory can hide members without any error, so a missing
  digest cannot be told from damage (snapshots written before digests existed are
  therefore not reused: such a client restarts from its latest verifiable state).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fedzoo.checkpoint import content_digest as _content_digest
from fedzoo.checkpoint import write_npz_atomic
from fedzoo.errors import ConfigError

logger = logging.getLogger(__name__)

KEEP = 3
DIGEST_KEY = "__sha256__"
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


class CorruptSnapshotError(ValueError):
    """A snapshot whose content does not match its digest."""


def content_digest(arrays: Mapping[str, np.ndarray]) -> bytes:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (names sorted; every
    field length-prefixed, so no two different snapshots hash the same input): the
    checkpoints' digest (:func:`fedzoo.checkpoint.content_digest`) in the snapshots' domain."""
    return _content_digest(arrays, _DIGEST_DOMAIN)


def read_snapshot(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the snapshot at ``path``, verified against its digest.

    Raises:
        CorruptSnapshotError: the digest is malformed or does not match the content.
        Exception: anything the zip / ``.npy`` layers raise on a damaged file
            (``OSError``, ``ValueError``, ``EOFError``, ``zipfile.BadZipFile``,
            ``zlib.error``, ``KeyError``, ...).
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}  # reads (and CRC-checks) every member
    stored = arrays.pop(DIGEST_KEY, None)
    if stored is None:
        # Also what a damaged central directory looks like: zipfile may list only the
        # members before the damage and raise nothing.
        raise CorruptSnapshotError(
            "no content digest (damaged, or written by a fedzoo older than snapshot "
            "digests, which cannot be verified)"
        )
    if stored.dtype != np.uint8 or stored.shape != (32,):
        raise CorruptSnapshotError(f"malformed digest (dtype {stored.dtype}, shape {stored.shape})")
    if stored.tobytes() != content_digest(arrays):
        raise CorruptSnapshotError("content does not match its SHA-256 digest")
    return arrays


class StateStore:
    """Snapshots of one client's state in one run (see the module docstring)."""

    def __init__(self, root: str | Path, run_key: str, partition: int) -> None:
        root = Path(root).expanduser()
        if not root.is_absolute():
            root = root.resolve()
        self.directory = root / f"run-{run_key}" / f"partition-{int(partition)}"
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
        for entry in self.directory.iterdir():
            m = _NAME.match(entry.name)
            if m:
                found.append((int(m.group(1)), int(m.group(2))))
        return sorted(found)

    def path(self, tag: Tag) -> Path:
        return self.directory / f"state-{tag[0]:06d}-{tag[1]}.npz"

    def load_before(self, tag: Tag) -> tuple[Tag, dict[str, np.ndarray]] | None:
        """The latest snapshot tagged before ``tag`` (its tag and arrays), or None.

        A snapshot that cannot be read or fails its digest (a torn file from a crash of
        the disk itself, a flipped bit, an edited array) is skipped, with a logged
        warning, in favour of the one before it.
        """
        for found in reversed([t for t in self.tags() if t < tag]):
            path = self.path(found)
            try:
                return found, read_snapshot(path)
            except Exception as err:  # any failure to parse or verify: unusable
                # zipfile / zlib / numpy raise many types on damaged input (BadZipFile,
                # zlib.error, KeyError, struct.error, ...); none of them may crash a client
                # that has an older good snapshot.
                logger.warning(
                    "skipping the corrupt client snapshot %s (%s: %s); falling back to the "
                    "one before it",
                    path,
                    type(err).__name__,
                    err,
                )
                continue
        return None

    def save(self, tag: Tag, arrays: dict[str, np.ndarray]) -> Path:
        """Write the snapshot ``tag`` atomically (with its content digest), drop newer
        and surplus ones."""
        if DIGEST_KEY in arrays:
            raise ConfigError(f"A client state may not hold the reserved key {DIGEST_KEY!r}.")
        digest = np.frombuffer(content_digest(arrays), dtype=np.uint8)
        target = write_npz_atomic(self.path(tag), {**arrays, DIGEST_KEY: digest})
        tags = self.tags()
        stale = [t for t in tags if t > tag] + [t for t in tags if t <= tag][:-KEEP]
        for t in stale:
            self.path(t).unlink(missing_ok=True)
        return target
