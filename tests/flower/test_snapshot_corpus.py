"""A corpus of forged, damaged and foreign client snapshots (``client-state-dir``): before a
resumed Flower run starts, :func:`fedzoo_client.app.check_saved_states` (what ``fedzoo run
--resume`` calls, and what every client does before its exchange) either refuses each with
one line naming the partition, the file and what is wrong (a
:class:`fedzoo_server.failures.ClientStateError`, exit 2 in the CLI), or loads exactly the state
that was saved, so the run continues as the uninterrupted one. Forged files carry a
recomputed digest (no signature): the run id, the partition id, the bounds read from the
``.npy`` headers and the checks against the run's configuration refuse them. Fast: no
Flower process; the states are real fzoos client states from an in-process run.
"""

from __future__ import annotations

import io
import shutil
import struct
import types
import zipfile

import numpy as np
import pytest

from fedzoo import protocol
from fedzoo.checkpoint import load_checkpoint
from fedzoo.config import RunConfig
from fedzoo.engine import run_federation
from fedzoo.objectives import make_problem
from fedzoo_client.app import _load_from_store, check_saved_states
from fedzoo_client.persistence import (
    DIGEST_KEY,
    PARTITION_KEY,
    RUN_ID_KEY,
    StateStore,
    content_digest,
)
from fedzoo_server.failures import ClientStateError
from fedzoo_server.settings import parse_run_config, run_key

RUN = "5e" * 16
OTHER = "a1" * 16
OPTIONS = {"method": "fzoos", "local-steps": 2, "rff-features": 64, "history-max": 60, "seed": 0}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Real client states after round 2 of fzoos (dim 4, 3 clients), as the clients
    would have saved them after round 2's sync, and the run-config that resumes them."""
    base = tmp_path_factory.mktemp("snapshots")
    problem = make_problem("quadratic", dim=4, clients=3, heterogeneity=0.5, seed=0)
    run_federation(problem, RunConfig.from_mapping({**OPTIONS, "rounds": 2}), checkpoint_dir=base / "ck",
                   workers=1)
    ckpt = load_checkpoint(base / "ck")
    rc = {**OPTIONS, "problem": "quadratic", "dim": 4, "num-clients": 3, "rounds": 3,
          "heterogeneity": 0.5, "problem-seed": 0, "client-state-dir": str(base / "clients")}
    for pid in range(3):
        StateStore(base / "clients", run_key(rc), pid, RUN).save((2, 1), ckpt.clients[pid])
    resumed = types.SimpleNamespace(server=ckpt.server, round=2, run_id=RUN)
    return base, rc, resumed, ckpt.clients


def raw(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def forged(arrays: dict[str, np.ndarray], digest: bool = True) -> bytes:
    arrays = {k: v for k, v in arrays.items() if k != DIGEST_KEY}
    if digest:
        arrays[DIGEST_KEY] = np.frombuffer(content_digest(arrays), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def declaring(name: str, shape: tuple[int, ...]) -> tuple[str, bytes]:
    head = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode()
    head += b" " * (63 - (len(head) + 10) % 64) + b"\n"
    return name + ".npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head


def zipped(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def bomb(good: dict[str, np.ndarray], lie: bool) -> bytes:
    """``history-y`` declared (2**24,): 128 MiB of zeros in well under 1 MB."""
    buf, n = io.BytesIO(), 1 << 24
    name, head = declaring("history-y", (n,))
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in good.items():
            if k != "history-y":
                zf.writestr(k + ".npy", npy(v))
        with zf.open(name, "w") as fh:
            fh.write(head)
            for _ in range(n * 8 >> 22):
                fh.write(bytes(1 << 22))
    data = bytearray(buf.getvalue())
    if lie:  # the central directory claims 1 KiB decompressed
        at = data.find(b"PK\x01\x02")
        while data[at + 46: at + 46 + len(name)] != name.encode():
            at = data.find(b"PK\x01\x02", at + 4)
        struct.pack_into("<I", data, at + 24, 1024)
    return bytes(data)


def corpus(good: dict[str, np.ndarray], other_partition: bytes) -> dict[str, bytes | None]:
    """File bytes for partition 0's snapshot (2, 1); None: the snapshot is deleted."""
    good_bytes = forged(good)
    c: dict[str, bytes | None] = {"intact": good_bytes}
    c["digest recomputed, nothing changed"] = forged(dict(good))
    c["partition 1's snapshot (swapped)"] = other_partition
    c["partition id edited to 1"] = forged({**good, PARTITION_KEY: np.array([1], dtype=np.int64)})
    c["another run's snapshot"] = forged({**good, RUN_ID_KEY: np.frombuffer(bytes.fromhex(OTHER), np.uint8)})
    c["no run id (an older fedzoo)"] = forged({k: v for k, v in good.items() if k != RUN_ID_KEY})
    c["no partition id"] = forged({k: v for k, v in good.items() if k != PARTITION_KEY})
    c["run id malformed"] = forged({**good, RUN_ID_KEY: np.zeros(3, np.uint8)})
    c["deleted"] = None
    for n in (0, 30, 400, len(good_bytes) // 2, len(good_bytes) - 1):
        c[f"truncated to {n} bytes"] = good_bytes[:n]
    c["no digest"] = forged(good, digest=False)
    c["edited, old digest"] = _old_digest(good, "local-x")
    c["history of dim 5"] = forged({**good, "history-x": np.zeros((good["history-x"].shape[0], 5))})
    c["history rows disagree"] = forged({**good, "history-x": good["history-x"][:-1]})
    c["history past history-max"] = forged({**good, "history-x": np.zeros((61, 4)), "history-y": np.zeros(61)})
    c["rff weights short"] = forged({**good, "rff-own": np.zeros(63)})
    c["rff weights 635"] = forged({**good, "rff-own": np.zeros(635)})
    c["gram float64"] = forged({**good, "rff-cache-gram": good["rff-cache-gram"].astype(np.float64)})
    c["cache rows disagree"] = forged({**good, "rff-cache-ids": good["rff-cache-ids"][:-1]})
    c["local-x of dim 3"] = forged({**good, "local-x": np.zeros(3)})
    c["dim 5"] = forged({**good, "dim": np.array([5.0])})
    c["dim missing"] = forged({k: v for k, v in good.items() if k != "dim"})
    c["total queries negative"] = forged({**good, "total-queries": np.array([-5], dtype=np.int64)})
    c["total queries float"] = forged({**good, "total-queries": np.array([5.0])})
    c["an unknown array"] = forged({**good, "evil": np.zeros(2)})
    c["a server array"] = forged({**good, "rff-global": np.zeros(64)})
    c["gp-hyper of 4"] = forged({**good, "gp-hyper": np.zeros(4)})
    c["a structured dtype"] = forged({**good, "dim": np.zeros(1, dtype=[("a", "<f8")])})
    c["an object array (pickle)"] = zipped([(k + ".npy", npy(v)) for k, v in good.items() if k != "local-x"]
                                           + [("local-x.npy", npy(np.array([object()] * 4, dtype=object)))])
    c["declares 2**34 elements"] = zipped([declaring("history-y", (1 << 34,))])
    c["zip bomb, honest sizes"] = bomb(good, lie=False)
    c["zip bomb, lying sizes"] = bomb(good, lie=True)
    c["not a .npy member"] = zipped([("evil.txt", b"hi")])
    return c


def _old_digest(good: dict[str, np.ndarray], key: str) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{**good, key: good[key] + 1})
    return buf.getvalue()


def test_every_snapshot_is_refused_in_one_line_or_loads_as_saved(saved, tmp_path):
    base, rc, resumed, states = saved
    key = run_key(rc)
    path0 = StateStore(base / "clients", key, 0, RUN).path((2, 1))
    path1 = StateStore(base / "clients", key, 1, RUN).path((2, 1))
    good = raw(path0)
    cases = corpus(good, path1.read_bytes())
    assert len(cases) == 37
    outcome = {}
    for i, (name, data) in enumerate(cases.items()):
        root = tmp_path / f"case{i}"
        shutil.copytree(base / "clients", root)
        target = root / path0.relative_to(base / "clients")
        if data is None:
            target.unlink()
        else:
            target.write_bytes(data)
        case_rc = {**rc, "client-state-dir": str(root)}
        try:
            check_saved_states(case_rc, resumed)
        except ClientStateError as err:
            text = str(err)
            assert "\n" not in text and text.startswith("Partition 0 cannot use its saved state: "), (name, text)
            outcome[name] = text
            continue
        # accepted: the state the client loads is exactly the one saved
        settings = parse_run_config(case_rc)
        state = _load_from_store(StateStore(root, key, 0, RUN), (3, 0), settings, True)
        again = state.to_arrays()
        assert sorted(again) == sorted(states[0]), name
        for k, v in states[0].items():
            np.testing.assert_array_equal(again[k], v, err_msg=name)
        outcome[name] = "loaded"
    assert sorted(n for n, o in outcome.items() if o == "loaded") == [
        "digest recomputed, nothing changed", "intact"], outcome
    assert "holds the state of partition 1, not of partition 0" in outcome["partition 1's snapshot (swapped)"]
    assert "belongs to another run" in outcome["another run's snapshot"]
    assert "no snapshot before round 3" in outcome["deleted"]
    assert "rff-features" in outcome["rff weights short"]


def test_a_whole_client_state_dir_deleted_is_refused(saved, tmp_path):
    base, rc, resumed, _ = saved
    with pytest.raises(ClientStateError, match="Partition 0 cannot use its saved state: no snapshot"):
        check_saved_states({**rc, "client-state-dir": str(tmp_path / "gone")}, resumed)


def test_a_partition_that_never_answered_may_start_fresh(saved, tmp_path):
    """Partial participation: a partition the checkpoint does not know needs no snapshot."""
    base, rc, resumed, _ = saved
    root = tmp_path / "clients"
    shutil.copytree(base / "clients", root)
    shutil.rmtree(StateStore(root, run_key(rc), 2, RUN).directory)
    server = {**resumed.server, "query-total-ids": np.array([0, 1]), "query-totals": resumed.server["query-totals"][:2]}
    check_saved_states({**rc, "client-state-dir": str(root)},
                       types.SimpleNamespace(server=server, round=2, run_id=RUN))


def test_a_leftover_of_another_run_is_ignored_only_where_no_state_is_expected(saved, tmp_path):
    """A fresh run reusing a client-state directory: a partition the server has not heard
    from yet (``has-state`` false) starts fresh over another run's leftover snapshot; once
    it has answered, another run's snapshot is refused."""
    base, rc, _, _ = saved
    settings = parse_run_config(rc)
    store = StateStore(base / "clients", run_key(rc), 0, OTHER)  # this run is OTHER
    fresh = _load_from_store(store, (3, 0), settings, False)
    new = protocol.new_client_state(settings.config, settings.dim).to_arrays()
    assert fresh.total_queries == 0 and sorted(fresh.to_arrays()) == sorted(new)
    assert all(np.array_equal(fresh.to_arrays()[k], v) for k, v in new.items())
    with pytest.raises(ClientStateError, match="belongs to another run"):
        _load_from_store(store, (3, 0), settings, True)
    # damage is refused either way
    root = tmp_path / "clients"
    shutil.copytree(base / "clients", root)
    torn = StateStore(root, run_key(rc), 0, RUN)
    torn.path((2, 1)).write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(ClientStateError, match="damaged"):
        _load_from_store(torn, (3, 0), settings, False)
