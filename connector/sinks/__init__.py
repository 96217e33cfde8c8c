"""Sinks: where rendered findings go. One module per sink, registered by name.

Adding a sink: ``connector/sinks/<name>.py`` with a class decorated ``@register("<name>")``,
its entry in ``KNOWN`` below (so it is imported lazily), a test module and a config section.
"""

from __future__ import annotations

import importlib

from connector.sinks.base import REGISTRY, Sink, register

#: sink name → module that registers it (imported only when enabled).
KNOWN: dict[str, str] = {
    "securityhub": "connector.sinks.securityhub",
    "opensearch": "connector.sinks.opensearch",
    "jsonl": "connector.sinks.jsonl",
}


def sink_class(name: str) -> type[Sink]:
    if name not in REGISTRY:
        module = KNOWN.get(name)
        if module is None:
            raise KeyError(f"unknown sink {name!r}; known: {', '.join(sorted(KNOWN))}")
        importlib.import_module(module)
    return REGISTRY[name]


__all__ = ["KNOWN", "REGISTRY", "Sink", "register", "sink_class"]
