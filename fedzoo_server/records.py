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
is not a numpy-serialised array, that announces more than
:data:`fedzoo.payload.MAX_ARRAY_ELEMENTS` elements, or whose ``.npy`` header (read before
its data) disagrees with the announced shape or the data's length, raises
:class:`PayloadError` before any data is loaded. With :class:`ReplyLimits` (the server
passes those of the protocol's reply specs), a reply with more keys or more elements in
all than any reply of the run may carry is refused the same way, before any array is
decoded. Whether the decoded payload is what the protocol expects (keys, lengths,
finiteness) is then checked by the core (``fedzoo.protocol.collect``).

Client state (``ClientState.to_arrays()``, arrays of any shape) is stored in
``context.state`` as one ArrayRecord with :func:`arrays_to_record` /
:func:`record_to_arrays`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MessageType, RecordDict

from fedzoo.errors import PayloadError
from fedzoo.payload import MAX_ARRAY_ELEMENTS, ArraySpec, ScalarSpec

# The Flower message types of the fedzoo app, shared by the ServerApp and the ClientApp.
TRAIN = MessageType.TRAIN  # "train": fedzoo.protocol.client_train
SYNC = "query.sync"  # fedzoo.protocol.client_sync (methods with a sync exchange)
EVALUATE = "query.evaluate"  # fedzoo.protocol.client_evaluate (final evaluation)
DESCRIBE = "query.describe"  # before round 1: partition id, dim and objective kind
#: The ClientState's ArrayRecord in the ClientApp's context.state.
STATE_KEY = "fedzoo.client-state"

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


@dataclass(frozen=True)
class ReplyLimits:
    """How much one decoded reply may hold, checked before any array is decoded.

    Attributes:
        max_keys: payload keys (arrays and scalars together; also the transport
            metadata's keys).
        max_elements: elements of one array.
        max_total_elements: elements of all arrays together (and of list-valued scalars).
    """

    max_keys: int
    max_elements: int
    max_total_elements: int

    @classmethod
    def from_specs(cls, *specs: Mapping[str, ArraySpec | ScalarSpec]) -> ReplyLimits:
        """The limits of replies that follow one of ``specs`` (the largest of each)."""
        def lengths(spec: Mapping[str, ArraySpec | ScalarSpec]) -> list[int]:
            return [rule.length for rule in spec.values() if isinstance(rule, ArraySpec)]

        return cls(
            max_keys=max(len(spec) for spec in specs),
            max_elements=max(max(lengths(spec), default=0) for spec in specs),
            max_total_elements=max(sum(lengths(spec)) for spec in specs),
        )


def _npy_header(data: bytes, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from the ``.npy`` header of ``data``, reading nothing
    else: ``np.load`` allocates what the header says before it reads the data."""
    fp = io.BytesIO(data)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise PayloadError(f"{where}: cannot decode the array: {err}") from err
    if dtype.hasobject:
        raise PayloadError(f"{where}: cannot decode the array: dtype {dtype} holds Python objects.")
    return tuple(int(n) for n in shape), dtype, fp.tell()


def record_to_arrays(
    record: ArrayRecord,
    *,
    source: str = "record",
    max_elements: int | None = None,
    max_total_elements: int | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of ``record`` by key; raises PayloadError for anything but sane arrays.

    ``max_elements`` (default :data:`fedzoo.payload.MAX_ARRAY_ELEMENTS`) caps each array's
    announced size and ``max_total_elements`` (default: none) the sum over the record;
    both are checked for every array before any is decoded, and each array's ``.npy``
    header is checked against its announced shape and its data's length before the data
    is loaded: a reply the protocol expects to hold at most M numbers cannot make the
    server allocate more.
    """
    limit = MAX_ARRAY_ELEMENTS if max_elements is None else min(max_elements, MAX_ARRAY_ELEMENTS)
    announced: dict[str, tuple[int, ...]] = {}
    total = 0
    for key, array in record.items():  # 1. announced sizes only
        where = f"{source}[{key!r}]"
        if array.stype != _NUMPY_STYPE:
            raise PayloadError(
                f"{where}: expected a numpy-serialised array, got stype {array.stype!r}."
            )
        announced[key] = tuple(int(n) for n in array.shape)
        size = math.prod(announced[key])
        if size > limit:
            raise PayloadError(
                f"{where}: an array of shape {announced[key]} exceeds the limit of {limit} "
                "elements."
            )
        total += size
        if max_total_elements is not None and total > max_total_elements:
            raise PayloadError(
                f"{source}: its arrays hold more than {max_total_elements} elements in all (the "
                f"most a reply may carry); {total} by {key!r}."
            )
    for key, array in record.items():  # 2. each .npy header against its announcement
        where = f"{source}[{key!r}]"
        shape, dtype, offset = _npy_header(array.data, where)
        if shape != announced[key]:
            raise PayloadError(f"{where}: announced shape {announced[key]}, got {shape}.")
        size = math.prod(shape)
        if len(array.data) - offset != size * dtype.itemsize:
            raise PayloadError(
                f"{where}: cannot decode the array: {len(array.data) - offset} data bytes for "
                f"{size} elements of {dtype}."
            )
    out: dict[str, np.ndarray] = {}
    for key, array in record.items():  # 3. the data, now bounded
        where = f"{source}[{key!r}]"
        try:
            value = array.numpy()
        except (TypeError, ValueError, OSError) as err:
            raise PayloadError(f"{where}: cannot decode the array: {err}") from err
        if value.shape != announced[key]:
            raise PayloadError(f"{where}: announced shape {announced[key]}, got {value.shape}.")
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


def _check_counts(content: RecordDict, limits: ReplyLimits, source: str) -> None:
    """Refuse content with more keys or elements than ``limits`` allow (nothing decoded)."""
    arrays = content.get(ARRAYS) if ARRAYS in content else None
    scalars = content.get(SCALARS) if SCALARS in content else None
    keys = (len(arrays) if isinstance(arrays, ArrayRecord) else 0) + (
        len(scalars) if isinstance(scalars, ConfigRecord) else 0
    )
    if keys > limits.max_keys:
        raise PayloadError(
            f"{source}: {keys} keys, more than the {limits.max_keys} any reply may carry."
        )
    meta = content.get(META) if META in content else None
    if isinstance(meta, ConfigRecord) and len(meta) > limits.max_keys:
        raise PayloadError(
            f"{source}: {len(meta)} metadata keys, more than the {limits.max_keys} allowed."
        )
    listed = sum(len(v) for v in scalars.values() if isinstance(v, list)) if isinstance(
        scalars, ConfigRecord) else 0
    if listed > limits.max_total_elements:
        raise PayloadError(
            f"{source}: its scalars hold lists of {listed} values, more than the "
            f"{limits.max_total_elements} elements any reply may carry."
        )


def content_to_payload(
    content: RecordDict,
    *,
    source: str = "message",
    max_elements: int | None = None,
    limits: ReplyLimits | None = None,
) -> dict[str, Any]:
    """Decode message content into a payload (transport metadata left out); arrays are
    capped at ``max_elements`` elements each (see :func:`record_to_arrays`). With
    ``limits`` the number of keys, each array's elements and all arrays' elements together
    are checked against them before any array is decoded.

    Raises:
        PayloadError: unknown or mistyped records, a key both an array and a scalar, an
            array that cannot be decoded safely, or more than ``limits`` allow.
    """
    unknown = [name for name in content if name not in _RECORDS]
    if unknown:
        raise PayloadError(f"{source}: unexpected record(s) {unknown}; expected {list(_RECORDS)}.")
    total_limit = None
    if limits is not None:
        _check_counts(content, limits, source)
        max_elements = limits.max_elements if max_elements is None else min(max_elements, limits.max_elements)
        total_limit = limits.max_total_elements
    payload: dict[str, Any] = {}
    if ARRAYS in content:
        record = content[ARRAYS]
        if not isinstance(record, ArrayRecord):
            raise PayloadError(
                f"{source}: record {ARRAYS!r} must be an ArrayRecord, got {type(record).__name__}."
            )
        payload.update(record_to_arrays(
            record, source=source, max_elements=max_elements, max_total_elements=total_limit
        ))
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
