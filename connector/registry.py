"""A small name → class registry with lazy imports, shared by sources and sinks.

Each plugin module registers its class with ``@REGISTRY.register("name")``; ``KNOWN`` maps names
to modules so that only enabled plugins are imported (and their dependencies loaded).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")
C = TypeVar("C")


class Registry(Generic[T]):
    def __init__(self, kind: str, known: Mapping[str, str]) -> None:
        self.kind = kind
        self.known = dict(known)
        self.classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[C], C]:
        def wrap(cls: C) -> C:
            self.classes[name] = cls  # type: ignore[assignment]
            return cls

        return wrap

    def get(self, name: str) -> type[T]:
        if name not in self.classes:
            module = self.known.get(name)
            if module is None:
                raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self.known))}")
            importlib.import_module(module)
        return self.classes[name]
