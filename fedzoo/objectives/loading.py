"""Loading a user's black box, or a factory of client objectives with its keyword options,
named as ``package.module:function`` (imported, never ``eval``)."""

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


#: Keyword arguments an objective factory always receives (:func:`objective_from_factory`).
FACTORY_ARGUMENTS = ("partition_id", "num_clients")


def parse_objective_options(text: Any, *, what: str = "objective options") -> dict[str, Any]:
    """The keyword arguments of an objective factory from their JSON text ("" = none).

    The text must be a JSON object whose keys are Python identifiers other than
    :data:`FACTORY_ARGUMENTS` (those are passed by the caller).

    Raises:
        ConfigError: not a string, not JSON, not an object, or a key that cannot be a
            keyword argument.
    """
    import json

    if not isinstance(text, str):
        raise ConfigError(f"{what} = {text!r} is not allowed; expected a JSON object as text "
                          "('{\"name\": value, ...}') or \"\" (none).")
    if not text.strip():
        return {}
    try:
        options = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{what} = {text!r} is not valid JSON: {err}.") from None
    if not isinstance(options, dict):
        raise ConfigError(f"{what} = {text!r} is not allowed; expected a JSON object "
                          "('{\"name\": value, ...}').")
    bad = sorted(k for k in options if not k.isidentifier() or k in FACTORY_ARGUMENTS)
    if bad:
        raise ConfigError(f"{what} = {text!r} is not allowed: key(s) {bad} cannot be keyword "
                          f"arguments of the factory (identifiers other than "
                          f"{list(FACTORY_ARGUMENTS)}, which are always passed).")
    return options


def objective_options_text(options: Any) -> str:
    """The canonical JSON text of factory options (sorted keys; "" for none): the inverse
    of :func:`parse_objective_options`, so equal options give equal text."""
    import json

    return json.dumps(dict(options), sort_keys=True, separators=(",", ":")) if options else ""


def objective_from_factory(
    spec: str,
    options: Any,
    *,
    partition_id: int,
    num_clients: int,
    dim: int,
    what: str = "objective factory",
) -> Any:
    """Client ``partition_id``'s objective from a factory named ``package.module:function``.

    The factory is called as ``factory(partition_id=..., num_clients=..., **options)`` and
    returns an :class:`~fedzoo.objectives.base.Objective`, or a callable ``f(X) -> y``
    that is wrapped in a :class:`~fedzoo.objectives.base.CallableObjective` of dimension
    ``dim``. The factory is imported, never evaluated as code.

    Raises:
        ConfigError: a malformed spec, an import failure, or a factory that returns
            neither an Objective nor a callable (the factory's own errors propagate).
    """
    import inspect

    from fedzoo.objectives.base import CallableObjective, Objective

    factory = load_callable(spec, what=what)
    kwargs = {"partition_id": int(partition_id), "num_clients": int(num_clients), **dict(options)}
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        raise ConfigError(
            f"{what} = {spec!r} cannot be called with partition_id, num_clients and the "
            f"options {sorted(options)}: {err}."
        ) from None
    except ValueError:  # no signature to check (some builtins): the call will tell
        pass
    made = factory(**kwargs)
    if isinstance(made, Objective):
        return made
    if callable(made):
        return CallableObjective(made, dim, name=f"{spec}[{partition_id}]")
    raise ConfigError(f"{what} = {spec!r} returned a {type(made).__name__}, expected an "
                      "Objective or a callable f(X) -> y.")
