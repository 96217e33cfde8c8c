"""``connector replay`` over 10,000+ small log files in S3 (a local moto server), against a plain loop.

The baseline is what a backfill script does without the connector: list the prefix, then for
each key ``GetObject`` and gunzip, one after another (no decoding into records, no mapping,
no delivery). The measured path is the real command in its own process (``connector replay
s3://... --sinks jsonl``: lazy listing, fetch workers, decode, select, map, validate, deliver
to JSONL with fsync, the SQLite resume state); its rate is the one its summary reports (from
the start of the run loop, imports and mapping load excluded). Both read the same objects in
the same run, in interleaved rounds (a fifth of the files each, baseline first). Against moto every request costs the server a few milliseconds
of CPU, so the ratio says how much of the fetch latency the workers hide, not S3's real speed.
``lost`` is targets missing from the JSONL output.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

RECORDS_PER_FILE = 20
#: One file in TARGET_EVERY holds a target (its first record).
TARGET_EVERY = 10


def log_file(index: int) -> bytes:
    from bench.corpus import noise_record, target_record

    records = [noise_record(index * RECORDS_PER_FILE + k) for k in range(RECORDS_PER_FILE)]
    if index % TARGET_EVERY == 0:
        records[0] = target_record(index)
    return gzip.compress(json.dumps({"Records": records}, separators=(",", ":")).encode(), compresslevel=6)


def key(index: int, rounds: int, count: int) -> str:
    """Round ``r`` of the files under ``AWSLogs/<r>/``: each round's prefix is read by both sides."""
    return (f"AWSLogs/{index * rounds // count}/123456789012/CloudTrail/us-east-1/2026/12/01/"
            f"123456789012_CloudTrail_us-east-1_20261201T{index // 600 % 24:02d}{index // 10 % 60:02d}Z_{index:07d}.json.gz")


def plain_loop(s3: Any, bucket: str, prefix: str) -> tuple[int, int, float]:
    """Files, bytes inflated and seconds for list + GetObject + gunzip, one at a time."""
    started = time.monotonic()
    files = inflated = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            inflated += len(gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
            files += 1
    return files, inflated, time.monotonic() - started


def replay(env: dict[str, str], bucket: str, prefix: str, work: Path, workers: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "replay", f"s3://{bucket}/{prefix}", "--sinks", "jsonl",
         "--state", str(work / "state.sqlite"), "--workers", str(workers), "--progress-seconds", "3600"],
        env=dict(env, CONNECTOR_JSONL_DIRECTORY=str(work / "out"), CONNECTOR_DEAD_LETTER=f"file://{work}/dlq"),
        capture_output=True, text=True, timeout=3600,
    )
    for line in proc.stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "total_files" in entry:
            entry["returncode"] = proc.returncode
            return dict(entry)
    raise RuntimeError(f"replay gave no summary (exit {proc.returncode}): {proc.stderr[-2000:]}")


def run(count: int, workers: int = 8, rounds: int = 5) -> dict[str, Any]:
    """``rounds`` interleaved rounds of ``count / rounds`` files each (plain loop, then replay, on
    the same prefix), so a noisy neighbour slows both sides of a round's ratio; the figure is
    the median of the rounds' ratios, the rates are over all ``count`` files."""
    import statistics

    from tests.support.moto import put_objects, start_moto_server

    server = start_moto_server()
    saved = dict(os.environ)
    try:
        os.environ.update(server.env())
        import boto3

        s3 = boto3.client("s3")
        bucket = f"bench-replay-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        put_objects(server, bucket, ((key(i, rounds, count), log_file(i)) for i in range(count)))
        ratios: list[float] = []
        base_files = base_seconds = 0.0
        files = records = findings = 0
        seconds = 0.0
        found = 0
        codes: set[int] = set()
        with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
            for r in range(rounds):
                prefix = f"AWSLogs/{r}/"
                n, _inflated, took = plain_loop(s3, bucket, prefix)
                work = Path(tmp) / str(r)
                ours = replay(dict(os.environ), bucket, prefix, work, workers)
                ratios.append(ours["files_per_s"] / (n / took))
                base_files += n
                base_seconds += took
                files += int(ours["files"])
                records += int(ours["records"])
                findings += int(ours["findings"])
                seconds += float(ours["seconds"])
                codes.add(int(ours["returncode"]))
                out = work / "out" / "asff.jsonl"
                found += len({json.loads(line)["Id"] for line in out.read_text().splitlines()}) if out.exists() else 0
        targets = len(range(0, count, TARGET_EVERY))
        return {
            "replay_files_per_s_over_plain_loop": statistics.median(ratios),
            "replay_round_ratios": [round(x, 2) for x in ratios],
            "replay_files_per_s": files / seconds, "replay_records_per_s": records / seconds,
            "replay_seconds": seconds, "replay_files": files, "replay_records": records,
            "replay_findings": findings, "replay_exit_codes": sorted(codes), "replay_workers": workers,
            "plain_loop_files_per_s": base_files / base_seconds,
            "plain_loop_records_per_s": base_files * RECORDS_PER_FILE / base_seconds,
            "plain_loop_seconds": base_seconds, "plain_loop_files": int(base_files),
            "lost_replay": max(0, targets - found) + max(0, count * RECORDS_PER_FILE - records),
        }
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
