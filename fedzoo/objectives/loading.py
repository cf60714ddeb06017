"""Loading a user's black box named as ``package.module:function`` (never ``eval``)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from fedzoo.errors import ConfigError

CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def load_callable(spec: Any, *, what: str = "objective") -> Callable[..., Any]:
    """Import ``package.module:function`` (the attribute may be dotted, ``mod:Cls.method``).

    ``what`` names the option in error messages (e.g. "Node config 'objective'").

    Raises:
        ConfigError: a malformed spec (it must look like 'package.module:function'), a
            module that cannot be imported, a missing attribute or one that is not callable.
    """
    if not isinstance(spec, str) or not CALLABLE_SPEC.match(spec):
        raise ConfigError(
            f"{what} = {spec!r} is not allowed: it must look like 'package.module:function'."
        )
    module_name, attr_path = spec.split(":", 1)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{what} = {spec!r}: Cannot import module {module_name!r} (cannot import: {err})."
        ) from err
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"{what} = {spec!r}: {module_name!r} has no attribute {attr_path!r}."
            ) from None
    if not callable(target):
        raise ConfigError(f"{what} = {spec!r} is a {type(target).__name__}, not a callable.")
    return target
