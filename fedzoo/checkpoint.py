"""Atomic checkpoints of a federated run, for resuming after a crash.

One ``checkpoint.npz`` holds everything the next round needs: the server state, every
client's state (history, GP hyper-parameters, RFF weights, control variates, cache), the
history rows so far and the run's configuration. Randomness needs no saved state: every
generator derives from ``(seed, round, client, phase)``, so a resumed run continues with
exactly the draws an uninterrupted one would have made.

Writes go to a temporary file in the same directory, are flushed and fsync'ed, then
renamed over the old checkpoint (``os.replace`` is atomic on POSIX): a crash leaves
either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.errors import ConfigError

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT_VERSION = 1


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
    """``np.savez`` to a temporary file beside ``target``, fsync, rename over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".npz", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
