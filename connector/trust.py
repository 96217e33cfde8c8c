"""Trust boundaries: which S3 objects a notice may make us read, and which identifier values are safe.

Everything in a CloudTrail record or an S3 notice is attacker-influenced: anyone who can write
to the queue (or to a bucket whose notices reach it) chooses the bucket, the key, ``awsRegion``,
``eventID`` and the ARNs. Those values end up in finding ids, in the endpoint URL of a Security
Hub client, in OpenSearch index names and dead-letter paths, so they are checked here, once,
before any of that happens.

S3 notices are followed only into configured trail buckets (``s3.trail_buckets``): an entry
``bucket`` admits keys in the CloudTrail layout
(``[prefix/]AWSLogs/[o-org/]<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/<file>.json[.gz]``,
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html),
an entry ``bucket/prefix`` admits every key under the prefix. Anything else is refused before
the object is fetched, so a notice naming ``s3://finance-private/payroll.csv`` costs a dead
letter that names the object and carries none of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from connector.aws_region import REGION
from connector.errors import ConfigError

__all__ = [
    "CLOUDTRAIL_KEY",
    "PARTITIONS",
    "S3Trust",
    "bucket_name_problem",
    "event_id_problem",
    "key_problem",
    "location_problem",
    "region_problem",
    "safe_display",
]

#: S3 bucket naming rules (general purpose buckets), without the legacy upper-case names:
#: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
#: The key layout CloudTrail writes (an optional trail prefix, an optional organisation id).
CLOUDTRAIL_KEY = re.compile(
    r"^(?:[A-Za-z0-9!_.*'()=+-]+/)*AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/CloudTrail/"
    r"[a-z0-9-]{1,32}/\d{4}/\d{2}/\d{2}/[A-Za-z0-9_.-]{1,200}\.json(?:\.gz)?$"
)
#: Region names: two or more letters, dash-separated words, a number (and test regions' suffix).
#: Shape, not a list: new regions appear every year, but never with ``/``, ``.`` or spaces.
_REGION = REGION
#: CloudTrail event ids are UUIDs; other exporters use ``shard:sequence``. No ``/``, no spaces.
_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._+=@-]{0,255}$")
#: The AWS partitions (https://docs.aws.amazon.com/whitepapers/latest/aws-fault-isolation-boundaries/partitions.html).
PARTITIONS = frozenset({"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"})
_MAX_KEY_BYTES = 1024
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_display(value: Any, limit: int = 200) -> str:
    """An attacker-chosen value fit for a reason or a log line: no control characters, clipped."""
    text = _UNPRINTABLE.sub("?", str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bucket_name_problem(bucket: Any) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or None."""
    if not isinstance(bucket, str) or not _BUCKET.match(bucket) or ".." in bucket or _IPV4.match(bucket):
        return f"{safe_display(bucket)!r} is not a valid S3 bucket name"
    return None


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a key we would read (too long, control characters, ``.``/``..`` parts)."""
    if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        return "the key is longer than S3 allows"
    if _UNPRINTABLE.search(key):
        return "the key has control characters"
    if any(part in (".", "..") for part in key.split("/")):
        return "the key has '.' or '..' path segments"
    return None


def location_problem(bucket: Any, key: str) -> str | None:
    """Why ``s3://bucket/key`` is no S3 location at all (whatever is trusted), or None."""
    problem = bucket_name_problem(bucket) or key_problem(key)
    return f"S3 notice refused: {problem}" if problem else None


def region_problem(region: str) -> str | None:
    """Why ``region`` is not an AWS Region name, or None."""
    return None if _REGION.match(region) else f"awsRegion {safe_display(region, 60)!r} is not an AWS Region name"


def event_id_problem(event_id: str) -> str | None:
    """Why ``event_id`` cannot be part of a finding id, or None."""
    return None if _EVENT_ID.match(event_id) else f"eventID {safe_display(event_id, 60)!r} has characters an id cannot hold"


@dataclass(frozen=True, slots=True)
class S3Trust:
    """The S3 locations notices may point at: (bucket, key prefix); an empty prefix means the
    CloudTrail layout. No entries: every S3 notice is refused."""

    entries: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, locations: Iterable[str]) -> S3Trust:
        """From ``bucket``, ``bucket/prefix`` or ``s3://bucket/prefix`` strings (settings, replay)."""
        entries = []
        for location in locations:
            text = location.strip()
            text = text[5:] if text.startswith("s3://") else text
            bucket, _, prefix = text.partition("/")
            problem = bucket_name_problem(bucket)
            if problem:
                raise ConfigError(f"setting s3.trail_buckets: {problem} (entries are bucket or bucket/prefix)")
            entries.append((bucket, prefix))
        return cls(tuple(entries))

    def with_locations(self, locations: Iterable[str]) -> S3Trust:
        """This trust plus more locations (``connector replay s3://bucket/prefix`` trusts its own)."""
        return S3Trust(self.entries + S3Trust.parse(locations).entries)

    def refusal(self, bucket: Any, key: str) -> str | None:
        """Why an S3 notice for ``s3://bucket/key`` must not be followed, or None to read it."""
        problem = location_problem(bucket, key)
        if problem:
            return problem
        for trusted, prefix in self.entries:
            if bucket != trusted:
                continue
            if prefix and key.startswith(prefix):
                return None
            if not prefix and CLOUDTRAIL_KEY.match(key):
                return None
        where = safe_display(f"s3://{bucket}/{key}")
        if not any(bucket == trusted for trusted, _ in self.entries):
            return (f"S3 notice refused: {where} is not in a configured trail bucket (s3.trail_buckets); "
                    "the object was not read")
        return (f"S3 notice refused: {where} is neither in the CloudTrail key layout nor under a configured "
                "prefix (s3.trail_buckets); the object was not read")
