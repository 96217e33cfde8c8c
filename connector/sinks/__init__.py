"""Sinks: where rendered findings go. One module per sink, registered by name.

Adding a sink: ``connector/sinks/<name>.py`` with a class decorated ``@register("<name>")``,
its entry in ``KNOWN`` in base.py (so it is imported lazily), a test module and a config section.
"""

from __future__ import annotations

from connector.sinks.base import KNOWN, REGISTRY, Sink, register

sink_class = REGISTRY.get

__all__ = ["KNOWN", "REGISTRY", "Sink", "register", "sink_class"]
