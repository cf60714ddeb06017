"""Checkpoints that cannot lie (fedzoo/checkpoint.py, "Integrity"; RELIABILITY.md).

A checkpoint carries a SHA-256 of its content and a digest of its run's identity; a file
that cannot be parsed gives a clear error (exit 2 in the CLI), a well-formed one that
was edited (an array, the meta, the round, the clients) is refused, and ``--resume DIR``
refuses flags that contradict the checkpoint, naming them.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

from fedzoo import RunConfig, make_problem, run_federation
from fedzoo.checkpoint import (
    CHECKPOINT_NAME,
    DIGEST_KEY,
    CheckpointError,
    DirectoryLockedError,
    content_digest,
    directory_lock,
    identity_digest,
    load_checkpoint,
)
from fedzoo_cli.main import main
from tests.settings import LIGHT

FAST_FLAGS = ["--method", "fzoos", "--dim", "3", "--clients", "3", "--rounds", "2",
              "--local-steps", "2", "--rff-features", "50", "--sync-points", "3",
              "--explore-points", "1", "--init-points", "3"]


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("ckpt")
    p = make_problem("quadratic", dim=3, clients=3, heterogeneity=0.5, seed=0)
    run_federation(p, RunConfig.from_mapping({**LIGHT, "rounds": 2, "rff-features": 50}),
                   checkpoint_dir=d, workers=1)
    return (d / CHECKPOINT_NAME).read_bytes()


def arrays_of(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write(directory, arrays, *, digest: bool = True) -> None:
    """Save ``arrays`` as a checkpoint, the content digest recomputed (as a forger would)."""
    arrays = {k: v for k, v in arrays.items() if k != DIGEST_KEY}
    if digest:
        arrays[DIGEST_KEY] = np.frombuffer(content_digest(arrays), dtype=np.uint8)
    np.savez(directory / CHECKPOINT_NAME, **arrays)


def with_header(arrays, **changes):
    header = {**json.loads(str(arrays["header"])), **changes}
    return {**arrays, "header": np.array(json.dumps(header))}


def test_a_checkpoint_carries_and_passes_its_digests(tmp_path, checkpoint_bytes):
    (tmp_path / CHECKPOINT_NAME).write_bytes(checkpoint_bytes)
    arrays = arrays_of(checkpoint_bytes)
    header = json.loads(str(arrays["header"]))
    assert header["format"] == 3 and header["identity"] == identity_digest(header["meta"])
    assert arrays[DIGEST_KEY].shape == (32,)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.round == 2 and len(ckpt.clients) == 3 and ckpt.rows[-1]["round"] == 2


def test_a_damaged_checkpoint_gives_a_clear_error_never_wrong_arrays(tmp_path, checkpoint_bytes):
    good = arrays_of(checkpoint_bytes)
    n = len(checkpoint_bytes)
    cases = [checkpoint_bytes[:k] for k in (0, 10, n // 3, n // 2, n - 30, n - 1)]
    for offset in np.linspace(0, n - 1, 80).astype(int):  # one flipped bit at each
        data = bytearray(checkpoint_bytes)
        data[offset] ^= 0x10
        cases.append(bytes(data))
    refused = 0
    for data in cases:
        (tmp_path / CHECKPOINT_NAME).write_bytes(data)
        try:
            ckpt = load_checkpoint(tmp_path)
        except CheckpointError as err:
            assert str(tmp_path) in str(err)
            refused += 1
            continue
        # a flip the zip layer ignores (e.g. a timestamp): the content must be the same
        assert ckpt.round == 2
        np.testing.assert_array_equal(ckpt.server["x"], good["server/x"])
    assert refused >= len(cases) - 10


@pytest.mark.parametrize("tamper", [
    "edited array", "edited meta", "lowered round", "lowered round and rows",
    "missing client arrays", "wrong num_clients", "no digest (format 1)", "malformed digest",
])
def test_a_tampered_checkpoint_is_refused(tmp_path, checkpoint_bytes, tamper):
    a = arrays_of(checkpoint_bytes)
    header = json.loads(str(a["header"]))
    if tamper == "edited array":  # the stored digest kept
        a["server/x"] = a["server/x"] + 0.01
        write(tmp_path, a, digest=False)
        np.savez(tmp_path / CHECKPOINT_NAME, **a)
        words = "does not match its SHA-256 digest"
    elif tamper == "edited meta":  # content digest recomputed, identity not
        meta = {**header["meta"], "config": {**header["meta"]["config"], "lr": 0.5}}
        write(tmp_path, with_header(a, meta=meta))
        words = "identity"
    elif tamper == "lowered round":
        write(tmp_path, with_header(a, round=1))
        words = "not the round of its last history row"
    elif tamper == "lowered round and rows":  # consistent header, but the server state's round
        write(tmp_path, with_header(a, round=1, rows=header["rows"][:2]))
        words = "server state"
    elif tamper == "missing client arrays":
        write(tmp_path, {k: v for k, v in a.items() if not k.startswith("client1/")})
        words = re.escape("holds the states of clients [0, 2]")
    elif tamper == "wrong num_clients":
        write(tmp_path, with_header(a, num_clients=2))
        words = "num_clients = 2"
    elif tamper == "no digest (format 1)":
        write(tmp_path, with_header(a, format=1), digest=False)
        words = "no content digest"
    else:
        a[DIGEST_KEY] = np.zeros(31, dtype=np.uint8)
        np.savez(tmp_path / CHECKPOINT_NAME, **a)
        words = "does not match its SHA-256 digest"
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(tmp_path)


def test_cli_resume_of_a_corrupt_checkpoint_exits_2(tmp_path, checkpoint_bytes, capsys):
    (tmp_path / CHECKPOINT_NAME).write_bytes(checkpoint_bytes[: len(checkpoint_bytes) // 2])
    assert main(["run", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is damaged and cannot be read" in err and "Traceback" not in err
    write(tmp_path, with_header(arrays_of(checkpoint_bytes), round=1))
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "is refused" in capsys.readouterr().err


def test_resume_refuses_flags_that_contradict_the_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", *FAST_FLAGS, "--checkpoint", "--out", str(run)]) == 0
    before = (run / CHECKPOINT_NAME).read_bytes()
    capsys.readouterr()
    argv = ["run", "--resume", str(run), "--rounds", "3", "--method", "fedzo", "--lr", "0.5",
            "--dim", "7", "--seed", "4", "--engine", "flower", "--fraction", "0.5",
            "--out", str(tmp_path / "elsewhere"), "--tensorboard", str(tmp_path / "tb")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    for flag in ("--method 'fedzo' (the checkpoint's: 'fzoos')", "--lr 0.5 (the checkpoint's: 0.01)",
                 "--dim 7 (the checkpoint's: 3)", "--seed 4", "--engine 'flower'", "--fraction 0.5",
                 "--out", "--tensorboard (not used by --resume)"):
        assert flag in err, (flag, err)
    assert (run / CHECKPOINT_NAME).read_bytes() == before and not (tmp_path / "elsewhere").exists()
    # flags that agree with the checkpoint are fine, as are --rounds and --workers
    agree = ["run", "--resume", str(run), "--rounds", "3", "--method", "fzoos", "--lr", "0.01",
             "--dim", "3", "--engine", "inprocess", "--out", str(run), "--workers", "1"]
    assert main(agree) == 0
    assert load_checkpoint(run).round == 3


def test_a_directory_another_run_writes_is_refused(tmp_path, checkpoint_bytes, capsys):
    (tmp_path / CHECKPOINT_NAME).write_bytes(checkpoint_bytes)
    with directory_lock(tmp_path):  # as a run in progress holds it
        with pytest.raises(DirectoryLockedError, match="pid"):
            with directory_lock(tmp_path):
                pass
        assert main(["run", "--resume", str(tmp_path), "--rounds", "3"]) == 2
        assert "is being written by another fedzoo run" in capsys.readouterr().err
    assert load_checkpoint(tmp_path).round == 2  # untouched
