"""Links a finding carries: its documentation in the event's partition, or its page in the SOC's
OpenSearch Dashboards.

Pure functions. The mapping files name the documentation on ``docs.aws.amazon.com``; that host
serves the commercial and the AWS GovCloud (US) partitions (GovCloud's differences are documented
there, under ``/govcloud-us/``). The China Regions have their own documentation site,
``docs.amazonaws.cn``, with the same paths under ``/en_us/`` for the English pages
(e.g. https://docs.amazonaws.cn/en_us/vpc/latest/userguide/nacl-rules.html). The isolated
partitions have no public documentation host, so they keep the commercial link. Only the
finding's own documentation page moves (its user-guide page exists on both sites); the runbook's
references (CLI reference and others) stay commercial, the site every partition's users can read.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

COMMERCIAL_DOCS = "https://docs.aws.amazon.com/"
#: Documentation root per partition; a partition not listed keeps the commercial host.
DOCS_ROOTS = {
    "aws": COMMERCIAL_DOCS,
    "aws-us-gov": COMMERCIAL_DOCS,
    "aws-cn": "https://docs.amazonaws.cn/en_us/",
}
#: ASFF ``Remediation.Recommendation.Url`` is a string; keep it well inside what consoles display.
MAX_URL = 2048
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def docs_url(url: str, partition: str) -> str:
    """``url`` on the documentation site of ``partition`` (only commercial-docs links move)."""
    root = DOCS_ROOTS.get(partition, COMMERCIAL_DOCS)
    if root == COMMERCIAL_DOCS or not url.startswith(COMMERCIAL_DOCS):
        return url
    return root + url[len(COMMERCIAL_DOCS):]


def validate_dashboards_url(base: str) -> str:
    """The SOC's OpenSearch Dashboards base URL, checked: https, a host name, no query, fragment
    or credentials (it is prefixed to every finding's link). Returns it without a trailing ``/``."""
    parts = urlsplit(base)
    if parts.scheme != "https":
        raise ValueError(f"dashboards URL must use https, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname or not _HOST.match(parts.hostname) or parts.username or parts.password:
        raise ValueError("dashboards URL needs a plain host name (no credentials)")
    if parts.query or parts.fragment or any(c in base for c in " \"'<>\\\n\r\t"):
        raise ValueError("dashboards URL must not carry a query, a fragment, spaces or quotes")
    try:
        _ = parts.port
    except ValueError as error:
        raise ValueError(f"dashboards URL has a bad port: {error}") from None
    return base.rstrip("/")


def dashboards_finding_url(base: str, index: str, finding_id: str) -> str:
    """The finding's document in OpenSearch Dashboards' Discover "single document" view
    (``/app/discover#/doc/<index pattern>/<index>?id=<id>``), every part URL-encoded."""
    url = (f"{validate_dashboards_url(base)}/app/discover#/doc/{quote(index, safe='')}/"
           f"{quote(index, safe='')}?id={quote(finding_id, safe='')}")
    if len(url) > MAX_URL:
        raise ValueError("dashboards URL for this finding is too long")
    return url
