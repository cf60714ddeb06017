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
        typ = str if kind in ("choice", "shape") else int if kind.endswith("int") else float
        choices = f.metadata.get("choices") or None
        g.add_argument(flag, type=typ, default=None, choices=choices,
                       help=f"{f.metadata.get('doc', '')} (default {f.default})")


def config_from_args(args: argparse.Namespace, **override: Any) -> Any:
    """The validated RunConfig from the flags of :func:`add_config_args` and overrides."""
    from fedzoo.config import RunConfig

    values = {}
    for f in dataclasses.fields(RunConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    values.update(override)
    return RunConfig.from_mapping(values)


def stderr(line: str) -> None:
    """Progress: one line to stderr, flushed."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
