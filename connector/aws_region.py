"""The AWS region every client uses, resolved once before any client is made.

botocore reads only ``AWS_DEFAULT_REGION`` (and the config file), but Kubernetes manifests,
ECS task definitions and the AWS SDKs for other languages set ``AWS_REGION``; a container
with only ``AWS_REGION`` died with ``NoRegionError``. So: ``AWS_DEFAULT_REGION`` when set
(botocore's own), else ``AWS_REGION``, else the region named by the configured queue URL or stream ARN (or
the Security Hub / OpenSearch region settings), exported as ``AWS_DEFAULT_REGION`` for every
boto3 client of the process. Nothing is exported if nothing names one; botocore's config
file and instance metadata remain the last resort.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, MutableMapping
from urllib.parse import urlsplit

from connector.config import Settings

#: AWS Region names, the one definition every check uses: ``us-east-1``, ``us-gov-west-1``,
#: ``cn-north-1``, ``eu-isoe-west-1``, ``us-iso-east-1``, ``eusc-de-east-1``. A shape, not a
#: list: new Regions appear every year, but never with ``/``, ``.``, spaces or capitals.
REGION_PATTERN = r"[a-z]{2,4}(?:-[a-z]{1,20}){1,3}-[0-9]{1,2}"
REGION = re.compile(rf"^{REGION_PATTERN}\Z")  # \Z: "$" would let a trailing newline through


def region_of(locator: str) -> str | None:
    """The region a queue URL, an ARN or an endpoint URL names, if any (validated)."""
    if not locator:
        return None
    if locator.startswith("arn:"):
        parts = locator.split(":")
        candidate = parts[3] if len(parts) > 5 else ""
        return candidate if REGION.match(candidate) else None
    host = urlsplit(locator).hostname or ""
    # sqs.us-east-1.amazonaws.com, us-east-1.queue.amazonaws.com, vpce-….sqs.us-east-1.vpce.amazonaws.com,
    # search-x.us-east-1.es.amazonaws.com
    return next((label for label in host.split(".") if REGION.match(label)), None)


def candidates(settings: Settings) -> Iterable[str]:
    yield settings.sqs.queue_url
    yield settings.kinesis.stream_name
    yield settings.dead_letter
    yield settings.securityhub.region
    yield settings.opensearch.region
    yield settings.opensearch.url


def resolve(settings: Settings, environ: MutableMapping[str, str] | None = None) -> str | None:
    """The region to use, exported as ``AWS_DEFAULT_REGION`` when it was not set."""
    env = os.environ if environ is None else environ
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")
    if not region:
        for locator in candidates(settings):
            region = locator if REGION.match(locator or "") else region_of(locator)
            if region:
                break
    if region and not env.get("AWS_DEFAULT_REGION"):
        env["AWS_DEFAULT_REGION"] = region
    return region or None
