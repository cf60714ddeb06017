"""Fault injection with real Flower processes (SuperLink, SuperNodes, flwr-serverapp).

* a SuperNode killed mid-run: the run completes, the rounds after the kill aggregate the
  other two, the history records who took part; restarted (new node id, empty memory),
  it takes its partition back from its on-disk state and rejoins;
* the ServerApp process killed after round k: a new run with ``resume = true`` continues
  from the checkpoint, the SuperNodes continue from their snapshots, and the final
  history equals an uninterrupted run's (the in-process engine's, which the Flower path
  reproduces exactly, test_parity.py).

Every process is stopped by PID at the end (``no_leftovers``).
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import pytest

from fedzoo.checkpoint import CHECKPOINT_NAME, load_checkpoint
from fedzoo.engine import run_federation
from fedzoo.results import participants_of, read_history
from server.launch import Session
from server.settings import build_problem, parse_run_config
from tests.flower.conftest import same

pytestmark = pytest.mark.slow


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def rows_of(out: Path) -> list[dict]:
    try:
        return read_history(out / "history.csv")
    except (OSError, ValueError, KeyError):
        return []


def test_a_killed_supernode_is_skipped_then_rejoins_from_its_saved_state(tmp_path, no_leftovers):
    out = tmp_path / "out"
    rc = {"method": "fedzo", "rounds": 6, "dim": 10, "num-clients": 3, "round-timeout": 20.0,
          "out-dir": str(out)}
    nodes = [{"partition-id": i, "state-dir": str(tmp_path / f"state{i}")} for i in range(3)]
    with Session(tmp_path / "work", simulation=False) as session:
        session.start_superlink()
        for i, cfg in enumerate(nodes):
            session.start_supernode(f"node{i}", cfg)
        run_id = session.submit(rc)
        wait_for(lambda: len(rows_of(out)) >= 2, 180, "round 1")
        session.kill("node2")
        # the next rounds go on without partition 2 ...
        wait_for(lambda: any(participants_of(r) == [0, 1] for r in rows_of(out)), 180,
                 "a round aggregated without partition 2")
        session.start_supernode("node2-restarted", nodes[2])  # new node id, empty memory
        status = session.wait(run_id, timeout_s=400)
        log = session.logs(run_id)
    assert status == "finished:completed", log[-3000:]
    rows = read_history(out / "history.csv")
    who = [participants_of(r) for r in rows[1:]]
    assert who[0] == [0, 1, 2] and [0, 1] in who and who[-1] == [0, 1, 2], who
    assert "partition 2 moves from node" in log
    assert all(math.isfinite(r["reported_value"]) for r in rows[1:])
    assert rows[-1]["round"] == 6


def engine_reference(rc):
    s = parse_run_config(rc)
    return run_federation(build_problem(s), s.config, workers=1)


def test_a_killed_serverapp_resumes_from_its_checkpoint_with_the_uninterrupted_history(
    tmp_path, no_leftovers
):
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    rc = {"method": "fzoos", "rounds": 3, "dim": 10, "num-clients": 3, "rff-features": 200,
          "local-steps": 4, "gp-history": 80, "sync-points": 10, "out-dir": str(out),
          "checkpoint-dir": str(ckpt)}
    with Session(tmp_path / "work", simulation=False) as session:
        session.start_superlink()
        for i in range(3):
            session.start_supernode(f"node{i}", {"partition-id": i, "state-dir": str(tmp_path / f"s{i}")})
        first = session.submit(rc)
        wait_for(lambda: (ckpt / CHECKPOINT_NAME).exists(), 240, "the round-1 checkpoint")
        victims = wait_for(lambda: session.pids_running("flwr-serverapp"), 30, "the ServerApp")
        for pid in victims:  # the ServerApp process dies (as on a crash: SIGKILL)
            os.kill(pid, signal.SIGKILL)
        done_before = load_checkpoint(ckpt).round
        session.stop_run(first)  # the dead run stays "running" otherwise
        resumed = session.run({**rc, "resume": True}, out, timeout_s=400)
    assert 1 <= done_before < 3 and resumed["resumed_after_round"] == done_before
    rows = read_history(out / "history.csv")
    reference = engine_reference(rc).history
    assert len(rows) == len(reference)
    for got, want in zip(rows, reference):  # a deployment reports, it never simulates F
        for column in ("reported_value", "queries", "bytes_up", "bytes_down", "clients",
                       "participants"):
            assert same(got[column], want[column]), (column, got, want)
