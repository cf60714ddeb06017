"""What a run's summary.json records to repeat it: the invocation, the code, the packages.

* ``invocation``: the exact command line (``{"argv": [...]}``, set by the CLI with
  :func:`invocation`) or an API call and its arguments (``{"api": "fedzoo.minimize",
  "arguments": {...}}``); by default the process's ``sys.argv``.
* ``git``: the commit of the repository fedzoo is imported from and whether its tree
  had changes (``None`` outside a git checkout, e.g. an installed wheel or a Flower FAB).
* ``packages``: the installed versions of fedzoo's dependencies and extras (``None``
  for one that is not installed), read from package metadata without importing them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: Distributions whose versions summary.json records (core, extras, tools).
PACKAGES = ("fedzoo", "numpy", "scipy", "matplotlib", "flwr", "grpcio", "protobuf", "torch",
            "scikit-learn", "mlxtend", "cma", "tensorboardX", "tensorboard", "tqdm")

_INVOCATION: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "fedzoo_invocation", default=None)


@contextlib.contextmanager
def invocation(record: Mapping[str, Any]) -> Iterator[None]:
    """Runs inside this block record ``record`` as their invocation."""
    token = _INVOCATION.set(dict(record))
    try:
        yield
    finally:
        _INVOCATION.reset(token)


def current_invocation() -> dict[str, Any]:
    """The invocation set by :func:`invocation`, else the process's command line."""
    return _INVOCATION.get() or {"argv": list(sys.argv)}


def jsonable(value: Any) -> Any:
    """A JSON-ready rendering of an API argument (callables and arrays by description)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "tolist"):
        return value.tolist() if getattr(value, "size", 0) <= 1000 else f"array of shape {tuple(shape)}"
    if callable(value):
        mod, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        return f"{mod}.{name}" if mod and name else repr(value)
    return repr(value)


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout fedzoo runs from, else None."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return {"commit": head.stdout.strip(), "dirty": dirty}


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` (None: not installed), plus Python's."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance() -> dict[str, Any]:
    """The ``provenance`` entry of summary.json."""
    return {"invocation": current_invocation(), "git": git_state(), "packages": package_versions()}
