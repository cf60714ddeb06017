"""Output directories: refused before round 1 when a run could not keep its results.

:func:`prepare_out_dir` is what ``fedzoo run/compare --out`` and
``fedzoo.minimize(out_dir=...)`` call before any query: the path must be a directory (or
creatable as one), writable (a probe file is created and removed), and, unless the
caller says ``overwrite``, empty, so that a previous run's history.csv and summary.json
are never replaced by accident.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from fedzoo.errors import ConfigError, os_error_text, short_path


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
    out, is_dir = _kind(path, name)
    shown = repr(short_path(out))
    if is_dir and not overwrite:
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as err:
            raise OutDirError(f"{name} {shown} cannot be read: {err.strerror or err}.") from err
        if entries:
            listed = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise OutDirError(
                f"{name} {shown} is not empty ({listed}); a run there could overwrite earlier "
                f"results. Choose a new directory, or pass {overwrite_hint} to replace them."
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a part of the path is a file
        raise OutDirError(f"{name} {shown} cannot be created: a part of it is a file "
                          f"({err.filename!r}); expected a directory path.") from err
    except OSError as err:
        raise OutDirError(f"{name} {shown} cannot be created: {os_error_text(err, with_path=False)}") from err
    check_writable(out, name)
    return out


def _kind(path: str | os.PathLike[str], name: str) -> tuple[Path, bool | None]:
    """The path, and whether it is a directory (None: not there).

    Raises:
        OutDirError: empty, a file, or a path the system refuses (too long, ...).
    """
    if str(path) == "":
        raise OutDirError(f"{name} is empty; expected a directory path.")
    out = Path(path).expanduser()
    try:
        is_dir = stat.S_ISDIR(out.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return out, None
    except OSError as err:  # a path too long, a loop of links, no access to a parent, ...
        raise OutDirError(f"{name} {os_error_text(err)} Expected a directory path that can "
                          "be created and written.") from err
    if not is_dir:
        raise OutDirError(f"{name} {short_path(out)!r} is a file, not a directory; expected a "
                          "directory for history.csv and summary.json.")
    return out, True


def check_out_dir(path: str | os.PathLike[str], *, name: str = "out_dir") -> Path:
    """What :func:`prepare_out_dir` checks (with ``overwrite``), creating nothing: a
    command checks its output directory before work that may still fail first.

    Raises:
        OutDirError: as :func:`prepare_out_dir`; a missing directory whose nearest
            existing parent is a file or cannot be written.
    """
    out, is_dir = _kind(path, name)
    if is_dir:
        check_writable(out, name)
        return out
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutDirError(f"{name} {short_path(out)!r} cannot be created: {short_path(parent)!r} "
                          "is a file; expected a directory path.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fedzoo-write-test-", dir=parent)
    except OSError as err:
        raise OutDirError(f"{name} {short_path(out)!r} cannot be created in {short_path(parent)!r}: "
                          f"{os_error_text(err, with_path=False)}") from err
    os.close(fd)
    os.unlink(probe)
    return out


def check_writable(out: Path, name: str = "out_dir") -> None:
    """Create and remove a probe file in ``out`` (an existing directory).

    Raises:
        OutDirError: naming the directory and the system's reason.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".fedzoo-write-test-", dir=out)
    except OSError as err:
        raise OutDirError(f"{name} {short_path(out)!r} is not writable: {os_error_text(err, with_path=False)}") from err
    os.close(fd)
    os.unlink(probe)
