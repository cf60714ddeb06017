"""Corrupt client snapshots (``fedzoo_client.persistence``) are detected and refused, naming the
file (:class:`fedzoo_client.persistence.SnapshotError`): a truncated file, flipped bits anywhere in
the file, and a well-formed file whose array was edited (digest mismatch). The client never
falls back to an older snapshot: that would continue silently from a state other than the
one the server resumes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from fedzoo.errors import ConfigError
from fedzoo_client.persistence import (
    DIGEST_KEY,
    PARTITION_KEY,
    SnapshotError,
    StateStore,
    content_digest,
    read_snapshot,
)

GOOD = {"v": np.array([21.0]), "history": np.arange(40.0).reshape(8, 5)}
NEWEST = {"v": np.array([30.0]), "history": np.arange(40.0, 80.0).reshape(8, 5)}


def store_with_two(tmp_path) -> StateStore:
    """Snapshots (2, 1) = GOOD and (3, 0) = NEWEST; the tests damage (3, 0)."""
    store = StateStore(tmp_path, "run", 0)
    store.save((2, 1), GOOD)
    store.save((3, 0), NEWEST)
    return store


def assert_falls_back(store: StateStore, caplog: pytest.LogCaptureFixture) -> None:
    """The damaged newest snapshot is refused (never skipped for the older one)."""
    with pytest.raises(SnapshotError, match=r"state-000003-0\.npz is refused"):
        store.load_before((4, 0))


def test_an_intact_snapshot_round_trips_with_its_digest(tmp_path):
    store = store_with_two(tmp_path)
    tag, arrays = store.load_before((4, 0))
    assert tag == (3, 0) and DIGEST_KEY not in arrays
    for key, value in NEWEST.items():
        np.testing.assert_array_equal(arrays[key], value)
    with np.load(store.path((3, 0))) as raw:
        assert raw[DIGEST_KEY].tobytes() == content_digest(
            {**NEWEST, PARTITION_KEY: np.array([0], dtype=np.int64)})


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, 0.9, -1])
def test_a_truncated_snapshot_is_skipped(tmp_path, caplog, keep):
    store = store_with_two(tmp_path)
    path = store.path((3, 0))
    data = path.read_bytes()
    cut = keep if isinstance(keep, int) and keep >= 0 else None
    if cut is None:
        cut = len(data) - 1 if keep == -1 else int(len(data) * keep)
    path.write_bytes(data[:cut])
    assert_falls_back(store, caplog)


def test_bit_flips_in_the_array_data_are_skipped(tmp_path, caplog):
    store = store_with_two(tmp_path)
    path = store.path((3, 0))
    data = bytearray(path.read_bytes())
    offset = bytes(data).index(NEWEST["history"].tobytes())  # npz is stored uncompressed
    data[offset + 17] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="BadZipFile"):  # what used to escape the old except clause
        read_snapshot(path)
    assert_falls_back(store, caplog)


def test_a_bit_flip_anywhere_never_crashes_and_never_yields_wrong_arrays(tmp_path):
    """Flip one bit at each of many offsets (headers, data, central directory): the load
    returns either the newest snapshot with exactly its arrays (the flipped bit was in a
    field nothing reads, e.g. a timestamp) or refuses it naming the file; nothing else."""
    store = store_with_two(tmp_path)
    path = store.path((3, 0))
    original = path.read_bytes()
    offsets = sorted({*range(0, len(original), max(len(original) // 97, 1)),
                      *range(max(len(original) - 64, 0), len(original))})  # fmt: skip
    refused = 0
    for offset in offsets:
        damaged = bytearray(original)
        damaged[offset] ^= 1 << (offset % 8)
        path.write_bytes(bytes(damaged))
        try:
            found = store.load_before((4, 0))
        except SnapshotError as err:
            assert "state-000003-0.npz is refused" in str(err), offset
            refused += 1
            continue
        assert found is not None and found[0] == (3, 0), offset
        assert sorted(found[1]) == sorted(NEWEST), offset
        for key, value in NEWEST.items():
            np.testing.assert_array_equal(found[1][key], value, err_msg=f"offset {offset}")
    assert refused > len(offsets) // 2  # most flips are detected, not harmless


def _rewrite(path, arrays) -> None:
    """Write ``arrays`` to ``path`` as a well-formed npz (fresh zip CRCs)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def test_an_edited_array_in_a_well_formed_file_fails_its_digest(tmp_path, caplog):
    store = store_with_two(tmp_path)
    path = store.path((3, 0))
    with np.load(path) as raw:
        arrays = {k: raw[k] for k in raw.files}
    arrays["v"] = np.array([31.0])  # a plausible value, the digest kept as it was
    _rewrite(path, arrays)
    with np.load(path) as raw:  # the zip itself is valid
        assert raw["v"][0] == 31.0
    assert_falls_back(store, caplog)


@pytest.mark.parametrize(
    "edit",
    ["renamed array", "dtype changed", "reshaped", "array dropped", "digest malformed"],
)
def test_names_dtypes_and_shapes_are_covered_by_the_digest(tmp_path, caplog, edit):
    store = store_with_two(tmp_path)
    path = store.path((3, 0))
    with np.load(path) as raw:
        arrays = {k: raw[k] for k in raw.files}
    if edit == "renamed array":
        arrays["w"] = arrays.pop("v")
    elif edit == "dtype changed":
        arrays["history"] = arrays["history"].view(np.int64)  # same bytes, other dtype
    elif edit == "reshaped":
        arrays["history"] = arrays["history"].reshape(5, 8)  # same bytes, other shape
    elif edit == "array dropped":
        del arrays["v"]
    else:
        arrays[DIGEST_KEY] = arrays[DIGEST_KEY][:16]
    _rewrite(path, arrays)
    assert_falls_back(store, caplog)


def test_all_snapshots_corrupt_is_refused_not_a_fresh_start(tmp_path):
    store = store_with_two(tmp_path)
    for tag in store.tags():
        store.path(tag).write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(SnapshotError, match="damaged"):
        store.load_before((4, 0))


def test_a_snapshot_without_a_digest_is_skipped(tmp_path, caplog):
    """A damaged zip directory can list only some members without raising (here: the
    digest's entry is lost), so a file without a digest is never trusted."""
    store = store_with_two(tmp_path)
    _rewrite(store.path((3, 0)), NEWEST)  # well-formed, arrays intact, no digest
    with pytest.raises(SnapshotError, match="no content digest"):
        store.load_before((4, 0))


def test_the_digest_key_is_reserved(tmp_path):
    with pytest.raises(ConfigError, match="reserved key"):
        StateStore(tmp_path, "run", 0).save((1, 0), {DIGEST_KEY: np.zeros(32, np.uint8)})
