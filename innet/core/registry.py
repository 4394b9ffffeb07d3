"""Registries: the named things a scenario can choose among.

A scenario names its routing (``dijkstra``), its gate (``gaussian``), its wire
format (``int8``), its MoE router (``carl``), its family (``moe``)... Each kind
of thing is kept in one :class:`Registry`: the code that defines a thing
registers it under its name, and everything else (validation of a scenario,
the trainer, the command line's lists) asks the registry. Adding a routing is
then one new function with a ``@ROUTINGS.register("name")`` line above it, and
nothing else to edit.

>>> COLOURS = Registry("colour")
>>> @COLOURS.register("red")
... def red() -> str:
...     return "#f00"
>>> COLOURS.register("green", lambda: "#0f0")  # doctest: +ELLIPSIS
<function <lambda> at ...>
>>> COLOURS.names()
('red', 'green')
>>> COLOURS.get("red")()
'#f00'
>>> COLOURS.get("blue")
Traceback (most recent call last):
...
innet.core.registry.UnknownNameError: unknown colour 'blue' (expected one of: red, green)
>>> COLOURS.check("green")  # a pydantic validator: the name, or ValueError
'green'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

from innet.core.errors import InnetError

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(InnetError, LookupError):
    """A name that no entry of a registry has; the message lists the names it has."""


class Registry(Generic[T]):
    """Things of one kind (``kind``: "routing", "gate kind", ...) by name, in the
    order they were registered."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: Any = None) -> Any:
        """Add ``entry`` under ``name`` (replacing one of that name); without ``entry``,
        a decorator that registers what it decorates."""
        if entry is None:

            def decorate(thing: T) -> T:
                self._entries[name] = thing
                return thing

            return decorate
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove the entry called ``name`` and return it (a test's own entry, afterwards).

        >>> SHAPES = Registry("shape")
        >>> square = SHAPES.register("square", 4)
        >>> SHAPES.unregister("square"), "square" in SHAPES
        (4, False)
        """
        try:
            return self._entries.pop(name)
        except KeyError:
            raise UnknownNameError(self.unknown(name)) from None

    def get(self, name: str) -> T:
        """The entry called ``name``; :class:`UnknownNameError` listing the names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown(name)) from None

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)

    def items(self) -> tuple[tuple[str, T], ...]:
        """(name, entry) pairs, in registration order."""
        return tuple(self._entries.items())

    def check(self, name: str) -> str:
        """``name`` if registered, else ``ValueError`` listing the names (for pydantic's
        ``AfterValidator``: the error then names the scenario's field and line)."""
        if name not in self._entries:
            raise ValueError(self.unknown(name))
        return name

    def unknown(self, name: object) -> str:
        """The one-line message for a name this registry does not have."""
        return f"unknown {self.kind} {name!r} (expected one of: {', '.join(self._entries)})"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
