"""Atomic checkpoints of a federated run, for resuming after a crash.

One ``checkpoint.npz`` holds everything the next round needs: the server state, every
client's state (history, GP hyper-parameters, RFF weights, control variates, cache), the
history rows so far and the run's configuration. Randomness needs no saved state: every
generator derives from ``(seed, round, client, phase)``, so a resumed run continues with
exactly the draws an uninterrupted one would have made.

Writes go to a temporary file in the same directory, are flushed and fsync'ed, then
renamed over the old checkpoint (``os.replace`` is atomic on POSIX) and the directory is
fsync'ed (where the platform allows), so the rename itself survives a power loss: a crash
leaves either the previous checkpoint or the new one, never a torn file. A process killed
mid-write leaves its temporary file behind (``.<name>.<pid>.<random>.tmp``); the next
write into the directory removes such files of the writer when they are stale (their
process is gone, or they are older than :data:`STALE_TEMP_S`), never any other file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.errors import ConfigError

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT_VERSION = 1

#: A temporary file of :func:`write_npz_atomic` older than this is stale even if a process
#: with its pid runs (pids are reused; no write takes minutes).
STALE_TEMP_S = 600.0
_TEMP_SUFFIX = ".tmp"
#: ``.<target name>.<pid>.<mkstemp's random part>.tmp``: the writer's own temporary files.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+\.npz)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
#: The names earlier versions gave them (``.<stem>-<random>.npz``; no pid: by age only).
_LEGACY_TEMP_NAME = re.compile(r"^\.(checkpoint|state-\d{6}-\d)-[a-z0-9_]{8}\.npz$")

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """A run's state after ``round`` completed rounds."""

    round: int
    server: dict[str, np.ndarray]
    clients: list[dict[str, np.ndarray]]
    rows: list[dict[str, Any]]
    meta: dict[str, Any]


def save_checkpoint(directory: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``directory/checkpoint.npz`` atomically; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for key, value in ckpt.server.items():
        arrays[f"server/{key}"] = np.asarray(value)
    for cid, state in enumerate(ckpt.clients):
        for key, value in state.items():
            arrays[f"client{cid}/{key}"] = np.asarray(value)
    header = {"format": FORMAT_VERSION, "round": ckpt.round, "num_clients": len(ckpt.clients),
              "rows": ckpt.rows, "meta": ckpt.meta}
    arrays["header"] = np.array(json.dumps(header, allow_nan=True))
    return write_npz_atomic(directory / CHECKPOINT_NAME, arrays)


def write_npz_atomic(target: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` to a temporary file beside ``target``, fsync, rename over it, fsync
    the directory; first removes stale temporary files of this writer in the directory
    (:func:`remove_stale_temps`). A failed write leaves the previous ``target`` as it was."""
    target = Path(target)
    remove_stale_temps(target.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX, dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return target


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot
    be opened or synced (Windows, some network file systems)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own write in flight (another thread)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep the file
    return True


def remove_stale_temps(directory: Path, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files :func:`write_npz_atomic` left in ``directory`` when a
    process died mid-write: only names of its own pattern (``.<name>.npz.<pid>.<random>.tmp``)
    whose process is gone or that are older than :data:`STALE_TEMP_S` (the names of
    earlier versions, ``.<stem>-<random>.npz``, by age only). Returns them."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None and not _LEGACY_TEMP_NAME.match(entry.name):
            continue
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        if age > STALE_TEMP_S or (m is not None and not _process_alive(int(m.group("pid")))):
            try:
                entry.unlink()
            except OSError:
                continue
            removed.append(entry)
            log.info("removed a stale temporary file of an interrupted write: %s", entry)
    return removed


def load_checkpoint(directory: str | Path) -> Checkpoint:
    """Read ``directory/checkpoint.npz``; clear errors for a missing or foreign file."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        raise ConfigError(f"No checkpoint to resume from: {path} does not exist (run with --checkpoint first).")
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        if header.get("format") != FORMAT_VERSION:
            raise ConfigError(f"{path}: checkpoint format {header.get('format')!r}, expected {FORMAT_VERSION}.")
        server = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("server/")}
        clients: list[dict[str, np.ndarray]] = [{} for _ in range(header["num_clients"])]
        for k in data.files:
            if k.startswith("client"):
                head, key = k.split("/", 1)
                clients[int(head[len("client"):])][key] = data[k]
    return Checkpoint(header["round"], server, clients, header["rows"], header["meta"])


def check_resume_rounds(rounds: int, done: int, checkpoint_dir: str | Path) -> None:
    """Refuse to resume a run checkpointed after round ``done`` up to fewer rounds.

    ``rounds == done`` is allowed: no round is run, the run finishes as the uninterrupted
    one did (the final evaluation, if the method needs one, is outside the checkpoint and
    is made again), so the history equals that run's.

    Raises:
        ConfigError: naming the rounds asked for and the checkpoint's round.
    """
    if rounds < done:
        raise ConfigError(
            f"Cannot resume the run checkpointed in {checkpoint_dir} with rounds = {rounds} "
            f"(--rounds / run-config 'rounds'): its checkpoint is after round {done}; expected "
            f"rounds >= {done} (the total number of rounds, not the rounds to add; {done} "
            "just finishes the run)."
        )
