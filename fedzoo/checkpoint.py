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

**Integrity** (format 2). A checkpoint carries a SHA-256 of its content (every array's
name, dtype, shape and bytes, the header included: :func:`content_digest`) and, in its
header, a digest of the run's identity (``meta`` without ``rounds``: the configuration,
the problem). :func:`load_checkpoint` refuses, with a :class:`CheckpointError` naming the
file and the reason, a file that cannot be parsed (truncated, bit-flipped: ``BadZipFile``,
``zlib.error``, ...), one without a digest (damaged, or written before digests: format 1),
one whose content or identity does not match its digest, and one whose parts disagree
(a header round other than its last history row's or its server state's, client arrays
missing for some of its ``num_clients``, a ``num_clients`` other than its run's). The
digest is no signature: whoever can write the file can write a consistent one.

**One writer per run directory.** :func:`directory_lock` holds an exclusive ``flock`` on
``<dir>/.fedzoo.lock`` while a run writes there (the engine, the ServerApp); a second
run (e.g. ``--resume`` while the first still writes) is refused at once, naming the pid.
The kernel drops the lock when its process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.errors import ConfigError

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT_VERSION = 2
#: The array holding a checkpoint's content digest (32 bytes, uint8).
DIGEST_KEY = "__sha256__"
_DIGEST_DOMAIN = b"fedzoo checkpoint v2\0"
LOCK_NAME = ".fedzoo.lock"

#: A temporary file of :func:`write_npz_atomic` older than this is stale even if a process
#: with its pid runs (pids are reused; no write takes minutes).
STALE_TEMP_S = 600.0
_TEMP_SUFFIX = ".tmp"
#: ``.<target name>.<pid>.<mkstemp's random part>.tmp``: the writer's own temporary files.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+\.npz)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
#: The names earlier versions gave them (``.<stem>-<random>.npz``; no pid: by age only).
_LEGACY_TEMP_NAME = re.compile(r"^\.(checkpoint|state-\d{6}-\d)-[a-z0-9_]{8}\.npz$")

log = logging.getLogger(__name__)


class CheckpointError(ConfigError):
    """A checkpoint that cannot be read or verified (damaged, tampered, inconsistent)."""


class DirectoryLockedError(ConfigError):
    """Another process writes the run directory."""


def content_digest(arrays: Mapping[str, np.ndarray], domain: bytes = _DIGEST_DOMAIN) -> bytes:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (names sorted; every field
    length-prefixed, so no two different contents hash the same input), after ``domain``."""
    h = hashlib.sha256(domain)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        for part in (name.encode("utf-8"), a.dtype.str.encode(), repr(a.shape).encode()):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
        data = a.tobytes()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def identity_digest(meta: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a run's identity: its checkpoint ``meta`` without ``rounds``."""
    text = json.dumps({k: v for k, v in meta.items() if k != "rounds"}, sort_keys=True,
                      default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


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
              "rows": ckpt.rows, "meta": ckpt.meta, "identity": identity_digest(ckpt.meta)}
    arrays["header"] = np.array(json.dumps(header, allow_nan=True))
    arrays[DIGEST_KEY] = np.frombuffer(content_digest(arrays), dtype=np.uint8)
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


#: What the zip, zlib, ``.npy`` and JSON layers raise on a damaged file.
_PARSE_ERRORS = (OSError, ValueError, EOFError, KeyError, IndexError, TypeError,
                 zipfile.BadZipFile, zlib.error, NotImplementedError, UnicodeDecodeError)


def load_checkpoint(directory: str | Path) -> Checkpoint:
    """Read and verify ``directory/checkpoint.npz`` (see the module doc, "Integrity").

    Raises:
        ConfigError: no checkpoint there.
        CheckpointError: it cannot be parsed, or fails its digest or consistency checks
            (the message names the file and what is wrong).
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        raise ConfigError(f"No checkpoint to resume from: {path} does not exist (run with --checkpoint first).")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}  # reads (and CRC-checks) every member
    except _PARSE_ERRORS as err:
        raise CheckpointError(
            f"The checkpoint {path} is damaged and cannot be read ({type(err).__name__}: {err}); "
            "it cannot be resumed (start the run again, or restore a copy)."
        ) from err
    try:
        return _verified(arrays)
    except CheckpointError as err:
        raise CheckpointError(f"The checkpoint {path} is refused: {err}; it cannot be resumed "
                              "(start the run again, or restore a copy).") from err
    except _PARSE_ERRORS as err:
        raise CheckpointError(f"The checkpoint {path} is refused: malformed content "
                              f"({type(err).__name__}: {err}).") from err


def _verified(arrays: dict[str, np.ndarray]) -> Checkpoint:
    """The checkpoint in ``arrays`` after its digest and consistency checks."""
    stored = arrays.pop(DIGEST_KEY, None)
    if stored is None:
        raise CheckpointError("it has no content digest (damaged, or written by a fedzoo older "
                              "than checkpoint digests, format 1, which cannot be verified)")
    if stored.dtype != np.uint8 or stored.shape != (32,) or stored.tobytes() != content_digest(arrays):
        raise CheckpointError("its content does not match its SHA-256 digest (edited or damaged)")
    header = json.loads(str(arrays["header"]))
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"format {header.get('format')!r}, expected {FORMAT_VERSION}")
    round_, num_clients, rows, meta = (header.get(k) for k in ("round", "num_clients", "rows", "meta"))
    if not (isinstance(round_, int) and round_ >= 0 and isinstance(num_clients, int) and num_clients >= 0
            and isinstance(meta, dict) and isinstance(rows, list) and rows
            and all(isinstance(r, dict) and isinstance(r.get("round"), int) for r in rows)):
        raise CheckpointError("its header lacks a round, num_clients, history rows or meta")
    if header.get("identity") != identity_digest(meta):
        raise CheckpointError("its run identity (configuration, problem) does not match its digest")
    if [r["round"] for r in rows] != list(range(rows[0]["round"], rows[0]["round"] + len(rows))) \
            or rows[-1]["round"] != round_:
        raise CheckpointError(f"its round {round_} is not the round of its last history row "
                              f"({rows[-1]['round']})")
    server = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("server/")}
    if "round" in server and int(np.asarray(server["round"]).ravel()[0]) != round_:
        raise CheckpointError(f"its round {round_} is not its server state's "
                              f"({int(np.asarray(server['round']).ravel()[0])})")
    groups: dict[int, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        head, _, key = k.partition("/")
        if head.startswith("client") and key:
            groups.setdefault(int(head[len("client"):]), {})[key] = v
    if sorted(groups) != list(range(num_clients)):
        raise CheckpointError(f"num_clients = {num_clients} but it holds the states of clients "
                              f"{sorted(groups)}")
    if "clients" in meta and meta["clients"] != num_clients:
        raise CheckpointError(f"num_clients = {num_clients} but its run has {meta['clients']} clients")
    clients = [groups[c] for c in range(num_clients)]
    return Checkpoint(round_, server, clients, rows, meta)


@contextlib.contextmanager
def directory_lock(*directories: str | Path | None) -> Iterator[None]:
    """Hold ``<dir>/.fedzoo.lock`` exclusively for each directory while the block runs:
    one writer per run directory. None, repeats and directories that do not exist yet
    are skipped (nothing is created: a new directory has no other writer).

    Raises:
        DirectoryLockedError: another process (or another run of this one) holds it;
            the message names the directory and the holder's pid.
    """
    with contextlib.ExitStack() as stack:
        seen: set[Path] = set()
        for directory in directories:
            if directory is None or str(directory) == "":
                continue
            path = Path(directory).expanduser().resolve()
            if path not in seen:
                seen.add(path)
                stack.enter_context(_lock_one(path))
        yield


@contextlib.contextmanager
def _lock_one(directory: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    if not directory.is_dir():
        yield
        return
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise DirectoryLockedError(
                f"{directory} is being written by another fedzoo run (pid {holder}, lock "
                f"{path}); one run writes a directory at a time: wait for it to end or stop "
                "it, then run again (a --resume then continues from its last checkpoint)."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_unlocked(directory: str | Path) -> None:
    """Refuse now if another process writes ``directory`` (:func:`directory_lock` taken
    and released at once): for a launcher whose child process will take the lock."""
    with directory_lock(directory):
        pass


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
