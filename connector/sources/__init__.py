"""Sources: where raw messages come from. One module per source, registered by name.

Adding a source: ``connector/sources/<name>.py`` with a class decorated ``@register("<name>")``,
its entry in ``KNOWN``, a test module and a config section.
"""

from __future__ import annotations

import importlib

from connector.sources.base import REGISTRY, Source, register

KNOWN: dict[str, str] = {
    "sqs": "connector.sources.sqs",
    "kinesis": "connector.sources.kinesis",
    "files": "connector.sources.files",
}


def source_class(name: str) -> type[Source]:
    if name not in REGISTRY:
        module = KNOWN.get(name)
        if module is None:
            raise KeyError(f"unknown source {name!r}; known: {', '.join(sorted(KNOWN))}")
        importlib.import_module(module)
    return REGISTRY[name]


__all__ = ["KNOWN", "REGISTRY", "Source", "register", "source_class"]
