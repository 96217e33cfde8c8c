"""Interleaved rounds: each round times the baseline and the measured path back to back on the
same bytes, and the ratio is the median of the per-round ratios, so a noisy neighbour that slows
one round slows both sides of its ratio."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Ratio:
    """``ours`` over ``base`` as a speed ratio (>1: faster than the baseline)."""

    ratio: float
    base_seconds: float
    ours_seconds: float


def ratio(base: Callable[[], object], ours: Callable[[], object], rounds: int) -> Ratio:
    ratios, bases, ourss = [], [], []
    for _ in range(rounds):
        b = seconds(base)
        o = seconds(ours)
        ratios.append(b / o)
        bases.append(b)
        ourss.append(o)
    return Ratio(statistics.median(ratios), statistics.median(bases), statistics.median(ourss))
