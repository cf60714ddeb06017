"""Message payloads: flat dicts of arrays and scalars, validated in one place.

A payload maps kebab-case keys to float64 1-d arrays or scalars (int, float, str, bool),
so a transport (Flower records, JSON, npz) carries it unchanged. :func:`validate` checks a
received payload against a spec (required keys, array lengths, finiteness, size and
magnitude limits: :mod:`fedzoo.limits`) and raises :class:`~fedzoo.errors.PayloadError` naming what was wrong and what is
expected; the caller then drops the payload without touching any state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedzoo.errors import PayloadError
from fedzoo.limits import MAX_ABS_ARRAY, MAX_ABS_VALUE, MAX_ARRAY_ELEMENTS, MAX_INT

Payload = dict[str, Any]
SCALAR_BYTES = 8
__all__ = ["MAX_ARRAY_ELEMENTS", "ArraySpec", "Payload", "ScalarSpec", "payload_nbytes", "validate"]


@dataclass(frozen=True)
class ArraySpec:
    """An expected float array of exactly ``length`` elements (finite unless allowed).

    ``max_abs``: the largest |entry| an honest sender can produce (None:
    :data:`fedzoo.limits.MAX_ABS_ARRAY`); larger entries are refused.
    """

    length: int
    finite: bool = True
    unit_box: bool = False
    optional: bool = False
    max_abs: float | None = None


@dataclass(frozen=True)
class ScalarSpec:
    """An expected scalar: kind "int" (>= minimum, <= maximum; None:
    :data:`fedzoo.limits.MAX_INT`) or "float" (finite, |value| <= max_abs; None:
    :data:`fedzoo.limits.MAX_ABS_VALUE`)."""

    kind: str = "float"
    minimum: float | None = None
    optional: bool = False
    maximum: float | None = None
    max_abs: float | None = None


def payload_nbytes(payload: Mapping[str, Any]) -> int:
    """Bytes a payload carries: array data plus 8 bytes per scalar (keys not counted)."""
    total = 0
    for value in payload.values():
        total += value.nbytes if isinstance(value, np.ndarray) else SCALAR_BYTES
    return total


def validate(
    payload: Any, spec: Mapping[str, ArraySpec | ScalarSpec], *, source: str = "payload"
) -> Payload:
    """Check ``payload`` against ``spec``; return a clean copy (arrays as float64).

    Keys not in the spec are an error too: a reply is exactly what the protocol expects.
    """
    if not isinstance(payload, Mapping):
        raise PayloadError(f"{source}: expected a dict of arrays and scalars, got {type(payload).__name__}.")
    missing = [k for k, rule in spec.items() if k not in payload and not rule.optional]
    if missing:
        raise PayloadError(f"{source}: missing key(s) {missing}; expected keys {sorted(spec)}.")
    extra = [k for k in payload if k not in spec]
    if extra:
        raise PayloadError(f"{source}: unexpected key(s) {extra}; expected keys {sorted(spec)}.")
    clean: Payload = {}
    for key, rule in spec.items():
        if key not in payload:
            continue
        value = payload[key]
        if isinstance(rule, ArraySpec):
            clean[key] = _check_array(value, rule, f"{source}[{key!r}]")
        else:
            clean[key] = _check_scalar(value, rule, f"{source}[{key!r}]")
    return clean


def _check_array(value: Any, rule: ArraySpec, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise PayloadError(f"{where}: expected an array of {rule.length} floats, got {type(value).__name__}.")
    if value.size > MAX_ARRAY_ELEMENTS or value.shape != (rule.length,):
        raise PayloadError(f"{where}: expected shape ({rule.length},), got {value.shape}.")
    if value.dtype.kind not in "fiu":
        raise PayloadError(f"{where}: expected a numeric array, got dtype {value.dtype}.")
    arr = value.astype(np.float64)
    if rule.finite and not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise PayloadError(f"{where}: expected finite values, got {arr[bad]} at index {bad}.")
    if rule.unit_box and (arr.min() < -1e-9 or arr.max() > 1 + 1e-9):
        raise PayloadError(
            f"{where}: expected a point in the unit box, got values in [{arr.min():.4g}, {arr.max():.4g}]."
        )
    bound = MAX_ABS_ARRAY if rule.max_abs is None else rule.max_abs
    if arr.size and rule.finite and not rule.unit_box:
        biggest = float(np.max(np.abs(arr)))
        if biggest > bound:
            bad = int(np.argmax(np.abs(arr)))
            raise PayloadError(
                f"{where}: expected entries of magnitude <= {bound:.4g} (what an honest sender "
                f"can produce), got {arr[bad]:.4g} at index {bad}."
            )
    return np.clip(arr, 0.0, 1.0) if rule.unit_box else arr


def _check_scalar(value: Any, rule: ScalarSpec, where: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(f"{where}: expected a {rule.kind} scalar, got {value!r}.")
    if rule.kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise PayloadError(f"{where}: expected an integer, got {value!r}.")
        value = int(value)
        maximum = MAX_INT if rule.maximum is None else rule.maximum
        if value > maximum:
            raise PayloadError(f"{where}: expected an integer <= {maximum:.0f}, got {value!r}.")
    elif not np.isfinite(value):
        raise PayloadError(f"{where}: expected a finite number, got {value!r}.")
    else:
        value = float(value)
        bound = MAX_ABS_VALUE if rule.max_abs is None else rule.max_abs
        if abs(value) > bound:
            raise PayloadError(f"{where}: expected a number of magnitude <= {bound:.4g}, got {value!r}.")
        if rule.maximum is not None and value > rule.maximum:
            raise PayloadError(f"{where}: expected a value <= {rule.maximum}, got {value!r}.")
    if rule.minimum is not None and value < rule.minimum:
        raise PayloadError(f"{where}: expected a value >= {rule.minimum}, got {value!r}.")
    return value
