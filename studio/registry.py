"""One small generic registry for engines, families, exports and image sources."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Generic, Iterator, TypeVar

from studio.errors import UnknownName

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps exact names to factories; `get` of an unknown name lists what is known."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering `obj` under `name`; a duplicate name is a programming error."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> T:
        """Remove `name` and return what it named; UnknownName if it is not registered."""
        obj = self.get(name)
        del self._items[name]
        return obj

    @contextmanager
    def registered(self, name: str, obj: T) -> Iterator[T]:
        """`obj` registered as `name` inside the block only (tests, plugins tried for one run)."""
        self.register(name)(obj)
        try:
            yield obj
        finally:
            self.unregister(name)

    def get(self, name: str) -> T:
        """The factory registered as `name`, or UnknownName listing the known names."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(
                f"{self.kind} {name!r} unknown; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
