"""The method registry: every federated method is a class in a module of this package.

A module here defines a subclass of :class:`~fedzoo.methods.base.Method` and decorates
it with :func:`register`; the registry imports every module of this package the first
time a method is looked up, so adding a method is adding a module (docs/development.md, "How to add
a method"). Everything that lists methods — the ``method`` option's allowed values, the
CLI's choices and help, the API docs, the Flower run-config checks — asks
:func:`method_names`.

The built-in modules are listed by ``fedzoo methods`` (each method with its module) and
found by :func:`method_names`; this docstring does not repeat the list, which would
drift.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading

from fedzoo.errors import UnknownNameError
from fedzoo.methods.base import Method, TrainContext

__all__ = ["Method", "TrainContext", "get_method", "method_names", "methods", "register"]

_REGISTRY: dict[str, Method] = {}
_LOCK = threading.Lock()
_DISCOVERED = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method under ``cls.name`` (one instance, stateless)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name; set the class attribute 'name'.")
    known = _REGISTRY.get(cls.name)
    if known is not None and type(known).__qualname__ != cls.__qualname__:
        raise ValueError(f"Method name {cls.name!r} is taken by {type(known).__qualname__}.")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    """Import every module of this package once (each registers its methods)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    with _LOCK:
        if _DISCOVERED:
            return
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base" and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _DISCOVERED = True


def methods() -> list[Method]:
    """Every registered method, in listing order (``rank``, then name)."""
    _discover()
    return sorted(_REGISTRY.values(), key=lambda m: (m.rank, m.name))


def method_names() -> tuple[str, ...]:
    """The names users may pass as ``method``."""
    return tuple(m.name for m in methods())


def get_method(name: str) -> Method:
    """The registered method called ``name``.

    Raises:
        UnknownNameError: naming the method and the registered ones.
    """
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"Unknown method {name!r}; expected one of {list(method_names())}."
        ) from None
