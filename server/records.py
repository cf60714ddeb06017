"""Payloads <-> Flower records: the one place where the mapping is written.

A fedzoo payload (:mod:`fedzoo.payload`) is a flat dict with kebab-case keys whose values
are numpy arrays or Python scalars. On the wire it becomes a :class:`flwr.app.RecordDict`
with up to three records:

* ``"fedzoo.arrays"`` (:class:`~flwr.app.ArrayRecord`): every numpy array, one
  :class:`~flwr.app.Array` per key (numpy serialisation, dtype and shape kept, so float64
  arrays come back bit for bit);
* ``"fedzoo.scalars"`` (:class:`~flwr.app.ConfigRecord`): every scalar (int, float, bool,
  str); numpy scalars are converted to their Python twins;
* ``"fedzoo.meta"`` (:class:`~flwr.app.ConfigRecord`, optional): transport metadata that is
  *not* part of the protocol payload, e.g. the sender's ``partition-id``. It never reaches
  :func:`fedzoo.payload.validate`.

Decoding never trusts the sender: an unknown record, a key present twice, an array that
is not a numpy-serialised array or that announces more than
:data:`fedzoo.payload.MAX_ARRAY_ELEMENTS` elements raises :class:`PayloadError` before any
data is loaded. Whether the decoded payload is what the protocol expects (keys, lengths,
finiteness) is then checked by the core (``fedzoo.protocol.collect``).

Client state (``ClientState.to_arrays()``, arrays of any shape) is stored in
``context.state`` as one ArrayRecord with :func:`arrays_to_record` /
:func:`record_to_arrays`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedzoo.errors import PayloadError
from fedzoo.payload import MAX_ARRAY_ELEMENTS

ARRAYS = "fedzoo.arrays"
SCALARS = "fedzoo.scalars"
META = "fedzoo.meta"
_RECORDS = (ARRAYS, SCALARS, META)
_NUMPY_STYPE = "numpy.ndarray"


def arrays_to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """An ArrayRecord holding each array under its key (any shape, dtype kept)."""
    record = ArrayRecord()
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise TypeError(f"Expected a numpy array for {key!r}, got {type(value).__name__}.")
        record[key] = Array.from_numpy_ndarray(np.ascontiguousarray(value))
    return record


def record_to_arrays(
    record: ArrayRecord, *, source: str = "record", max_elements: int | None = None
) -> dict[str, np.ndarray]:
    """The arrays of ``record`` by key; raises PayloadError for anything but sane arrays.

    ``max_elements`` (default :data:`fedzoo.payload.MAX_ARRAY_ELEMENTS`) caps each array's
    announced size, checked before any data is decoded: a reply the protocol expects to
    hold at most M numbers cannot make the server allocate more.
    """
    limit = MAX_ARRAY_ELEMENTS if max_elements is None else min(max_elements, MAX_ARRAY_ELEMENTS)
    out: dict[str, np.ndarray] = {}
    for key, array in record.items():
        where = f"{source}[{key!r}]"
        if array.stype != _NUMPY_STYPE:
            raise PayloadError(
                f"{where}: expected a numpy-serialised array, got stype {array.stype!r}."
            )
        size = math.prod(int(n) for n in array.shape)
        if size > limit:
            raise PayloadError(
                f"{where}: an array of shape {tuple(array.shape)} exceeds the limit of "
                f"{limit} elements."
            )
        try:
            value = array.numpy()
        except (TypeError, ValueError, OSError) as err:
            raise PayloadError(f"{where}: cannot decode the array: {err}") from err
        if value.shape != tuple(array.shape):
            raise PayloadError(f"{where}: announced shape {tuple(array.shape)}, got {value.shape}.")
        out[key] = value
    return out


def _scalar(value: Any, key: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (bool, int, float, str)):
        raise TypeError(
            f"Payload key {key!r}: expected a numpy array or a scalar (int, float, bool, "
            f"str), got {type(value).__name__}."
        )
    return value


def payload_to_content(
    payload: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> RecordDict:
    """Encode a payload (and optional transport metadata) as message content."""
    arrays = {k: v for k, v in payload.items() if isinstance(v, np.ndarray)}
    scalars = {k: _scalar(v, k) for k, v in payload.items() if not isinstance(v, np.ndarray)}
    content = RecordDict()
    content[ARRAYS] = arrays_to_record(arrays)
    content[SCALARS] = ConfigRecord(scalars)
    if meta:
        content[META] = ConfigRecord({k: _scalar(v, k) for k, v in meta.items()})
    return content


def content_to_payload(
    content: RecordDict, *, source: str = "message", max_elements: int | None = None
) -> dict[str, Any]:
    """Decode message content into a payload (transport metadata left out); arrays are
    capped at ``max_elements`` elements each (see :func:`record_to_arrays`).

    Raises:
        PayloadError: unknown or mistyped records, a key both an array and a scalar, or
            an array that cannot be decoded safely.
    """
    unknown = [name for name in content if name not in _RECORDS]
    if unknown:
        raise PayloadError(f"{source}: unexpected record(s) {unknown}; expected {list(_RECORDS)}.")
    payload: dict[str, Any] = {}
    if ARRAYS in content:
        record = content[ARRAYS]
        if not isinstance(record, ArrayRecord):
            raise PayloadError(
                f"{source}: record {ARRAYS!r} must be an ArrayRecord, got {type(record).__name__}."
            )
        payload.update(record_to_arrays(record, source=source, max_elements=max_elements))
    if SCALARS in content:
        record = content[SCALARS]
        if not isinstance(record, ConfigRecord):
            raise PayloadError(
                f"{source}: record {SCALARS!r} must be a ConfigRecord, got {type(record).__name__}."
            )
        twice = sorted(set(record) & set(payload))
        if twice:
            raise PayloadError(f"{source}: key(s) {twice} sent both as an array and as a scalar.")
        payload.update(record.items())
    return payload


def content_meta(content: RecordDict) -> dict[str, Any]:
    """The transport metadata of a message ({} when absent or not a ConfigRecord)."""
    record = content.get(META) if META in content else None
    return dict(record.items()) if isinstance(record, ConfigRecord) else {}
