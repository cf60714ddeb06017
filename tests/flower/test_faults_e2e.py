"""Fault injection with real Flower processes (SuperLink, SuperNodes, flwr-serverapp).

The scenarios are the ones of ``simulations/benchmarks/reliability.py`` (which reports
them in RELIABILITY.md); here their outcomes are checked:

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

import importlib.util
import math
from pathlib import Path

import pytest

from fedzoo.results import participants_of

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def scenarios():
    path = ROOT / "simulations" / "benchmarks" / "reliability.py"
    spec = importlib.util.spec_from_file_location("reliability_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_killed_supernode_is_skipped_then_rejoins_from_its_saved_state(tmp_path, no_leftovers):
    res = scenarios().supernode_restart(tmp_path)
    assert res["_status"] == "finished:completed", res["_log"][-3000:]
    rows = res["_rows"]
    who = [participants_of(r) for r in rows[1:]]
    assert who[0] == [0, 1, 2] and [0, 1] in who and who[-1] == [0, 1, 2], who
    assert "partition 2 moves from node" in res["_log"]
    assert all(math.isfinite(r["reported_value"]) for r in rows[1:])
    assert res["survived"] and res["finished_rounds_lost"] == 0


def test_a_killed_serverapp_resumes_from_its_checkpoint_with_the_uninterrupted_history(
    tmp_path, no_leftovers
):
    res = scenarios().serverapp_resume(tmp_path)
    assert 1 <= res["_done"] < 4 and res["_resumed_after"] == res["_done"]
    # every column but wall_s equals the in-process engine's uninterrupted run
    assert res["history_identical_to_uninterrupted"]
    assert res["survived"] and res["finished_rounds_lost"] == 0
