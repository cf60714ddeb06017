"""Payload <-> Flower record mapping (fedzoo_server/records.py): round trips and hostile input."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedzoo import protocol
from fedzoo.config import RunConfig
from fedzoo.errors import PayloadError
from fedzoo.payload import MAX_ARRAY_ELEMENTS
from fedzoo_server.records import (
    ARRAYS,
    META,
    SCALARS,
    arrays_to_record,
    content_meta,
    content_to_payload,
    payload_to_content,
    record_to_arrays,
)
from tests.flower.inprocess import wire


def test_payload_round_trip_is_exact_over_the_wire():
    rng = np.random.default_rng(0)
    payload = {
        "x": rng.uniform(size=7),
        "rff-weights": rng.normal(size=200) * 1e-300,
        "num-queries": 351,
        "value-start": -0.1 + 1e-17,
        "round": np.int64(3),
        "rff-lengthscale": np.float64(1.5),
        "flag": True,
        "name": "fzoos",
        "empty": np.empty(0),
    }
    back = content_to_payload(wire(payload_to_content(payload, {"partition-id": 2})))
    assert back.keys() == payload.keys()
    for key, value in payload.items():
        if isinstance(value, np.ndarray):
            assert back[key].dtype == value.dtype and back[key].tobytes() == value.tobytes()
        else:
            plain = value.item() if isinstance(value, np.generic) else value
            assert back[key] == plain and type(back[key]) is type(plain)
    assert content_meta(wire(payload_to_content(payload, {"partition-id": 2}))) == {
        "partition-id": 2
    }


def test_meta_is_not_part_of_the_payload():
    content = payload_to_content({"x": np.zeros(2)}, {"partition-id": 0})
    assert set(content) == {ARRAYS, SCALARS, META}
    assert "partition-id" not in content_to_payload(content)
    assert content_meta(payload_to_content({"x": np.zeros(2)})) == {}


def test_client_state_round_trip_reproduces_the_state():
    config = RunConfig.from_mapping({"method": "fzoos", "rff-features": 50})
    state = protocol.new_client_state(config, 4)
    rng = np.random.default_rng(1)
    state.history.add(rng.uniform(size=(9, 4)), rng.normal(size=9))
    state.rff_own, state.cached_x, state.cached_value = (
        rng.normal(size=50),
        rng.uniform(size=4),
        0.25,
    )
    arrays = state.to_arrays()
    back = record_to_arrays(wire(RecordDict({"s": arrays_to_record(arrays)}))["s"])
    assert back.keys() == arrays.keys()
    for key in arrays:
        assert back[key].shape == arrays[key].shape and back[key].tobytes() == arrays[key].tobytes()
    restored = protocol.ClientState.from_arrays(back, config)
    assert np.array_equal(restored.history.X, state.history.X) and restored.cached_value == 0.25


def test_unencodable_values_are_refused_at_the_sender():
    with pytest.raises(TypeError, match="'bad'"):
        payload_to_content({"bad": [1.0, 2.0]})
    with pytest.raises(TypeError, match="numpy array"):
        arrays_to_record({"x": [1.0]})


def _content(**records):
    return RecordDict(records)


@pytest.mark.parametrize(
    "content, match",
    [
        (_content(**{"other": ConfigRecord({"a": 1})}), "unexpected record"),
        (_content(**{ARRAYS: ConfigRecord({"x": 1.0})}), "must be an ArrayRecord"),
        (_content(**{SCALARS: MetricRecord({"x": 1.0})}), "must be a ConfigRecord"),
        (
            _content(
                **{ARRAYS: arrays_to_record({"x": np.zeros(2)}), SCALARS: ConfigRecord({"x": 1.0})}
            ),
            "both",
        ),
        (
            _content(
                **{ARRAYS: ArrayRecord({"x": Array("float64", (3,), "torch.Tensor", b"abc")})}
            ),
            "numpy-serialised",
        ),
        (
            _content(
                **{ARRAYS: ArrayRecord({"x": Array("float64", (3,), "numpy.ndarray", b"not npy")})}
            ),
            "cannot decode",
        ),
        (
            _content(
                **{
                    ARRAYS: ArrayRecord(
                        {"x": Array("float64", (MAX_ARRAY_ELEMENTS + 1,), "numpy.ndarray", b"")}
                    )
                }
            ),
            "exceeds the limit",
        ),
    ],
)
def test_hostile_content_raises_payload_error_before_loading(content, match):
    with pytest.raises(PayloadError, match=match):
        content_to_payload(content)


def test_an_array_whose_data_disagrees_with_its_announced_shape_is_refused():
    good = Array.from_numpy_ndarray(np.zeros(4))
    liar = Array(good.dtype, (2,), good.stype, good.data)
    with pytest.raises(PayloadError, match="announced shape"):
        content_to_payload(RecordDict({ARRAYS: ArrayRecord({"x": liar})}))


def test_object_arrays_cannot_be_unpickled():
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    record = ArrayRecord({"x": Array("object", (1,), "numpy.ndarray", buf.getvalue())})
    with pytest.raises(PayloadError, match="cannot decode"):
        content_to_payload(RecordDict({ARRAYS: record}))


# --------------------------------------------------------------------------------------
# Reply size, checked before anything is decoded (ReplyLimits from the protocol's specs)
# --------------------------------------------------------------------------------------
def _fzoos_limits():
    from fedzoo_server.app import reply_limits

    return reply_limits(RunConfig.from_mapping({"method": "fzoos", "rff-features": 200}), 10)


def _garbage(n):
    """An array announcing n float64 elements whose data cannot be decoded at all: a
    check that refuses it for its size must come before any decoding."""
    return Array("float64", (n,), "numpy.ndarray", b"garbage")


def test_reply_limits_come_from_the_protocol_reply_specs():
    from fedzoo_server.app import reply_limits

    config = RunConfig.from_mapping({"method": "fzoos", "rff-features": 200})
    limits = _fzoos_limits()
    specs = [protocol.train_reply_spec(config, 10), protocol.sync_reply_spec(config, 10),
             protocol.EVALUATE_REPLY_SPEC]
    assert limits.max_keys == max(len(s) for s in specs) == 5  # train: + correction-dropped
    assert limits.max_elements == protocol.max_reply_elements(config, 10) == 200
    assert limits.max_total_elements == 200  # the sync reply: its RFF weights
    scaffold2 = reply_limits(RunConfig.from_mapping({"method": "scaffold2"}), 10)
    assert (scaffold2.max_keys, scaffold2.max_elements, scaffold2.max_total_elements) == (6, 10, 20)
    # every honest reply passes
    reply = {"value": 1.0, "num-queries": 3, "total-queries": 9, "rff-weights": np.zeros(200)}
    assert content_to_payload(wire(payload_to_content(reply, {"partition-id": 1})),
                              limits=limits).keys() == reply.keys()


def test_a_reply_with_too_many_arrays_is_refused_before_decoding():
    record = ArrayRecord({f"k{i}": _garbage(1) for i in range(50)})
    with pytest.raises(PayloadError, match="50 keys, more than the 5"):
        content_to_payload(RecordDict({ARRAYS: record}), limits=_fzoos_limits())
    with pytest.raises(PayloadError, match="cannot decode"):  # without limits: decoded
        content_to_payload(RecordDict({ARRAYS: record}))


def test_a_reply_with_too_many_scalars_or_metadata_keys_is_refused():
    scalars = ConfigRecord({f"k{i}": 1.0 for i in range(6)})
    with pytest.raises(PayloadError, match="6 keys"):
        content_to_payload(RecordDict({SCALARS: scalars}), limits=_fzoos_limits())
    meta = ConfigRecord({f"m{i}": 1 for i in range(100)})
    with pytest.raises(PayloadError, match="100 metadata keys"):
        content_to_payload(RecordDict({META: meta}), limits=_fzoos_limits())
    listed = ConfigRecord({"value": [1.0] * 1000})
    with pytest.raises(PayloadError, match="lists of 1000 values"):
        content_to_payload(RecordDict({SCALARS: listed}), limits=_fzoos_limits())


def test_arrays_each_within_the_limit_but_too_many_elements_in_all_are_refused():
    record = ArrayRecord({"x": _garbage(150), "rff-weights": _garbage(150)})  # 2 x 150 > 200
    with pytest.raises(PayloadError, match="more than 200 elements in all"):
        content_to_payload(RecordDict({ARRAYS: record}), limits=_fzoos_limits())


def _npy(header_shape, dtype="<f8", data=b""):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": header_shape}
    )
    return buf.getvalue() + data


def test_an_npy_header_larger_than_the_announced_shape_is_refused_before_allocating():
    # np.load would allocate what the header says (8 TB here) before reading any data
    liar = Array("float64", (1,), "numpy.ndarray", _npy((10**12,)))
    with pytest.raises(PayloadError, match=r"announced shape \(1,\), got \(1000000000000,\)"):
        content_to_payload(RecordDict({ARRAYS: ArrayRecord({"x": liar})}))


def test_data_shorter_or_longer_than_its_header_is_refused():
    short = Array("float64", (4,), "numpy.ndarray", _npy((4,), data=b"\0" * 8))
    long = Array("float64", (4,), "numpy.ndarray", _npy((4,), data=b"\0" * 64))
    for bad in (short, long):
        with pytest.raises(PayloadError, match="data bytes for 4 elements"):
            content_to_payload(RecordDict({ARRAYS: ArrayRecord({"x": bad})}))
