"""What a saved state may hold: every array's name, dtype and shape, from the run's configuration.

Checkpoints (:mod:`fedzoo.checkpoint`) and Flower client snapshots (:mod:`fedzoo_client.persistence`)
hold the flat arrays of :meth:`fedzoo.state.ServerState.to_arrays` and
:meth:`fedzoo.state.ClientState.to_arrays`. Before a saved file's arrays are decoded, the
shapes its ``.npy`` headers declare are checked here against the run's configuration: an
array no method writes, another dtype, a dimension other than ``dim`` or ``rff-features``, a
history longer than ``history-max``, or one dimension that disagrees between two arrays
that share it (``history-x`` rows and ``history-y``) is refused with one line naming the
array, what it declares and what is expected. A declared shape therefore bounds what is
decompressed, whatever the file claims elsewhere.

After decoding, :func:`check_values` checks what the shapes cannot (the stored ``dim``, the
client ids of the server's query totals, counts that are not negative), and
:func:`check_round_trip` that the state built from the arrays writes them back unchanged
(an array of another method, or one the state would drop, is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedzoo.limits import MAX_ARRAY_ELEMENTS

F8, F4, I8 = "<f8", "<f4", "<i8"

#: Symbols of a shape: ``d`` the dimension, ``M`` rff-features (both exact); the others are
#: free but bounded (:meth:`Bounds.cap`) and must agree between the arrays of one state.
SERVER: dict[str, tuple[str, tuple[Any, ...]]] = {
    "x": (F8, ("d",)), "round": (F8, (1,)),
    "query-total-ids": (I8, ("q",)), "query-totals": (I8, ("q",)),
    "best-x": (F8, ("d",)), "best-value": (F8, (1,)), "lr-scale": (F8, (1,)),
    "rff-lengthscale": (F8, (1,)), "rff-global": (F8, ("M",)),
    "scaffold-c": (F8, ("d",)),
    "vertex-start": (F8, ("d",)), "square-center": (F8, ("d",)), "square-weights": (F8, ("w",)),
    "square-started": (F8, (1,)),
    "cma-x0": (F8, ("d",)), "cma-told": (F8, ("t", "P")), "cma-mean": (F8, ("d",)),
    "cma-sigma": (F8, (1,)),
    "ng-x0": (F8, ("d",)), "ng-told": (F8, ("t", "b")), "ng-recommendation": (F8, ("d",)),
}
CLIENT: dict[str, tuple[str, tuple[Any, ...]]] = {
    "dim": (F8, (1,)), "total-queries": (I8, (1,)),
    "cached-x": (F8, ("d",)), "local-x": (F8, ("d",)), "cached-value": (F8, (1,)),
    "history-x": (F8, ("h", "d")), "history-y": (F8, ("h",)), "history-first-id": (I8, (1,)),
    "gp-hyper": (F8, (3,)), "rff-own": (F8, ("M",)),
    "rff-cache-ids": (I8, ("c",)), "rff-cache-gram": (F4, ("c", "c")), "rff-cache-key": (F8, ("k",)),
    "scaffold-own": (F8, ("d",)),
    "square-points": (F8, ("p", "d")), "square-values": (F8, ("p",)),
    "vertex-x": (F8, ("d",)), "vertex-value": (F8, (1,)), "own-weights": (F8, ("w",)),
    "sg-features": (F8, ("s", "w")), "sg-values": (F8, ("s",)),
}


@dataclass(frozen=True)
class Bounds:
    """What the run's configuration allows: ``dim``, ``rff_features`` exactly; ``clients``,
    ``rows`` (history and cache rows), ``rounds`` (CMA-ES's told rows) and ``popsize`` at most."""

    dim: int
    rff_features: int
    clients: int
    rows: int
    rounds: int
    popsize: int

    @classmethod
    def of(cls, config: Any, dim: int, clients: int, rounds: int) -> Bounds:
        """The bounds of a run of ``config`` (a :class:`fedzoo.config.RunConfig`)."""
        try:
            from fedzoo.methods.cma import popsize

            pop = popsize(config, dim)
        except Exception:  # noqa: BLE001 - only CMA-ES states have the array it bounds
            pop = 0
        rows = max(int(config.history_max), int(config.rff_history), int(config.gp_history), 1000)
        return cls(int(dim), int(config.rff_features), int(clients), rows, int(rounds), pop)

    def cap(self, symbol: str) -> int:
        return {"q": self.clients, "h": self.rows, "c": self.rows, "k": 16, "p": self.rows,
                "s": self.rows, "b": self.rows, "w": (self.dim + 1) * (self.dim + 2) // 2 + 16,
                "t": self.rounds}.get(symbol, MAX_ARRAY_ELEMENTS)


def check_declared(declared: Mapping[str, tuple[np.dtype, tuple[int, ...]]], role: str,
                   bounds: Bounds) -> None:
    """Refuse a state whose arrays (name -> (dtype, shape), as their headers declare them)
    are not what a ``role`` ("server" or "client") state of this run writes.

    Raises:
        ValueError: one line naming the array, what it declares and what is expected.
    """
    spec = SERVER if role == "server" else CLIENT
    exact = {"d": bounds.dim, "M": bounds.rff_features, "P": bounds.popsize}
    seen: dict[str, tuple[int, str]] = {}
    for key in sorted(declared):
        dtype, shape = declared[key]
        if key not in spec:
            raise ValueError(f"{role} array {key!r} is not one a {role} state holds")
        want_dtype, pattern = spec[key]
        if np.dtype(dtype).str != want_dtype:
            raise ValueError(f"{role} array {key!r} has dtype {np.dtype(dtype).str}, expected {want_dtype}")
        if len(shape) != len(pattern):
            raise ValueError(f"{role} array {key!r} has shape {shape}, expected {len(pattern)} dimension(s)")
        for n, sym in zip(shape, pattern):
            if isinstance(sym, int):
                ok, want = n == sym, str(sym)
            elif sym in exact:
                ok, want = n == exact[sym], f"{exact[sym]} ({'dim' if sym == 'd' else 'rff-features' if sym == 'M' else 'popsize'})"
            elif sym in seen and seen[sym][0] != n:
                ok, want = False, f"{seen[sym][0]} (as in {seen[sym][1]!r})"
            else:
                ok, want = n <= bounds.cap(sym), f"at most {bounds.cap(sym)}"
                seen.setdefault(sym, (n, key))
            if not ok:
                raise ValueError(f"{role} array {key!r} has shape {shape}, expected {want} in place of {n}")
        if int(np.prod(shape, dtype=np.int64)) > MAX_ARRAY_ELEMENTS:
            raise ValueError(f"{role} array {key!r} declares {shape}: more than {MAX_ARRAY_ELEMENTS} elements")


def check_values(arrays: Mapping[str, np.ndarray], role: str, bounds: Bounds) -> None:
    """What the shapes cannot say: the stored ``dim``, the server's query-total client ids
    (distinct, ascending, below ``clients``), counts that are not negative, a finite ``x``.

    Raises:
        ValueError: naming the array and what is wrong.
    """
    if role == "server":
        if "x" in arrays and not np.all(np.isfinite(arrays["x"])):
            raise ValueError("server array 'x' is not finite")
        ids = arrays.get("query-total-ids")
        if ids is not None and (np.any(np.diff(ids) <= 0) or (ids.size and (ids[0] < 0 or ids[-1] >= bounds.clients))):
            raise ValueError(f"server array 'query-total-ids' = {ids.tolist()} is not distinct ascending "
                             f"client ids below {bounds.clients}")
        if "query-totals" in arrays and np.any(arrays["query-totals"] < 0):
            raise ValueError("server array 'query-totals' has a negative count")
        if "query-total-ids" in arrays and "query-totals" not in arrays:
            raise ValueError("server array 'query-totals' is missing beside 'query-total-ids'")
        return
    if "dim" not in arrays or float(arrays["dim"][0]) != bounds.dim:
        raise ValueError(f"client array 'dim' is {arrays.get('dim')}, expected [{bounds.dim}]")
    for key in ("total-queries", "history-first-id"):
        if key in arrays and int(arrays[key][0]) < 0:
            raise ValueError(f"client array {key!r} is negative")
    if "total-queries" not in arrays:
        raise ValueError("client array 'total-queries' is missing")


def check_round_trip(state: Any, arrays: Mapping[str, np.ndarray], role: str) -> None:
    """The state built from ``arrays`` must write them back unchanged: same names,
    dtypes, shapes and values (an array of another method, or one it would drop, is refused).

    Raises:
        ValueError: naming the first array that differs.
    """
    again = state.to_arrays()
    if sorted(again) != sorted(arrays):
        extra = sorted(set(arrays) - set(again))
        missing = sorted(set(again) - set(arrays))
        raise ValueError(f"the {role} state of this method does not hold {extra}" if extra
                         else f"{role} arrays {missing} are missing")
    for key in sorted(arrays):
        a, b = np.asarray(arrays[key]), np.asarray(again[key])
        if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            raise ValueError(f"{role} array {key!r} does not load as it was saved "
                             f"({a.dtype}{a.shape} read, {b.dtype}{b.shape} kept"
                             f"{'' if a.shape != b.shape or a.dtype != b.dtype else ', other values'})")
