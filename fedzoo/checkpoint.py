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

**Integrity** (format 3). A checkpoint carries a SHA-256 of its content (every array's
name, dtype, shape and bytes, the header included: :func:`content_digest`), in its
header a digest of the run's identity (``meta`` without ``rounds``: the configuration,
the problem) and the run's random id (:func:`new_run_id`), which the run also records in
``<dir>/run-id`` when it starts (:func:`write_run_id`) and in ``summary.json``.
:func:`load_checkpoint` reads it with bounds before decoding anything
(:class:`BoundedNpz`: the file's size, its members, the ``.npy`` headers; then the JSON
header, whose configuration bounds every declared shape, :mod:`fedzoo.statespec`; the
arrays are then decompressed as streams capped at their declared sizes) and refuses,
with a :class:`CheckpointError` naming the file and the reason, a file that cannot be
parsed (truncated, bit-flipped: ``BadZipFile``, ``zlib.error``, ...) or exceeds those
bounds, one without a digest (damaged, or format 1) or written before run ids (format 2),
one whose content or identity does not match its digest, one whose parts disagree (rows,
rounds, client arrays, query totals; :func:`check_rows`, :func:`_verified`), one whose
states do not build from their arrays and write them back unchanged, and one whose run id
is not the one its directory records (:func:`recorded_run_id`). The digest is no
signature: whoever can write the file can write a consistent one (values within the
bounds resume).

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
import secrets
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
from fedzoo.results import fsync_directory, write_atomic

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT_VERSION = 3
#: The array holding a checkpoint's content digest (32 bytes, uint8).
DIGEST_KEY = "__sha256__"
_DIGEST_DOMAIN = b"fedzoo checkpoint v2\0"
LOCK_NAME = ".fedzoo.lock"
#: The file holding the run id of the run that writes (and checkpoints into) a directory.
RUN_ID_NAME = "run-id"
RUN_ID_BYTES = 16

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
    run_id: str = ""


def new_run_id() -> str:
    """A random run id (:data:`RUN_ID_BYTES` bytes, hex)."""
    return secrets.token_hex(RUN_ID_BYTES)


def valid_run_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(rf"[0-9a-f]{{{RUN_ID_BYTES * 2}}}", value) is not None


def write_run_id(directory: str | Path, run_id: str) -> Path:
    """Record ``run_id`` as the run of ``directory`` (``<dir>/run-id``, atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / RUN_ID_NAME
    write_atomic(target, (run_id + "\n").encode())
    return target


def recorded_run_id(directory: str | Path) -> tuple[str | None, str]:
    """The run id recorded in ``directory`` and where: its ``run-id`` file, else the
    ``run_id`` of its ``summary.json``; (None, "") when neither records one.

    Raises:
        CheckpointError: a ``run-id`` file that does not hold a run id.
    """
    path = Path(directory) / RUN_ID_NAME
    if path.is_file():
        text = path.read_bytes()[:256].decode(errors="replace").strip()
        if not valid_run_id(text):
            raise CheckpointError(f"{path} holds {text[:40]!r}, not a run id ({RUN_ID_BYTES * 2} hex digits)")
        return text, str(path)
    summary = Path(directory) / "summary.json"
    try:
        if summary.is_file() and summary.stat().st_size < (16 << 20):
            found = json.loads(summary.read_text()).get("run_id")
            if valid_run_id(found):
                return found, str(summary)
    except (OSError, ValueError, AttributeError):
        pass
    return None, ""


def save_checkpoint(directory: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``directory/checkpoint.npz`` atomically; returns its path."""
    if not valid_run_id(ckpt.run_id):
        raise ValueError(f"A checkpoint needs its run's id ({RUN_ID_BYTES * 2} hex digits), not {ckpt.run_id!r}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for key, value in ckpt.server.items():
        arrays[f"server/{key}"] = np.asarray(value)
    for cid, state in enumerate(ckpt.clients):
        for key, value in state.items():
            arrays[f"client{cid}/{key}"] = np.asarray(value)
    header = {"format": FORMAT_VERSION, "round": ckpt.round, "num_clients": len(ckpt.clients),
              "rows": ckpt.rows, "meta": ckpt.meta, "identity": identity_digest(ckpt.meta),
              "run_id": ckpt.run_id}
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
    fsync_directory(target.parent)
    return target


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
                 zipfile.BadZipFile, zlib.error, NotImplementedError, UnicodeDecodeError,
                 OverflowError, MemoryError)

#: Bounds checked before any array is decoded: the file's size, its members, the bytes
#: all members declare decompressed, the JSON header's bytes, one ``.npy`` header's bytes.
#: (Backstops: each array's declared shape is bounded by the run's configuration, and
#: states by its clients, before anything is decompressed.)
MAX_FILE_BYTES = 4 << 30
MAX_MEMBERS = 1 << 16
MAX_TOTAL_BYTES = 8 << 30
MAX_HEADER_BYTES = 64 << 20
_MAX_NPY_HEADER = 10_000
_READ_CHUNK = 1 << 20
_ALLOWED_KINDS = "biufU"


class BoundedNpz:
    """An ``.npz`` (zip of ``.npy``) opened without decoding any array.

    Opening checks the file's size (:data:`MAX_FILE_BYTES`), the number and names of its
    members and the decompressed bytes they declare (zip ``file_size``, at most
    :data:`MAX_TOTAL_BYTES` in all), and reads each member's ``.npy`` header only
    (``numpy.lib.format.read_magic`` / ``read_array_header_*``: a few hundred bytes
    decompressed): :attr:`declared` maps each array's name to its (dtype, shape). A dtype
    that is not plain (objects, records) or a header that disagrees with the member's
    declared size is refused. :meth:`read` then decompresses one array as a stream, never
    more than its header declares (a zip bomb stops there), and checks its CRC.

    Raises (from the constructor and :meth:`read`):
        ValueError: one line saying what is wrong (the caller adds the file's name).
    """

    def __init__(self, path: Path, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise ValueError(f"it is {size} bytes, more than the {max_file_bytes} a saved state may be")
        self.zip = zipfile.ZipFile(path)
        try:
            self._scan()
        except BaseException:
            self.zip.close()
            raise

    def _scan(self) -> None:
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"it has {len(infos)} members, more than {MAX_MEMBERS}")
        total = sum(i.file_size for i in infos)
        if total > MAX_TOTAL_BYTES:
            raise ValueError(f"its members declare {total} bytes decompressed, more than {MAX_TOTAL_BYTES}")
        self.declared: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self._layout: dict[str, tuple[zipfile.ZipInfo, int, int, bool]] = {}
        for info in infos:
            if not info.filename.endswith(".npy") or info.filename[:-4] in self.declared:
                raise ValueError(f"member {info.filename!r} is not one array of its own (.npy)")
            name = info.filename[:-4]
            with self.zip.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if reader is None:
                    raise ValueError(f"array {name!r} has .npy version {version}, expected 1.0 or 2.0")
                shape, fortran, dtype = reader(fh, max_header_size=_MAX_NPY_HEADER)
                offset = fh.tell()
            if dtype.hasobject or dtype.fields is not None or dtype.kind not in _ALLOWED_KINDS \
                    or dtype.subdtype is not None:
                raise ValueError(f"array {name!r} has dtype {dtype}, expected a plain number or text dtype")
            if any(not isinstance(n, int) or n < 0 for n in shape):
                raise ValueError(f"array {name!r} declares the shape {shape}")
            nbytes = dtype.itemsize
            for n in shape:
                nbytes *= n
            if offset + nbytes != info.file_size:
                raise ValueError(f"array {name!r} declares {dtype}{shape} ({nbytes} bytes) but its "
                                 f"member holds {info.file_size - offset}")
            self.declared[name] = (dtype, tuple(shape))
            self._layout[name] = (info, offset, nbytes, bool(fortran))

    def read(self, name: str) -> np.ndarray:
        """Decompress the array ``name`` (at most the bytes its header declares)."""
        info, offset, nbytes, fortran = self._layout[name]
        dtype, shape = self.declared[name]
        parts, left = [], nbytes
        with self.zip.open(info) as fh:
            fh.read(offset)
            while left > 0:
                chunk = fh.read(min(left, _READ_CHUNK))
                if not chunk:
                    raise ValueError(f"array {name!r} is shorter than its header declares")
                parts.append(chunk)
                left -= len(chunk)
            if fh.read(1):  # also reaches the member's end: zipfile checks its CRC there
                raise ValueError(f"array {name!r} is longer than its header declares")
        data = b"".join(parts)
        return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")

    def read_all(self) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in self.declared}

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> BoundedNpz:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _meta_shape(meta: Mapping[str, Any]) -> tuple[int, int]:
    """(dim, clients) of a checkpoint's ``meta`` (the engine's, or the Flower app's)."""
    if meta.get("engine") == "flower":
        problem = meta.get("problem")
        if not (isinstance(problem, list) and len(problem) == 5):
            raise CheckpointError(f"its meta 'problem' is {problem!r}, expected [name, dim, clients, "
                                  "heterogeneity, seed]")
        dim, clients = problem[1], problem[2]
    else:
        dim, clients = meta.get("dim"), meta.get("clients")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (dim, clients)):
        raise CheckpointError(f"its meta gives dim {dim!r} and clients {clients!r}, expected integers >= 1")
    return dim, clients


def checkpoint_bounds(meta: Mapping[str, Any], round_: int) -> Any:
    """The :class:`fedzoo.statespec.Bounds` of the run a checkpoint's ``meta`` describes.

    Raises:
        CheckpointError: the meta names no valid configuration, dimension or clients.
    """
    from fedzoo.config import RunConfig
    from fedzoo.statespec import Bounds

    dim, clients = _meta_shape(meta)
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CheckpointError("its meta holds no configuration")
    try:
        run_config = RunConfig.from_mapping({**config, "rounds": max(int(round_), 1)})
    except ConfigError as err:
        raise CheckpointError(f"its configuration is not valid ({err})") from err
    return run_config, Bounds.of(run_config, dim, clients, round_)


def _groups(names: Iterator[str] | list[str]) -> dict[str, list[str]]:
    """Array names by state: "server", "client<k>" (refusing any other name)."""
    out: dict[str, list[str]] = {}
    for name in names:
        if name in ("header", DIGEST_KEY):
            continue
        head, sep, key = name.partition("/")
        if not sep or not key or not (head == "server" or re.fullmatch(r"client(0|[1-9]\d{0,5})", head)):
            raise CheckpointError(f"it holds the array {name!r}, which no checkpoint holds")
        out.setdefault(head, []).append(name)
    return out


def load_checkpoint(directory: str | Path, *, run_id: str | None = None) -> Checkpoint:
    """Read and verify ``directory/checkpoint.npz`` (see the module doc, "Integrity").

    ``run_id``: the run it must belong to; by default the run recorded in ``directory``
    (:func:`recorded_run_id`: its ``run-id`` file, else its ``summary.json``), if any.

    Raises:
        ConfigError: no checkpoint there.
        CheckpointError: it cannot be parsed, fails its bounds, digest or consistency
            checks, or belongs to another run (the message names the file and what is wrong).
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        raise ConfigError(f"No checkpoint to resume from: {path} does not exist (run with --checkpoint first).")
    try:
        ckpt = _read_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"The checkpoint {path} is refused: {err}; it cannot be resumed "
                              "(start the run again, or restore a copy).") from err
    except _PARSE_ERRORS as err:
        raise CheckpointError(
            f"The checkpoint {path} is damaged and cannot be read ({type(err).__name__}: "
            f"{' '.join(str(err).split())}); it cannot be resumed (start the run again, or restore a copy)."
        ) from err
    expected, source = (run_id, "the run resumed") if run_id is not None else recorded_run_id(directory)
    if expected is not None and expected != ckpt.run_id:
        raise CheckpointError(
            f"The checkpoint {path} belongs to another run: its run id is {ckpt.run_id}, the run "
            f"in {Path(directory)} is {expected} ({source}); it cannot be resumed here (resume the "
            "directory it was written in, or start a new run).")
    return ckpt


def _read_checkpoint(path: Path) -> Checkpoint:
    from fedzoo.statespec import check_declared

    with BoundedNpz(path) as npz:
        declared = npz.declared
        if "header" not in declared or declared["header"][0].kind != "U" or declared["header"][1] != ():
            raise CheckpointError("it has no header (a JSON text array)")
        if declared["header"][0].itemsize > MAX_HEADER_BYTES:
            raise CheckpointError(f"its header is longer than {MAX_HEADER_BYTES} bytes")
        if DIGEST_KEY not in declared:
            raise CheckpointError("it has no content digest (damaged, or written by a fedzoo older "
                                  "than checkpoint digests, format 1, which cannot be verified)")
        if declared[DIGEST_KEY][0] != np.uint8 or declared[DIGEST_KEY][1] != (32,):
            raise CheckpointError("its content does not match its SHA-256 digest (the digest is not 32 bytes)")
        header = _parse_header(npz.read("header"))
        config, bounds = checkpoint_bounds(header["meta"], header["round"])
        groups = _groups(list(declared))
        beyond = sorted(g for g in groups if g != "server" and int(g[len("client"):]) >= bounds.clients)
        if beyond:
            raise CheckpointError(f"it holds states {beyond} but its run has {bounds.clients} clients")
        for group, names in groups.items():
            role = "server" if group == "server" else "client"
            try:
                check_declared({n.split("/", 1)[1]: declared[n] for n in names}, role, bounds)
            except ValueError as err:
                raise CheckpointError(f"{group}: {err}") from None
        arrays = npz.read_all()  # every size now bounded by the run's configuration
    return _verified(arrays, config, bounds)


def _parse_header(array: np.ndarray) -> dict[str, Any]:
    header = json.loads(str(array.item()))
    if not isinstance(header, dict):
        raise CheckpointError("its header is not a JSON object")
    if header.get("format") != FORMAT_VERSION:
        old = " (written before run ids: it cannot be tied to its run)" if header.get("format") == 2 else ""
        raise CheckpointError(f"format {header.get('format')!r}, expected {FORMAT_VERSION}{old}")
    round_, meta, run_id = header.get("round"), header.get("meta"), header.get("run_id")
    if not (isinstance(round_, int) and not isinstance(round_, bool) and round_ >= 0 and isinstance(meta, dict)):
        raise CheckpointError("its header lacks a round or meta")
    if not valid_run_id(run_id):
        raise CheckpointError(f"its run id {run_id!r} is not {RUN_ID_BYTES * 2} hex digits")
    return header


def _verified(arrays: dict[str, np.ndarray], config: Any, bounds: Any) -> Checkpoint:
    """The checkpoint in ``arrays`` after its digest and consistency checks."""
    from fedzoo.statespec import check_values

    stored = arrays.pop(DIGEST_KEY)
    if stored.tobytes() != content_digest(arrays):
        raise CheckpointError("its content does not match its SHA-256 digest (edited or damaged)")
    header = _parse_header(arrays["header"])
    round_, num_clients, rows, meta = (header.get(k) for k in ("round", "num_clients", "rows", "meta"))
    if not (isinstance(num_clients, int) and num_clients >= 0 and isinstance(rows, list) and rows):
        raise CheckpointError("its header lacks num_clients or history rows")
    if header.get("identity") != identity_digest(meta):
        raise CheckpointError("its run identity (configuration, problem) does not match its digest")
    check_rows(rows, round_, bounds.clients)
    server = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("server/")}
    if "round" not in server or "x" not in server or float(server["round"][0]) != round_:
        raise CheckpointError(f"its round {round_} is not its server state's "
                              f"({server['round'].tolist() if 'round' in server else 'missing'})")
    groups: dict[int, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        head, _, key = k.partition("/")
        if head.startswith("client") and key:
            groups.setdefault(int(head[len("client"):]), {})[key] = v
    if sorted(groups) != list(range(num_clients)):
        raise CheckpointError(f"num_clients = {num_clients} but it holds the states of clients "
                              f"{sorted(groups)}")
    if num_clients not in (0, bounds.clients):
        raise CheckpointError(f"num_clients = {num_clients} but its run has {bounds.clients} clients")
    try:
        check_values(server, "server", bounds)
        for cid in range(num_clients):
            try:
                check_values(groups[cid], "client", bounds)
            except ValueError as err:
                raise ValueError(f"client {cid}: {err}") from None
        _check_loads(server, [groups[c] for c in range(num_clients)], config)
        if num_clients:
            _check_clients_agree(server, [groups[c] for c in range(num_clients)], config)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    clients = [groups[c] for c in range(num_clients)]
    return Checkpoint(round_, server, clients, rows, meta, header["run_id"])


def _check_clients_agree(server: dict[str, np.ndarray], clients: list[dict[str, np.ndarray]],
                         config: Any) -> None:
    """In-process checkpoints hold every client: the server's running query totals are the
    clients' own (a client that fails ends such a run, so no reply is lost), and with
    ``fraction`` = 1 every client took part in every round, so all hold the same arrays."""
    ids = server.get("query-total-ids", np.zeros(0, dtype=np.int64)).tolist()
    totals = dict(zip(ids, server.get("query-totals", np.zeros(0, dtype=np.int64)).tolist()))
    for cid, arrays in enumerate(clients):
        own = int(arrays["total-queries"][0])
        if totals.get(cid, 0) != own:
            raise ValueError(f"client {cid} counts {own} queries but the server's total for it is "
                             f"{totals.get(cid, 'missing')}")
    if float(config.fraction) == 1.0:
        keys = [sorted(a) for a in clients]
        for cid, k in enumerate(keys):
            if k != keys[0]:
                raise ValueError(f"client {cid} holds the arrays {k}, client 0 {keys[0]} (every "
                                 "client takes part in every round)")


def _check_loads(server: dict[str, np.ndarray], clients: list[dict[str, np.ndarray]], config: Any) -> None:
    """The states build from the arrays and write them back unchanged (else ValueError)."""
    from fedzoo.state import ClientState, ServerState
    from fedzoo.statespec import check_round_trip

    def built(fn: Any, arrays: dict[str, np.ndarray], what: str) -> Any:
        try:
            return fn(arrays, config)
        except Exception as err:  # noqa: BLE001 - any failure to build is a refusal
            raise ValueError(f"the {what} state cannot be built from its arrays "
                             f"({type(err).__name__}: {' '.join(str(err).split())})") from None

    check_round_trip(built(ServerState.from_arrays, server, "server"), server, "server")
    for cid, arrays in enumerate(clients):
        try:
            check_round_trip(built(ClientState.from_arrays, arrays, f"client {cid}"), arrays, "client")
        except ValueError as err:
            raise ValueError(f"client {cid}: {err}") from None


def check_rows(rows: list[Any], round_: int, clients: int) -> None:
    """History rows 0..``round_``, each with every column of :data:`fedzoo.results.COLUMNS`
    of its type (integers, numbers, text; participants and per-client queries naming
    clients below ``clients``).

    Raises:
        CheckpointError: naming the row and the column.
    """
    from fedzoo.results import COLUMNS, INT_COLUMNS, STR_COLUMNS, client_queries_of, participants_of

    if len(rows) != round_ + 1:
        raise CheckpointError(f"its round {round_} is not the round of its last history row "
                              f"({len(rows)} rows, expected {round_ + 1})")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or row.get("round") != i or set(row) != set(COLUMNS):
            raise CheckpointError(f"history row {i} is not a row of round {i} with the columns {list(COLUMNS)}")
        for col in COLUMNS:
            v = row[col]
            ok = (isinstance(v, str) if col in STR_COLUMNS
                  else isinstance(v, int) and not isinstance(v, bool) and v >= 0 if col in INT_COLUMNS
                  else isinstance(v, (int, float)) and not isinstance(v, bool))
            if not ok:
                raise CheckpointError(f"history row {i} column {col!r} is {v!r}, expected "
                                      f"{'text' if col in STR_COLUMNS else 'an integer >= 0' if col in INT_COLUMNS else 'a number'}")
        try:
            ids = participants_of(row) + list(client_queries_of(row))
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"history row {i} names clients malformed ({err})") from None
        if any(not 0 <= c < clients for c in ids):
            raise CheckpointError(f"history row {i} names clients {sorted(set(ids))}, not all below {clients}")


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
