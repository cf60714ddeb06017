"""A corpus of forged, damaged and foreign checkpoints: each is either refused by
``fedzoo run --resume`` with exit 2 and one line naming what is wrong (never a traceback,
never an allocation the file merely declares), or resumes to the uninterrupted run's
history. Forged files carry a recomputed digest (the digest is no signature), so what
refuses them are the run id, the bounds read from the ``.npy`` headers before anything is
decoded, and the checks of shapes, dtypes, rows and states against the run's configuration.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fedzoo.checkpoint import CHECKPOINT_NAME, DIGEST_KEY, RUN_ID_NAME, content_digest
from fedzoo_cli.main import main

COMMON = ["--problem", "quadratic", "--dim", "4", "--clients", "3", "--method", "fzoos",
          "--local-steps", "2", "--rff-features", "64", "--history-max", "60", "--workers", "1"]


def _history(out: Path) -> list[list[str]]:
    rows = (out / "history.csv").read_text().splitlines()
    head = rows[0].split(",")
    keep = [i for i, h in enumerate(head) if h != "wall_s"]
    return [[r.split(",")[i] for i in keep] for r in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A: fzoos checkpointed after round 2; B: another run (fedzo, seed 1); the
    uninterrupted 3-round history of A."""
    base = tmp_path_factory.mktemp("corpus")
    assert main(["run", *COMMON, "--seed", "0", "--rounds", "3", "--out", str(base / "full")]) == 0
    assert main(["run", *COMMON, "--seed", "0", "--rounds", "2", "--checkpoint", "--out", str(base / "A")]) == 0
    assert main(["run", *COMMON[:6], "--method", "fedzo", "--seed", "1", "--rounds", "2", "--checkpoint",
                 "--out", str(base / "B")]) == 0
    return base, _history(base / "full")


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def saved(arrays: dict[str, np.ndarray], digest: bool = True) -> bytes:
    """``np.savez`` bytes with a recomputed content digest (a consistent forgery)."""
    arrays = {k: v for k, v in arrays.items() if k != DIGEST_KEY}
    if digest:
        arrays[DIGEST_KEY] = np.frombuffer(content_digest(arrays), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def edit_header(arrays: dict[str, np.ndarray], fn) -> dict[str, np.ndarray]:
    header = json.loads(str(arrays["header"]))
    fn(header)
    return {**arrays, "header": np.array(json.dumps(header, allow_nan=True))}


def npy_member(name: str, dtype: str, shape: tuple[int, ...], data: bytes = b"") -> tuple[str, bytes]:
    head = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    head += b" " * (63 - (len(head) + 10) % 64) + b"\n"
    return name + ".npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + data


def zipped(members: list[tuple[str, bytes]], *, lie_size: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    raw = buf.getvalue()
    if lie_size:  # claim 1 KB decompressed in the central directory (the data is a bomb)
        raw = bytearray(raw)
        cd = raw.rfind(b"PK\x01\x02")
        struct.pack_into("<I", raw, cd + 24, 1024)
        raw = bytes(raw)
    return raw


def bomb(good: dict[str, np.ndarray], lie: bool) -> bytes:
    """client0/history-y declared (2**24,) float64: 128 MiB of zeros in well under 1 MB;
    ``lie``: the central directory claims 1 KiB decompressed."""
    buf = io.BytesIO()
    n = 1 << 24
    name, head = npy_member("client0/history-y", "<f8", (n,))
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in good.items():
            if k != "client0/history-y":
                zf.writestr(k + ".npy", _npy(v))
        with zf.open(name, "w") as fh:
            fh.write(head)
            block = bytes(1 << 22)
            for _ in range(n * 8 // len(block)):
                fh.write(block)
    raw = bytearray(buf.getvalue())
    if lie:
        at = raw.rfind(b"PK\x01\x02" + raw[raw.rfind(b"PK\x01\x02") + 4: raw.rfind(b"PK\x01\x02") + 4])
        while raw[at + 46: at + 46 + len(name)] != name.encode():
            at = raw.find(b"PK\x01\x02", at + 4)
        struct.pack_into("<I", raw, at + 24, 1024)
    return bytes(raw)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def corpus(base: Path) -> dict[str, bytes | tuple[bytes, str]]:
    """name -> file bytes (or (bytes, run-id file text) for a case that edits run-id too)."""
    good_bytes = (base / "A" / CHECKPOINT_NAME).read_bytes()
    good = arrays_of(base / "A" / CHECKPOINT_NAME)
    other = (base / "B" / CHECKPOINT_NAME).read_bytes()
    c: dict[str, bytes | tuple[bytes, str]] = {}
    c["intact"] = good_bytes
    c["digest recomputed, nothing changed"] = saved(good)
    c["another run's checkpoint"] = other
    c["run id edited in the header"] = saved(edit_header(good, lambda h: h.update(run_id="ab" * 16)))
    c["run-id file of another run"] = (good_bytes, "cd" * 16)
    c["run id not hex"] = saved(edit_header(good, lambda h: h.update(run_id="xyz")))
    c["format 2 (no run id)"] = saved(edit_header(good, lambda h: h.update(format=2)))
    for n in (0, 22, 300, len(good_bytes) // 2, len(good_bytes) - 1):
        c[f"truncated to {n} bytes"] = good_bytes[:n]
    c["no digest"] = saved(good, digest=False)
    c["edited array, old digest"] = _with_old_digest(good, {"server/x": good["server/x"] + 1})
    c["server x one longer"] = saved({**good, "server/x": np.zeros(5)})
    c["server x float32"] = saved({**good, "server/x": good["server/x"].astype(np.float32)})
    c["server x 2-d"] = saved({**good, "server/x": good["server/x"][None, :]})
    c["server x not finite"] = saved({**good, "server/x": np.full(4, np.nan)})
    c["rff weights short"] = saved({**good, "client0/rff-own": np.zeros(63)})
    c["rff weights 635"] = saved({**good, "client1/rff-own": np.zeros(635)})
    c["server rff weights short"] = saved({**good, "server/rff-global": np.zeros(10)})
    hx = good["client0/history-x"]
    c["history rows disagree"] = saved({**good, "client0/history-x": hx[:-1]})
    c["history of dim 5"] = saved({**good, "client0/history-x": np.zeros((hx.shape[0], 5))})
    c["history past history-max"] = saved({**good, "client0/history-x": np.zeros((61, 4)),
                                           "client0/history-y": np.zeros(61)})
    c["gram float64"] = saved({**good, "client0/rff-cache-gram": good["client0/rff-cache-gram"].astype(np.float64)})
    c["client dim 5"] = saved({**good, "client0/dim": np.array([5.0])})
    c["client 0 left out"] = saved({k: v for k, v in good.items() if not k.startswith("client0/")})
    c["client 0 left out, num_clients 2"] = saved(edit_header(
        {k: v for k, v in good.items() if not k.startswith("client0/")}, lambda h: h.update(num_clients=2)))
    c["client 0 without its history"] = saved({k: v for k, v in good.items()
                                               if k not in ("client0/history-x", "client0/history-y")})
    c["client 0 dropped from the query totals"] = saved({
        **good, "server/query-total-ids": good["server/query-total-ids"][1:],
        "server/query-totals": good["server/query-totals"][1:]})
    c["query totals of client 7"] = saved({**good, "server/query-total-ids": np.array([0, 1, 7])})
    c["an unknown array"] = saved({**good, "client0/evil": np.zeros(3)})
    c["an unknown group"] = saved({**good, "attacker/x": np.zeros(3)})
    c["a state of client 5 of 3"] = saved({**good, **{f"client5/{k.split('/', 1)[1]}": v for k, v in good.items()
                                                       if k.startswith("client0/")}})
    c["server round disagrees"] = saved({**good, "server/round": np.array([5.0])})
    c["a history row dropped"] = saved(edit_header(good, lambda h: h["rows"].pop()))
    c["a row value is text"] = saved(edit_header(good, lambda h: h["rows"][1].update(value="abc")))
    c["a row round is a bool"] = saved(edit_header(good, lambda h: h["rows"][0].update(round=False)))
    c["a row names client 9"] = saved(edit_header(good, lambda h: h["rows"][1].update(participants="0;9")))
    c["a row without a column"] = saved(edit_header(good, lambda h: h["rows"][1].pop("queries")))
    c["header not JSON"] = saved({**good, "header": np.array("{not json")})
    c["header a list"] = saved({**good, "header": np.array("[1, 2]")})
    c["header as bytes"] = saved({**good, "header": np.frombuffer(b"{}", dtype=np.uint8)})
    c["config invalid"] = saved(edit_header(good, lambda h: h["meta"]["config"].update(lr=-1)))
    c["an object array (pickle)"] = _pickled(good)
    c["a structured dtype"] = saved({**good, "client0/dim": np.zeros(1, dtype=[("a", "<f8")])})
    c["declares 2**34 elements (311 bytes)"] = zipped([npy_member("server/x", "<f8", (1 << 34,))])
    c["declares 2**34 elements among good members"] = zipped(
        [(k + ".npy", _npy(v)) for k, v in good.items() if k != "server/x"]
        + [npy_member("server/x", "<f8", (1 << 34,))])
    c["zip bomb, honest sizes"] = bomb(good, lie=False)
    c["zip bomb, lying sizes"] = bomb(good, lie=True)
    c["not a .npy member"] = zipped([("evil.txt", b"hello")])
    return c


def _with_old_digest(good: dict[str, np.ndarray], change: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{**good, **change})
    return buf.getvalue()


def _pickled(good: dict[str, np.ndarray]) -> bytes:
    arrays = {**good, "server/x": np.array([object()] * 4, dtype=object)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_every_file_is_refused_in_one_line_or_resumes_as_uninterrupted(runs, tmp_path, capsys):
    base, full = runs
    cases = corpus(base)
    assert len(cases) == 51
    outcome = {}
    for i, (name, forged) in enumerate(cases.items()):
        run = tmp_path / f"case{i}"
        shutil.copytree(base / "A", run)
        data, run_id = forged if isinstance(forged, tuple) else (forged, None)
        (run / CHECKPOINT_NAME).write_bytes(data)
        if run_id is not None:
            (run / RUN_ID_NAME).write_text(run_id + "\n")
        capsys.readouterr()
        rc = main(["run", "--resume", str(run), "--rounds", "3", "--workers", "1"])
        err = capsys.readouterr().err
        assert "Traceback" not in err, (name, err)
        if rc == 0:
            assert _history(run) == full, f"{name}: resumed but diverged from the uninterrupted run"
            outcome[name] = "resumed"
        else:
            lines = [ln for ln in err.splitlines() if ln.startswith("fedzoo: error:")]
            assert rc == 2 and len(lines) == 1, (name, rc, err)
            outcome[name] = lines[0]
    resumed = sorted(n for n, o in outcome.items() if o == "resumed")
    assert resumed == ["digest recomputed, nothing changed", "intact"], outcome
    for name in ("another run's checkpoint", "run id edited in the header", "run-id file of another run"):
        assert "belongs to another run" in outcome[name], outcome[name]
    assert "rff-features" in outcome["rff weights short"]
    assert "expected 4 (dim)" in outcome["server x one longer"]
    assert "(17179869184,) (137438953472 bytes) but its member holds 0" in \
        outcome["declares 2**34 elements (311 bytes)"]
    assert "in place of 16777216" in \
        outcome["zip bomb, honest sizes"]
    lying = outcome["zip bomb, lying sizes"]  # decompression stops at the size it claims
    assert "but its member holds" in lying or "Bad CRC-32" in lying, lying
