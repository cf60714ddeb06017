"""Reliability of the ServerApp loop over an in-process grid (fast; real processes: e2e).

* a ServerApp that dies mid-round and is resumed from its checkpoint, with clients that
  persisted their state, ends with the history of an uninterrupted run;
* a node that goes away is skipped (not waited for) and the history says who took part;
* a SuperNode that restarts (new node id, empty context) takes its partition back from
  its on-disk snapshots;
* resume refuses a missing or foreign checkpoint, or fewer rounds than it holds.
"""

from __future__ import annotations

import logging
import math
import shutil

import numpy as np
import pytest

from fedzoo.checkpoint import load_checkpoint
from fedzoo.errors import ConfigError
from fedzoo.results import participants_of
from fedzoo_client.persistence import KEEP, SnapshotError, StateStore
from fedzoo_server.app import FlowerRunError, run_server
from fedzoo_server.settings import parse_run_config, run_key
from tests.flower.conftest import SMALL, make_grid
from tests.flower.test_parity import assert_same_history

pytestmark = pytest.mark.usefixtures("identity")

class ServerDies(Exception):
    pass


class DieAt:
    """Tamper hook: the ServerApp process dies when the reply (mtype, round) arrives,
    after every client has finished (and persisted) that exchange."""

    def __init__(self, mtype, round_):
        self.mtype, self.round = mtype, round_

    def __call__(self, mtype, pid, reply):
        if mtype == self.mtype and reply.metadata.group_id == str(self.round) and pid == 2:
            raise ServerDies(f"killed during round {self.round} {mtype}")
        return reply


@pytest.mark.parametrize("method,dies_in", [
    ("fzoos", "query.sync"), ("fzoos", "train"), ("scaffold1", "query.sync"),
    ("scaffold2", "train"), ("fzoos-lagged", "train"), ("fedzo", "train"),
])
def test_a_killed_and_resumed_serverapp_ends_with_the_uninterrupted_history(tmp_path, method, dies_in):
    base = {**SMALL, "method": method, "rounds": 4, "local-steps": 3, "gp-history": 60,
            "sync-points": 8, "rgf-directions": 5}
    reference = run_server(make_grid({**base, "out-dir": str(tmp_path / "ref")}),
                           parse_run_config({**base, "out-dir": str(tmp_path / "ref")}))
    rc = {**base, "out-dir": str(tmp_path / "out"), "checkpoint-dir": str(tmp_path / "ckpt"),
          "client-state-dir": str(tmp_path / "clients")}
    with pytest.raises(ServerDies):
        run_server(make_grid(rc, tamper=DieAt(dies_in, 3)), parse_run_config(rc))
    assert load_checkpoint(tmp_path / "ckpt").round == 2  # round 3 never completed
    # a new Flower run: new contexts (empty state); the clients read their snapshots
    resumed_rc = {**rc, "resume": True}
    run = run_server(make_grid(resumed_rc), parse_run_config(resumed_rc))
    assert run.summary["resumed_after_round"] == 2
    assert_same_history(run.rows, reference.rows)
    assert np.array_equal(run.state.x, reference.state.x)


@pytest.mark.parametrize("method", ["fzoos", "fedzo"])
def test_resume_can_extend_a_finished_run(tmp_path, method):
    rc = {**SMALL, "method": method, "rounds": 2, "out-dir": str(tmp_path / "out"),
          "checkpoint-dir": str(tmp_path / "ckpt"), "client-state-dir": str(tmp_path / "cl")}
    run_server(make_grid(rc), parse_run_config(rc))
    longer = {**rc, "rounds": 4, "resume": True}
    run = run_server(make_grid(longer), parse_run_config(longer))
    ref_rc = {**SMALL, "method": method, "rounds": 4, "out-dir": str(tmp_path / "ref")}
    reference = run_server(make_grid(ref_rc), parse_run_config(ref_rc))
    # fedzo's 2-round run ended with a final evaluation at x_2: outside the rounds, it is
    # in neither the checkpoint nor the clients' snapshots, so the extension matches
    assert_same_history(run.rows, reference.rows)
    store = StateStore(tmp_path / "cl", run_key(rc), 0)
    assert all(phase != 2 for _, phase in store.tags())


def test_resume_refuses_a_missing_or_foreign_checkpoint(tmp_path):
    rc = {**SMALL, "method": "fedzo", "rounds": 1, "out-dir": str(tmp_path / "out"),
          "checkpoint-dir": str(tmp_path / "ckpt"), "resume": True}
    with pytest.raises(ConfigError, match="No checkpoint"):
        run_server(make_grid(rc), parse_run_config(rc))
    run_server(make_grid({**rc, "resume": False}), parse_run_config({**rc, "resume": False}))
    other = {**rc, "lr": 0.05}
    with pytest.raises(FlowerRunError, match=r"another run.*'lr'"):
        run_server(make_grid(other), parse_run_config(other))
    with pytest.raises(ConfigError, match="checkpoint-dir"):
        parse_run_config({**SMALL, "resume": True})


@pytest.mark.parametrize("method", ["fedzo", "fzoos"])
def test_resume_refuses_fewer_rounds_than_its_checkpoint_and_equal_rounds_just_finish(tmp_path, method):
    rc = {**SMALL, "method": method, "rounds": 3, "out-dir": str(tmp_path / "out"),
          "checkpoint-dir": str(tmp_path / "ckpt"), "client-state-dir": str(tmp_path / "cl")}
    reference = run_server(make_grid(rc), parse_run_config(rc))
    history = (tmp_path / "out" / "history.csv").read_text()
    fewer = {**rc, "rounds": 2, "resume": True}
    grid = make_grid(fewer)
    with pytest.raises(ConfigError, match=r"rounds = 2 .*'rounds'.*after round 3"):
        run_server(grid, parse_run_config(fewer))
    assert grid.sent == []  # refused before any node was asked
    assert (tmp_path / "out" / "history.csv").read_text() == history
    assert load_checkpoint(tmp_path / "ckpt").round == 3
    # rounds == the checkpoint's round: nothing to run; ends with the same history
    equal = {**rc, "resume": True}
    run = run_server(make_grid(equal), parse_run_config(equal))
    assert run.summary["resumed_after_round"] == 3
    assert_same_history(run.rows, reference.rows)


def test_an_offline_node_is_skipped_and_the_history_says_who_took_part(tmp_path, caplog):
    rc = {**SMALL, "method": "fedzo", "rounds": 3, "out-dir": str(tmp_path / "out")}
    grid = make_grid(rc)
    node_of = {ctx.node_config["partition-id"]: node for node, ctx in grid.contexts.items()}

    def vanish(mtype, pid, reply):
        if pid == 1 and mtype == "train" and reply.metadata.group_id == "1":
            grid.remove_node(node_of[1])
        return reply

    grid.tamper = vanish
    with caplog.at_level(logging.WARNING):
        run = run_server(grid, parse_run_config(rc))
    assert [participants_of(r) for r in run.rows[1:]] == [[0, 1, 2], [0, 2], [0, 2]]
    assert "offline" in caplog.text and "not sent" in caplog.text
    sent_to_gone = [m for m in grid.sent if m.metadata.dst_node_id == node_of[1]]
    assert len(sent_to_gone) == 2  # describe + round 1 train; nothing after it vanished
    assert math.isfinite(run.rows[-1]["reported_value"])


def test_a_restarted_supernode_takes_its_partition_back_from_its_snapshots(tmp_path, caplog):
    rc = {**SMALL, "method": "fzoos", "rounds": 3, "out-dir": str(tmp_path / "out"),
          "client-state-dir": str(tmp_path / "clients")}
    grid = make_grid(rc)
    node_of = {ctx.node_config["partition-id"]: node for node, ctx in grid.contexts.items()}

    def restart(mtype, pid, reply):
        if pid == 2 and mtype == "query.sync" and reply.metadata.group_id == "1":
            grid.remove_node(node_of[2])  # dies before its reply is delivered ...
            grid.add_node(99, {"partition-id": 2}, rc)  # ... and comes back as node 99
            return None
        return reply

    grid.tamper = restart
    with caplog.at_level(logging.WARNING):
        run = run_server(grid, parse_run_config(rc))
    assert [participants_of(r) for r in run.rows[1:]] == [[0, 1, 2], [0, 1, 2], [0, 1, 2]]
    assert "partition 2 moves from node" in caplog.text and run.federation.nodes[2] == 99
    # node 99 started from the snapshot its predecessor wrote after round 1's sync: it
    # holds every point partition 2 ever queried, as many as partition 0 (same pattern)
    store = StateStore(tmp_path / "clients", run_key(rc), 2)
    tag, arrays = store.load_before((99, 0))
    assert tag == (3, 1) and len(store.tags()) <= KEEP
    _, arrays0 = StateStore(tmp_path / "clients", run_key(rc), 0).load_before((99, 0))
    assert arrays["history-x"].shape == arrays0["history-x"].shape
    # the queries behind the lost reply are counted with partition 2's next reply: the
    # history's total is every query every client made
    totals = [StateStore(tmp_path / "clients", run_key(rc), p).load_before((99, 0))[1]
              for p in range(3)]
    assert run.rows[-1]["queries"] == sum(int(a["total-queries"][0]) for a in totals)


def test_snapshots_load_the_latest_before_a_tag_and_stay_bounded(tmp_path):
    store = StateStore(tmp_path, "abc", 0)
    for r in (1, 2, 3):
        for phase in (0, 1):
            store.save((r, phase), {"v": np.array([10.0 * r + phase])})
    assert store.tags() == [(2, 1), (3, 0), (3, 1)]  # the newest KEEP = 3
    tag, arrays = store.load_before((3, 1))
    assert tag == (3, 0) and arrays["v"][0] == 30.0
    assert store.load_before((2, 1)) is None  # older ones were pruned
    # a write for an earlier exchange (a resumed run) drops the diverged future
    store.save((3, 0), {"v": np.array([-1.0])})
    assert store.tags() == [(2, 1), (3, 0)]
    # a torn snapshot is refused, never skipped in favour of the one before it
    store.path((3, 0)).write_bytes(b"not an npz")
    with pytest.raises(SnapshotError, match=r"state-000003-0\.npz is refused"):
        store.load_before((4, 0))
    # snapshots of another run (another key) are never seen
    assert StateStore(tmp_path, "other", 0).load_before((9, 0)) is None


def test_an_unusable_state_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="Cannot create the client state directory"):
        StateStore(blocker, "abc", 0)


def _died_after_round_2(tmp_path, method="fzoos"):
    """A run killed in round 3 (checkpoint after round 2, snapshots), and its reference."""
    base = {**SMALL, "method": method, "rounds": 3, "local-steps": 2, "gp-history": 60, "sync-points": 8}
    rc = {**base, "out-dir": str(tmp_path / "out"), "checkpoint-dir": str(tmp_path / "ckpt"),
          "client-state-dir": str(tmp_path / "clients")}
    with pytest.raises(ServerDies):
        run_server(make_grid(rc, tamper=DieAt("train", 3)), parse_run_config(rc))
    return rc


def test_swapped_client_snapshots_end_the_resumed_run_naming_the_partitions(tmp_path):
    """Not the CLI's check before the start (fedzoo_client.app.check_saved_states), but the
    clients themselves: partition 0 refuses partition 1's snapshot, the ServerApp ends
    the run with that line instead of skipping the client."""
    rc = _died_after_round_2(tmp_path)
    runs = tmp_path / "clients" / f"run-{run_key(rc)}"
    (runs / "partition-0").rename(runs / "p0")
    (runs / "partition-1").rename(runs / "partition-0")
    (runs / "p0").rename(runs / "partition-1")
    resumed = {**rc, "resume": True}
    with pytest.raises(FlowerRunError, match=r"Partition [01] cannot use its saved state: .*holds the "
                                             r"state of partition [01], not of partition [01]"):
        run_server(make_grid(resumed), parse_run_config(resumed))


def test_deleted_client_state_ends_the_resumed_run(tmp_path):
    rc = _died_after_round_2(tmp_path)
    shutil.rmtree(tmp_path / "clients")
    resumed = {**rc, "resume": True}
    with pytest.raises(FlowerRunError, match=r"cannot use its saved state: no snapshot before round 3"):
        run_server(make_grid(resumed), parse_run_config(resumed))


def test_a_checkpoint_of_another_run_is_refused_by_its_run_id(tmp_path):
    """Same options (so the configuration check passes), another run: the run ids differ."""
    rc = _died_after_round_2(tmp_path / "a")
    other = _died_after_round_2(tmp_path / "b")
    (tmp_path / "a" / "ckpt" / "checkpoint.npz").write_bytes((tmp_path / "b" / "ckpt" / "checkpoint.npz").read_bytes())
    resumed = {**rc, "resume": True}
    grid = make_grid(resumed)
    with pytest.raises(ConfigError, match=r"belongs to another run: its run id is [0-9a-f]{32}, the run in "):
        run_server(grid, parse_run_config(resumed))
    assert grid.sent == []  # refused before any node was asked
    assert other != rc
