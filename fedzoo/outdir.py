"""Output directories: refused before round 1 when a run could not keep its results.

:func:`prepare_out_dir` is what ``fedzoo run/compare --out`` and
``fedzoo.minimize(out_dir=...)`` call before any query: the path must be a directory (or
creatable as one), writable (a probe file is created and removed), and, unless the
caller says ``overwrite``, empty, so that a previous run's history.csv and summary.json
are never replaced by accident.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fedzoo.errors import ConfigError


class OutDirError(ConfigError):
    """An output directory cannot hold a run's results (or would overwrite another run's)."""


def prepare_out_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    name: str = "out_dir",
    overwrite_hint: str = "overwrite=True",
) -> Path:
    """Create ``path`` if needed and check that a run can write its results there.

    Args:
        path: the output directory.
        overwrite: accept a directory that already holds files (they may be replaced).
        name: how the caller calls the option in messages (``--out``, ``out_dir``).
        overwrite_hint: how the caller says "overwrite" (``--overwrite``, ``overwrite=True``).

    Returns:
        The directory (created, writable).

    Raises:
        OutDirError: the path is a file, cannot be created, is not writable, or is a
            non-empty directory without ``overwrite``; the message names the path.
    """
    out = Path(path).expanduser()
    if str(path) == "":
        raise OutDirError(f"{name} is empty; expected a directory path.")
    if out.exists() and not out.is_dir():
        raise OutDirError(f"{name} {str(out)!r} is a file, not a directory; expected a directory "
                          "for history.csv and summary.json.")
    if out.is_dir() and not overwrite:
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as err:
            raise OutDirError(f"{name} {str(out)!r} cannot be read: {err.strerror or err}.") from err
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise OutDirError(
                f"{name} {str(out)!r} is not empty ({shown}); a run there could overwrite earlier "
                f"results. Choose a new directory, or pass {overwrite_hint} to replace them."
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutDirError(f"{name} {str(out)!r} cannot be created: {err.strerror or err}.") from err
    check_writable(out, name)
    return out


def check_writable(out: Path, name: str = "out_dir") -> None:
    """Create and remove a probe file in ``out`` (an existing directory).

    Raises:
        OutDirError: naming the directory and the system's reason.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".fedzoo-write-test-", dir=out)
    except OSError as err:
        raise OutDirError(f"{name} {str(out)!r} is not writable: {err.strerror or err}.") from err
    os.close(fd)
    os.unlink(probe)
