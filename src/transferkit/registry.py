"""One registry type for models, datasets, strategies and augmentations, filled by decorators."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from transferkit.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; duplicates raise, unknown names list the valid ones.

    Example:
        >>> strategies: Registry[type] = Registry("strategy")
        >>> @strategies.register("linear-probe")
        ... class LinearProbe: ...

    A name can also be *declared* with the module that registers it, so that the name is known (for a
    command's help, a config check) before that module, and torch with it, is imported.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._declared: dict[str, str] = {}  # name -> module whose import registers it

    def declare(self, name: str, module: str) -> None:
        """`name` is registered by importing `module`, which `get` does on first use."""
        if name in self._declared or name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is declared twice; pick another name.")
        self._declared[name] = module

    def is_declared(self, name: str) -> bool:
        """Whether `name` was declared with its module: known, and described, without importing it."""
        return name in self._declared

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            self.add(name, entry)
            return entry

        return decorate

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice; pick another name.")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._declared:
            importlib.import_module(self._declared[name])
            if name not in self._entries:
                module = self._declared[name]
                raise RuntimeError(f"{module} should register the {self.kind} {name!r} but does not.")
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def remove(self, name: str) -> T:
        """Takes an entry out again (for tests that register a toy one)."""
        self._declared.pop(name, None)
        return self._entries.pop(name)

    def names(self) -> list[str]:
        return sorted({*self._entries, *self._declared})

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
