"""Memory, measured in a fresh process per probe (peak RSS is per process and never goes down).

- ``logfile``: one large gzipped log file read by the replay source and decoded as a stream;
  peak RSS is reported in MB against the file's size.
- ``growth``: 1 M SQS-style records through decode → select → map; RSS after 100 k and after
  1 M records (a leak or an unbounded cache shows as growth).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    """VmHWM, not ru_maxrss: the latter survives exec, so a child started by a large parent
    would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def write_log_file(path: Path, gz_bytes: int) -> tuple[int, int]:
    """A gzipped CloudTrail log file of about ``gz_bytes``; returns (records, targets)."""
    from bench.corpus import noise_record, target_record

    rng = random.Random(11)
    templates = [json.dumps(noise_record(i, rng), separators=(",", ":")).encode() for i in range(4000)]
    targets_every = int(os.environ.get("BENCH_TARGETS_EVERY", "100"))
    count = targets = 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(b'{"Records":[')
        while True:
            parts = []
            for _ in range(1000):
                if count % targets_every == 0:
                    parts.append(json.dumps(target_record(count), separators=(",", ":")).encode())
                    targets += 1
                else:  # a template with fresh ids keeps the entropy (and the ratio) of real traffic
                    parts.append(templates[count % len(templates)].replace(b'"eventID":"', b'"eventID":"%016x' % rng.getrandbits(64), 1))
                count += 1
            out.write((b"," if count > 1000 else b"") + b",".join(parts))
            if path.stat().st_size >= gz_bytes:
                break
        out.write(b"]}")
    return count, targets


def probe_logfile(path: str) -> None:
    """Child process: replay one file through the real pipeline stages, print the figures."""
    from connector.config import LimitSettings
    from connector.deadletters.file import FileDeadLetters
    from connector.envelopes import Decoder
    from connector.factory import FindingFactory
    from connector.pipeline import Pipeline
    from connector.select import Selector
    from connector.sinks.jsonl import JsonlSink
    from connector.sources.files import FilesSource

    factory = FindingFactory.load()
    selector = Selector(factory.event_names)
    decoder = Decoder(LimitSettings(), prefilter=selector.pattern)
    out = Path(path).parent / "out"
    out.mkdir()
    pipeline = Pipeline(factory=factory, decoder=decoder, selector=selector, sinks=[JsonlSink(out, fsync=lambda _fd: None)],
                        dead_letters=FileDeadLetters(f"file://{out}/letters"))
    source = FilesSource(str(Path(path).parent), skip=frozenset())
    base = _rss_mb()
    started = time.monotonic()
    findings = skipped = letters = 0
    for message in source.receive():
        result = pipeline.handle([message])
        findings += result.findings
        skipped += result.skipped
        letters += result.dead_lettered
    print(json.dumps({"peak_mb": _peak_mb(), "start_mb": base, "findings": findings, "skipped": skipped,
                      "letters": letters, "seconds": time.monotonic() - started}))


def probe_growth(total: int) -> None:
    from bench.corpus import Corpus
    from connector.config import LimitSettings
    from connector.envelopes import Decoder
    from connector.factory import FindingFactory
    from connector.pipeline import Pipeline
    from connector.select import Selector

    factory = FindingFactory.load()
    selector = Selector(factory.event_names)
    pipeline = Pipeline(factory=factory, decoder=Decoder(LimitSettings(), prefilter=selector.pattern), selector=selector,
                        sinks=[], dead_letters=None)  # type: ignore[arg-type]
    corpus = Corpus.build(100_000, seed=3)
    marks = {}
    done = 0
    while done < total:
        for body in corpus.records:
            pipeline.map_records(body, f"m{done}")
            done += 1
            if done in (100_000, total):
                marks[done] = _rss_mb()
    print(json.dumps({"rss_100k_mb": marks[100_000], "rss_total_mb": marks[total], "records": total}))


def _child(*args: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "bench.memory", *args], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"memory probe {args[0]} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def logfile(gz_mb: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "111122223333_CloudTrail_eu-west-1_20261201T0000Z_big.json.gz"
        records, targets = write_log_file(path, gz_mb * 1_000_000)
        size = path.stat().st_size
        figures = _child("logfile", str(path))
    figures.update(gz_mb=size / 1e6, records=records, targets=targets)
    return figures


def growth(total: int) -> dict[str, float]:
    return _child("growth", str(total))


if __name__ == "__main__":
    if sys.argv[1] == "logfile":
        probe_logfile(sys.argv[2])
    else:
        probe_growth(int(sys.argv[2]))
