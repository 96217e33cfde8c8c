"""Declared change windows: weekly (days, start, end in a time zone) or one-off (from, to).

Judged on the event's time, never the wall clock, so a replay decides as the live run did.
A weekly window whose end is before its start runs past midnight into the next day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_clock(text: str) -> int:
    """``HH:MM`` → minutes after midnight (the schema has checked the shape)."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time (``Z`` or an offset; naive means UTC). A bare date used as an end
    (``until: 2027-01-31``) means the end of that day."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if len(text) == 10 and end_of_day:
        moment += timedelta(days=1)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ChangeWindow:
    name: str
    #: Weekly: weekday numbers (Monday 0), start and end in minutes, the zone.
    days: frozenset[int] = frozenset()
    start: int = 0
    end: int = 0
    zone: ZoneInfo | None = None
    #: One-off: [begins, ends).
    begins: datetime | None = None
    ends: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        if self.begins is not None and self.ends is not None:
            return self.begins <= moment < self.ends
        try:
            local = moment.astimezone(self.zone or UTC)
        except OverflowError:
            # 9999-12-31T23:59:59Z is a valid eventTime whose local time east of UTC is past year
            # 9999: no calendar day to place it in, so it is in no weekly window (the cautious
            # answer: "outside the change windows" raises a finding, never lowers one).
            return False
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= minute < self.end
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)
