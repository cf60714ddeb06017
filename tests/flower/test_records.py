"""Payload <-> Flower record mapping (server/records.py): round trips and hostile input."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedzoo import protocol
from fedzoo.config import RunConfig
from fedzoo.errors import PayloadError
from fedzoo.payload import MAX_ARRAY_ELEMENTS
from server.records import (
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
