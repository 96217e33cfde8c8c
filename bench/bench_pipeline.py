"""Throughput and memory of the decode → select → map → render → validate path.

Figures are ratios against baselines measured in the same run, because these machines are shared
and noisy: absolute numbers from one run say little, ratios say how much work we add on top of
the unavoidable (reading the JSON).

    python bench/bench_pipeline.py [--records 20000] [--target-share 0.01]

Baselines:
- ``json.loads`` of every record (the least any consumer must do);
- for memory: the size of the decompressed log file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector.config import LimitSettings
from connector.envelopes import DecodedRecord, Decoder
from connector.factory import FindingFactory
from connector.select import Selector
from tests.support.records import EVENTS, make_record

NOISE_NAMES = ("GetObject", "PutObject", "DescribeInstances", "AssumeRole", "Decrypt", "ListBuckets", "DeleteNetworkAcl")


def noise(i: int) -> dict:
    name = NOISE_NAMES[i % len(NOISE_NAMES)]
    record = make_record("DeleteNetworkInterface", event_id=f"noise-{i}")
    record.update(eventName=name, eventSource="s3.amazonaws.com" if "Object" in name else "ec2.amazonaws.com")
    record["requestParameters"] = {"bucketName": f"bucket-{i % 97}", "key": f"k/{i}"}
    return record


def build(records: int, share: float, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(records):
        if rng.random() < share:
            out.append(json.dumps(make_record(EVENTS[i % len(EVENTS)], event_id=f"t-{i}")).encode())
        else:
            out.append(json.dumps(noise(i)).encode())
    return out


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--target-share", type=float, default=0.01)
    args = parser.parse_args()

    factory = FindingFactory.load()
    selector = Selector(factory.event_names)
    decoder = Decoder(LimitSettings(), prefilter=selector.might_match)
    bodies = build(args.records, args.target_share)

    def baseline() -> None:
        for body in bodies:
            json.loads(body)

    findings = 0

    def per_message() -> None:
        nonlocal findings
        findings = 0
        for i, body in enumerate(bodies):
            for item in decoder.decode(body, origin=f"m{i}"):
                if isinstance(item, DecodedRecord) and selector.matches(item.record):
                    findings += len(factory.render(item.record))

    t_base = best_of(baseline)
    t_pipe = best_of(per_message)
    print(f"records: {len(bodies)}, target share {args.target_share:.1%}, findings rendered: {findings}")
    print(f"baseline json.loads every record: {len(bodies) / t_base:,.0f} records/s")
    print(f"pipeline (SQS-style, one record per message): {len(bodies) / t_pipe:,.0f} records/s "
          f"= {t_base / t_pipe:.2f}x the json.loads baseline")

    # one big gzip log file, the replay/S3 shape
    log = gzip.compress(json.dumps({"Records": [json.loads(b) for b in bodies]}).encode())
    raw_size = len(gzip.decompress(log))

    def logfile() -> None:
        for item in decoder.decode(log, origin="log"):
            if isinstance(item, DecodedRecord) and selector.matches(item.record):
                factory.render(item.record)

    def logfile_select_only() -> None:
        for item in decoder.decode(log, origin="log"):
            if isinstance(item, DecodedRecord):
                selector.matches(item.record)

    t_log = best_of(logfile)
    t_select = best_of(logfile_select_only)
    t_log_base = best_of(lambda: json.loads(gzip.decompress(log)))
    print(f"log file ({raw_size / 1e6:.1f} MB decompressed): decode+select {t_log_base / t_select:.2f}x, "
          f"with mapping the targets {t_log_base / t_log:.2f}x the gunzip+json.loads baseline")

    def peak_of(fn) -> int:
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return peak

    base_peak = peak_of(lambda: json.loads(gzip.decompress(log)))
    peak = peak_of(logfile)
    print(f"peak Python memory for the log file: {peak / 1e6:.1f} MB = {peak / base_peak:.2f}x the gunzip+json.loads "
          f"baseline ({base_peak / 1e6:.1f} MB; {peak / raw_size:.1f}x the decompressed size)")

    target = [json.dumps(make_record(EVENTS[i % 5], event_id=f"x-{i}")).encode() for i in range(2000)]

    def all_targets() -> None:
        for body in target:
            for item in decoder.decode(body, origin="t"):
                factory.render(item.record)  # type: ignore[union-attr]

    t_targets = best_of(all_targets, 1)
    t_targets_base = best_of(lambda: [json.loads(b) for b in target], 3)
    print(f"worst case, every record a target (map+render+validate both formats): "
          f"{len(target) / t_targets:,.0f} records/s = {t_targets_base / t_targets:.3f}x the json.loads baseline")


if __name__ == "__main__":
    main()
