"""A registry: names to builders, filled at the top of the package so a lower layer never imports what plugs into it.

Engines, reward scorers and model sources are looked up by the name a config
gives (`engine.type`, `reward.type`, the `lab:` in `lab:student`). The module
that holds a registry knows only the protocol its entries satisfy;
`stylealign.wiring` registers the built-in ones, and adding one is one line there.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"unknown {self.what} {name!r}; registered: {', '.join(self.names()) or 'none'}")
        return self._entries[name]
