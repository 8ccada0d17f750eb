"""The one place the bus loads code by name: entry points and ``module:attr`` import strings.

Built-in services, contributed commands and the fan-out table are found through entry-point
groups declared in ``pyproject.toml`` (visible once the package is installed, ``pip install -e .``
for a checkout); a user's own app is named by an import string, as uvicorn and Celery do::

    [project.entry-points."psa_event_bus.services"]     # bus run NAME
    email = "subscribers.app:email"
    [project.entry-points."psa_event_bus.commands"]     # a callable register(subparsers) -> None
    demo = "subscribers.demo:register_command"
    fanout = "publishers:fanout_channels"

Any installed distribution may add names to these groups. ``bus`` never imports ``publishers``
or ``subscribers`` statically; this module is the only library code that uses ``importlib``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from typing import Any

from ._errors import BusError

__all__ = [
    "COMMANDS_GROUP",
    "SERVICES_GROUP",
    "ImportStringError",
    "entry_point_names",
    "load_entry_point",
    "load_object",
    "package_version",
]

#: ``bus run NAME``: a service, a list of services, or a factory ``(environ) -> services``.
SERVICES_GROUP = "psa_event_bus.services"
#: Extra ``bus`` sub-commands: ``register(subparsers)`` adding a parser whose ``handler`` returns an exit code.
COMMANDS_GROUP = "psa_event_bus.commands"
#: Routing functions; ``fanout``: ``(event_type, channel | None) -> tuple of channels`` (``bus publish --fanout``).

_DISTRIBUTION = "psa-event-bus"


class ImportStringError(BusError, ValueError):
    """A ``module:attr`` import string or an entry point that cannot be loaded; says why."""

    def __init__(self, spec: str, message: str) -> None:
        self.spec = spec
        super().__init__(message)


def load_object(spec: str, *, search_cwd: bool = False) -> Any:
    """Import ``pkg.module:attr`` (``attr`` may be dotted) and return the attribute.

    ``search_cwd`` puts the current folder on ``sys.path`` first (``bus run myapp:app`` from the
    project folder, as ``python -m`` does). Raises :class:`ImportStringError`.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ImportStringError(spec, f"{spec!r} is not an import string (pkg.module:attr)")
    if search_cwd and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportStringError(spec, f"cannot import {module_name!r} (from {spec!r}): {exc}") from exc
    except Exception as exc:  # the module itself is broken (NameError, SyntaxError...): name it, no traceback
        raise ImportStringError(
            spec, f"importing {module_name!r} (from {spec!r}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportStringError(spec, f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def entry_point_names(group: str) -> list[str]:
    """The names registered in an entry-point group, in registration order without repeats."""
    return list(_entry_points(group))


def load_entry_point(group: str, name: str) -> Any:
    """The object entry point ``name`` of ``group`` names; :class:`ImportStringError` when missing or broken."""
    ep = _entry_points(group).get(name)
    if ep is None:
        raise ImportStringError(
            name,
            f"no entry point {name!r} in group {group!r}; is the package installed (pip install -e .)?",
        )
    try:
        return ep.load()
    except (ImportError, AttributeError) as exc:
        raise ImportStringError(ep.value, f"entry point {name!r} ({ep.value}) cannot be loaded: {exc}") from exc


def package_version() -> str:
    """The installed version of psa-event-bus (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
