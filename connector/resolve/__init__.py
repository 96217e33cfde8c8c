"""Findings that resolve themselves: a mapping's ``restores:`` events undo its deletion.

``spec`` parses the declaration (data in the mapping files, no event-specific code), ``store``
keeps the open findings and the early restores by resolution key, ``resolver`` marks a
finding resolved in both formats.
"""
