"""The one atomic npz writer (server checkpoints, client snapshots): a write killed
mid-way leaves a temporary file that the next write into the directory removes; a write
that fails leaves the previous file readable; the rename is made durable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fedzoo import checkpoint as ckpt_module
from fedzoo.checkpoint import (
    STALE_TEMP_S,
    Checkpoint,
    load_checkpoint,
    remove_stale_temps,
    save_checkpoint,
)
from fedzoo_client.persistence import StateStore


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


RUN_ID = "0123456789abcdef" * 2


def small_checkpoint(round_: int) -> Checkpoint:
    """A valid checkpoint of a fedzo run (3 clients, dim 3) after ``round_`` rounds."""
    from fedzoo.results import COLUMNS, INT_COLUMNS, STR_COLUMNS

    rows = [{c: (r if c == "round" else 0 if c in INT_COLUMNS else "" if c in STR_COLUMNS else 1.0)
             for c in COLUMNS} for r in range(round_ + 1)]
    client = {"dim": np.array([3.0]), "total-queries": np.array([0], dtype=np.int64)}
    meta = {"config": {"method": "fedzo"}, "problem": "quadratic", "dim": 3, "clients": 3, "info": {}}
    return Checkpoint(round_, {"x": np.full(3, float(round_)), "round": np.array([float(round_)])},
                      [dict(client) for _ in range(3)], rows, meta, RUN_ID)


def plant(directory: Path, target: str) -> dict[str, Path]:
    """Temporary files as killed writers leave them, and files that are not theirs."""
    old = time.time() - STALE_TEMP_S - 60
    live = os.getppid()  # a process that runs (pytest's parent)
    files = {
        "dead writer": directory / f".{target}.{dead_pid()}.k3j_x9a1.tmp",
        "old, pid alive": directory / f".{target}.{live}.zz01abcd.tmp",
        "old legacy name": directory / ".checkpoint-ab12cd34.npz",
        "fresh, pid alive": directory / f".{target}.{live}.q8w7e6r5.tmp",
        "fresh legacy name": directory / ".checkpoint-zz99yy88.npz",
        "not the writer's": directory / "notes.tmp",
        "not the writer's either": directory / f".{target}.backup",
    }
    for name, path in files.items():
        path.write_bytes(b"half a file")
        if name.startswith("old"):
            os.utime(path, (old, old))
    return files


STALE = {"dead writer", "old, pid alive", "old legacy name"}


def test_a_checkpoint_write_removes_stale_temp_files_of_the_writer_only(tmp_path):
    save_checkpoint(tmp_path, small_checkpoint(1))
    files = plant(tmp_path, "checkpoint.npz")
    save_checkpoint(tmp_path, small_checkpoint(2))
    for name, path in files.items():
        assert path.exists() == (name not in STALE), name
    loaded = load_checkpoint(tmp_path)
    assert loaded.round == 2 and np.array_equal(loaded.server["x"], np.full(3, 2.0))


def test_a_snapshot_write_removes_stale_temp_files_and_the_snapshots_stay_intact(tmp_path):
    store = StateStore(tmp_path, "run", 0)
    store.save((1, 0), {"a": np.arange(3.0)})
    files = plant(store.directory, "state-000001-1.npz")
    store.save((1, 1), {"a": np.arange(5.0)})
    for name, path in files.items():
        assert path.exists() == (name not in STALE), name
    assert store.tags() == [(1, 0), (1, 1)]
    tag, arrays = store.load_before((2, 0))
    assert tag == (1, 1) and np.array_equal(arrays["a"], np.arange(5.0))


def test_a_write_in_flight_in_another_live_process_is_left_alone(tmp_path):
    live = tmp_path / f".checkpoint.npz.{os.getppid()}.abcdefgh.tmp"
    live.write_bytes(b"being written")
    assert remove_stale_temps(tmp_path) == [] and live.exists()
    assert remove_stale_temps(tmp_path, now=time.time() + STALE_TEMP_S + 1) == [live]


def _failing_savez(fh, **arrays):
    fh.write(b"PK\x03\x04 the start of a zip")  # a torn temporary file
    raise OSError("No space left on device")


def test_a_failed_checkpoint_write_leaves_the_previous_one_readable(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, small_checkpoint(1))
    monkeypatch.setattr(ckpt_module.np, "savez", _failing_savez)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, small_checkpoint(2))
    monkeypatch.undo()
    loaded = load_checkpoint(tmp_path)
    assert loaded.round == 1 and np.array_equal(loaded.server["x"], np.full(3, 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]  # no temp left


def test_a_failed_snapshot_write_leaves_the_previous_snapshot_readable(tmp_path, monkeypatch):
    store = StateStore(tmp_path, "run", 0)
    store.save((1, 0), {"a": np.arange(3.0)})
    monkeypatch.setattr(ckpt_module.np, "savez", _failing_savez)
    with pytest.raises(OSError, match="No space"):
        store.save((2, 0), {"a": np.arange(9.0)})
    monkeypatch.undo()
    assert store.tags() == [(1, 0)]
    tag, arrays = store.load_before((3, 0))
    assert tag == (1, 0) and np.array_equal(arrays["a"], np.arange(3.0))
    assert [p.name for p in store.directory.iterdir()] == ["state-000001-0.npz"]


@pytest.mark.skipif(not hasattr(os, "O_DIRECTORY"), reason="directories cannot be fsync'ed here")
def test_the_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real_fsync(fd)

    monkeypatch.setattr(ckpt_module.os, "fsync", recording_fsync)
    save_checkpoint(tmp_path, small_checkpoint(1))
    assert synced == ["file", "dir"]  # the data, then the rename
