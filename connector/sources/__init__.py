"""Sources: where raw messages come from. One module per source, registered by name.

Adding a source: ``connector/sources/<name>.py`` with a class decorated ``@register("<name>")``,
its entry in ``KNOWN`` in base.py, a test module and a config section.
"""

from __future__ import annotations

from connector.sources.base import KNOWN, REGISTRY, Source, register

source_class = REGISTRY.get

__all__ = ["KNOWN", "REGISTRY", "Source", "register", "source_class"]
