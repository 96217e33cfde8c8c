"""Map + render + validate of both formats, on target records only (the per-finding cost)."""

from __future__ import annotations

import statistics

from bench.corpus import target_record
from bench.timing import seconds
from connector.factory import FindingFactory


def records_per_s(count: int, rounds: int) -> tuple[float, int]:
    factory = FindingFactory.load()
    records = [target_record(i) for i in range(count)]
    rendered = 0

    def render_all() -> None:
        nonlocal rendered
        rendered = 0
        for record in records:
            rendered += len(factory.render(record))

    times = [seconds(render_all) for _ in range(rounds)]
    return count / statistics.median(times), rendered
