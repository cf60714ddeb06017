"""``fedzoo run --config FILE``: options from a TOML file or from a run's summary.json.

* A TOML file holds flags of ``fedzoo run`` without their dashes, e.g.::

      method = "fzoos"
      problem = "ackley"
      dim = 50
      rounds = 20
      lr = 0.02
      out = "runs/ackley"

* A ``summary.json`` written by a run repeats that run: its method and every option
  (``config``), its problem (name, dim, clients, heterogeneity, problem seed) and its
  engine. ``--out`` is not taken from it (the old directory is not empty).

Flags given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from fedzoo.errors import ConfigError, os_error_text, short_path

#: Flags a file may not set (they choose what the file is, or another mode).
NOT_FROM_FILE = ("config", "resume", "help")


def options_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's long options by their name without dashes (``gp-history``)."""
    out = {}
    for action in parser._actions:  # argparse keeps no public list
        for flag in action.option_strings:
            if flag.startswith("--"):
                out[flag[2:]] = action
    return out


def read_options(path: str | Path) -> dict[str, Any]:
    """The options of a TOML file or a summary.json (keys are flag names, kebab-case).

    Raises:
        ConfigError: the file cannot be read or parsed, or a summary of a run this
            command cannot repeat (custom objectives).
    """
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"--config {short_path(p)!r} is not a text file (byte {err.start} is not "
                          "UTF-8); expected a TOML file or a run's summary.json.") from err
    except OSError as err:
        raise ConfigError(f"--config {short_path(p)!r} cannot be read: "
                          f"{os_error_text(err, with_path=False)}") from err
    if p.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config {str(p)!r} is not valid JSON: {err}.") from err
        return _from_summary(data, p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--config {str(p)!r} is not valid TOML: {err}.") from err
    return {k.replace("_", "-"): v for k, v in data.items()}


def _from_summary(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) \
            or not isinstance(data.get("problem"), dict):
        raise ConfigError(f"--config {str(path)!r} is JSON but not a run's summary.json "
                          "(expected its 'config' and 'problem' entries).")
    problem = data["problem"]
    name = problem.get("name")
    from fedzoo.objectives.problems import PROBLEMS

    if name not in PROBLEMS:
        raise ConfigError(
            f"--config {str(path)!r}: the run's problem {name!r} is not a built-in problem that "
            "`fedzoo run` can rebuild (a fedzoo.minimize run of your own objectives: repeat "
            "the call its provenance.invocation records)."
        )
    options = dict(data["config"])
    options.update({"problem": name, "dim": problem.get("dim"), "clients": problem.get("clients"),
                    "heterogeneity": problem.get("heterogeneity"), "problem-seed": problem.get("seed")})
    if data.get("engine") in ("inprocess", "flower"):
        options["engine"] = data["engine"]
    return {k: v for k, v in options.items() if v is not None}


def _check_kind(path: str, key: str, value: Any, action: argparse.Action) -> None:
    """A file's value has the kind its flag takes: true/false for a switch, text for a
    path or name, a number for a numeric flag (or text, converted as typed).

    Raises:
        ConfigError: naming the file, the flag, the value and the kind expected.
    """
    if action.nargs == 0:  # --checkpoint, --overwrite, ...: a switch
        expected, ok = "true or false", isinstance(value, bool)
    elif action.type in (int, float):
        expected = "an integer" if action.type is int else "a number"
        ok = isinstance(value, str) or (not isinstance(value, bool) and (
            isinstance(value, int) or (action.type is float and isinstance(value, float))))
    elif action.type is None:  # a path or a name
        expected, ok = "a string (in quotes)", isinstance(value, str)
    else:  # a custom type: converted from text, or given as a number
        expected, ok = "a string or a number", isinstance(value, (str, int, float)) \
            and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"--config {path!r}: {key} = {value!r} is not allowed; expected "
                          f"{expected} for --{key}.")


def apply_config_file(parser: argparse.ArgumentParser, argv: list[str], path: str) -> argparse.Namespace:
    """Parse ``argv`` again with the file's options as defaults (the command line wins).

    Raises:
        ConfigError: a key that is not a flag of ``parser`` (named as the flag).
    """
    options = read_options(path)
    known = options_of(parser)
    unknown = sorted(k for k in options if k not in known or k in NOT_FROM_FILE)
    if unknown:
        raise ConfigError(
            f"--config {path!r} sets {', '.join('--' + k for k in unknown)}, which "
            f"`fedzoo run` does not take from a file; expected some of: "
            f"{', '.join('--' + k for k in sorted(known) if k not in NOT_FROM_FILE)}."
        )
    defaults = {}
    for key, value in options.items():
        action = known[key]
        _check_kind(path, key, value, action)
        if isinstance(value, str) and action.type is not None:  # as if typed on the command line
            try:
                value = action.type(value)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"--config {path!r}: --{key} = {value!r} is not allowed "
                                  f"({err}).") from err
        if action.choices is not None and value not in action.choices:
            raise ConfigError(f"--config {path!r}: --{key} = {value!r} is not allowed; expected "
                              f"one of {list(action.choices)}.")
        defaults[action.dest] = value
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)
