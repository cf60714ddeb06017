"""Helpers of every ``fedzoo`` sub-command: one flag per run-configuration option."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any


def add_config_args(p: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
    """One flag per RunConfig option (default None: RunConfig's default applies)."""
    from fedzoo.config import RunConfig

    g = p.add_argument_group("algorithm (every option of the run configuration)")
    for f in dataclasses.fields(RunConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = f.metadata.get("kind", "")
        typ = str if kind in ("choice", "shape", "floor") else int if kind.endswith("int") else float
        choices = f.metadata.get("choices") or None
        g.add_argument(flag, type=typ, default=None, choices=choices,
                       help=f"{f.metadata.get('doc', '')} (default {f.default})")


def config_from_args(args: argparse.Namespace, *, flag_names: bool = False, **override: Any) -> Any:
    """The validated RunConfig from the flags of :func:`add_config_args` and overrides.

    With ``flag_names`` a ConfigError names the options as flags (``--gp-history``)."""
    from fedzoo.config import RunConfig
    from fedzoo.errors import ConfigError

    values = {}
    for f in dataclasses.fields(RunConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name.replace("_", "-")] = v
    values.update({k.replace("_", "-"): v for k, v in override.items()})
    try:
        return RunConfig.from_mapping(values)
    except ConfigError as err:
        if flag_names:
            raise ConfigError(as_flags(str(err))) from err
        raise


def as_flags(message: str) -> str:
    """``'gp-history'`` (a quoted run-configuration option) -> ``--gp-history``."""
    import re

    from fedzoo.config import RunConfig

    keys = set(RunConfig.keys())
    return re.sub(r"'([a-z0-9_-]+)'",
                  lambda m: f"--{m.group(1).replace('_', '-')}"
                  if m.group(1).replace("_", "-") in keys else m.group(0), message)


def stderr(line: str) -> None:
    """Progress: one line to stderr, flushed."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
