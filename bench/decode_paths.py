"""Decode + select on the four paths records arrive by, over the floor of the same bytes.

The floor is what no consumer can avoid: python-isal's gunzip for gzipped payloads (S3 log
files, CloudWatch Logs via Kinesis), one regex pass for plain bodies (SQS, EventBridge). The
result also counts targets found: a faster path that loses one is a failure, not a speed-up.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from isal import isal_zlib

from bench.corpus import Corpus
from bench.timing import Ratio
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

        def ours(bodies: list[bytes], origins: list[str]) -> None:
            nonlocal found
            for body, origin in zip(bodies, origins):
                for item in decoder.decode(body, origin=origin):
                    if isinstance(item, DecodedRecord) and selector.matches(item.record):
                        found += 1

        floor: Callable[[list[bytes], list[str]], None]
        if gzipped:
            def floor(bodies: list[bytes], origins: list[str]) -> None:
                for body in bodies:
                    isal_zlib.decompress(body, wbits=31)
        else:
            def floor(bodies: list[bytes], origins: list[str]) -> None:
                search = pattern.search
                for body in bodies:
                    search(body)
        per_body = max(1, len(source.records) // len(bodies))
        speed = interleaved(floor, ours, bodies, origins, rounds, step=max(1, STEP_RECORDS // per_body))
        found //= rounds * REPEATS
        results.append(PathResult(name, len(source.records), found, source.targets, speed))
    return results


#: Records per slice: both sides run on the same slice back to back (a few ms each, in alternating
#: order), so a neighbour's burst of load slows both sides of the ratio, not one of them.
STEP_RECORDS = 2000
#: Times each side runs on a slice; its fastest run counts (as ``timeit`` advises: on a shared
#: machine the slower runs measure the neighbours, and a burst rarely spans all of them).
REPEATS = 3


def interleaved(
    floor: Callable[[list[bytes], list[str]], None],
    ours: Callable[[list[bytes], list[str]], None],
    bodies: list[bytes],
    origins: list[str],
    rounds: int,
    *,
    step: int,
) -> Ratio:
    """``timing.ratio`` with the rounds cut into slices of ``step`` bodies, each side's time on a
    slice the fastest of ``REPEATS`` runs, alternating with the other side's."""
    ratios, bases, ourss = [], [], []
    clock = time.perf_counter
    for _ in range(rounds):
        base = mine = 0.0
        for n, at in enumerate(range(0, len(bodies), step)):
            part, names = bodies[at : at + step], origins[at : at + step]
            best = {floor: float("inf"), ours: float("inf")}
            for _ in range(REPEATS):
                for side in ((floor, ours) if n % 2 == 0 else (ours, floor)):
                    start = clock()
                    side(part, names)
                    best[side] = min(best[side], clock() - start)
            base += best[floor]
            mine += best[ours]
        ratios.append(base / mine)
        bases.append(base)
        ourss.append(mine)
    return Ratio(statistics.median(ratios), statistics.median(bases), statistics.median(ourss))
