"""Decode + select on the four paths records arrive by, over the floor of the same bytes.

The floor is what no consumer can avoid: python-isal's gunzip for gzipped payloads (S3 log
files, CloudWatch Logs via Kinesis), one regex pass for plain bodies (SQS, EventBridge). The
result also counts targets found: a faster path that loses one is a failure, not a speed-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from isal import isal_zlib

from bench.corpus import Corpus
from bench.timing import Ratio, ratio
from connector.config import LimitSettings
from connector.envelopes import DecodedRecord, Decoder
from connector.factory import FindingFactory
from connector.select import Selector


@dataclass(frozen=True)
class PathResult:
    name: str
    records: int
    found: int
    expected: int
    speed: Ratio

    @property
    def floor_records_per_s(self) -> float:
        return self.records / self.speed.base_seconds

    @property
    def ours_records_per_s(self) -> float:
        return self.records / self.speed.ours_seconds


def _skipped(item: object) -> int:
    return int(getattr(item, "count", 0))


def run(corpus: Corpus, rounds: int, rare: Corpus | None = None) -> list[PathResult]:
    """The four paths on ``corpus``; with ``rare`` (a corpus with targets as rare as in real
    trails), log files once more on it: most real log files hold no target at all."""
    factory = FindingFactory.load()
    selector = Selector(factory.event_names)
    decoder = Decoder(LimitSettings(), prefilter=selector.pattern)
    pattern = re.compile(b"|".join(re.escape(n.encode()) for n in sorted(factory.event_names)))
    paths: dict[str, tuple[list[bytes], bool]] = {
        "logfiles": (corpus.log_files(), True),
        "cwl": (corpus.cwl_payloads(), True),
        "sqs": (corpus.sqs_bodies(), False),
        "eventbridge": (corpus.eventbridge_bodies(), False),
    }
    if rare is not None:
        paths["logfiles_rare"] = (rare.log_files(), True)
    results = []
    for name, (bodies, gzipped) in paths.items():
        source = rare if name.endswith("_rare") and rare is not None else corpus
        found = 0

        # A message arrives with its id (the origin) already a string: made before the clock starts.
        origins = [f"b{index}" for index in range(len(bodies))]

        def ours(bodies: list[bytes] = bodies, origins: list[str] = origins) -> None:
            nonlocal found
            found = 0
            for body, origin in zip(bodies, origins):
                for item in decoder.decode(body, origin=origin):
                    if isinstance(item, DecodedRecord) and selector.matches(item.record):
                        found += 1

        floor: Callable[[], object]
        if gzipped:
            def floor(bodies: list[bytes] = bodies) -> None:
                for body in bodies:
                    isal_zlib.decompress(body, wbits=31)
        else:
            def floor(bodies: list[bytes] = bodies) -> None:
                search = pattern.search
                for body in bodies:
                    search(body)
        speed = ratio(floor, ours, rounds)
        results.append(PathResult(name, len(source.records), found, source.targets, speed))
    return results
