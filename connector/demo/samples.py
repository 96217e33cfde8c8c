"""Sample CloudTrail records for ``connector demo``: one per mapped event, plus unrelated noise.

They come from the mappings' own test cases (``mappings/cases/common.yaml`` and each mapping's
``cases:``), re-homed into account 123456789012, the emulator's own, so the findings import
with the default product ARN; a new mapping file shows up in the demo with no code change.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from connector.mapping.cases import CaseBook


@lru_cache(maxsize=1)
def _book() -> CaseBook:
    return CaseBook.load()


def account() -> str:
    return str(_book().common["demo"]["account"])


def region() -> str:
    return str(_book().common["demo"]["region"])


def target_records() -> list[dict[str, Any]]:
    return _book().demo_records()


def noise_records() -> list[dict[str, Any]]:
    return _book().noise_records()
