"""The test cases of the mapped events, as the tests use them.

Everything here comes from ``mappings/`` (each mapping's ``cases:`` and
``mappings/cases/common.yaml``) through ``connector.mapping.cases``; no event is named in code.
Real public records are read from ../shared/corpus, never copied into the repository.
"""

from __future__ import annotations

from connector.mapping.cases import CaseBook, Record

BOOK = CaseBook.load()
ACCOUNT: str = BOOK.common["account"]
#: Every mapped event (mapping files in name order).
EVENTS: tuple[str, ...] = BOOK.events
#: One mapped event, for tests where which one does not matter.
EVENT: str = EVENTS[0]
IAM_USER: Record = BOOK.identity("iam-user")
ROOT: Record = BOOK.identity("root")
ASSUMED_ROLE: Record = BOOK.identity("assumed-role")
RESOURCE_IDS: dict[str, str] = {name: m.cases.resource_id for name, m in BOOK.mappings.items()}
make_record = BOOK.make_record
variants = BOOK.variants


def an_event(index: int) -> str:
    """The mapped events in turn, for tests that spread records over several of them."""
    return EVENTS[index % len(EVENTS)]
