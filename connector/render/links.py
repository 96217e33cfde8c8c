"""Links a finding carries: its documentation in the event's partition, or its page in the SOC's
OpenSearch Dashboards (``securityhub.recommendation_dashboards_url``, off by default).

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
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from connector.model import Finding

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


#: AWS Management Console host per partition (the isolated partitions have none reachable from
#: here and keep the commercial host, as for the documentation).
CONSOLE_HOSTS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$")


def console_url(partition: str, region: str, path: str) -> str:
    """``https://<region>.<partition's console host>/<path>``; ``region`` must be a well-formed
    Region name (it comes from a record), else the partition's global console host is used."""
    host = CONSOLE_HOSTS.get(partition, CONSOLE_HOSTS["aws"])
    prefix = f"{region}." if _REGION.match(region) else ""
    return f"https://{prefix}{host}/{path.lstrip('/')}"


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


#: The index prefix whose saved objects keep the ``ctf-`` ids (connector/sinks/opensearch/setup.py).
DEFAULT_INDEX_PREFIX = "cloudtrail-findings"


@dataclass(frozen=True, slots=True)
class DashboardsLink:
    """Links a finding to its OCSF document (the full runbook) in the SOC's OpenSearch Dashboards:
    Discover's single-document view, ``<base>/app/discover#/doc/<index pattern id>/<index>?id=<id>``.
    The index and the index-pattern id follow what the OpenSearch sink and ``connector setup``
    create for ``index_prefix``; every part taken from the finding is URL-encoded."""

    base: str
    index_prefix: str = DEFAULT_INDEX_PREFIX

    @classmethod
    def from_setting(cls, base: str, index_prefix: str = DEFAULT_INDEX_PREFIX) -> DashboardsLink | None:
        """``None`` when the setting is empty (off); raises ``ValueError`` for a bad URL."""
        return cls(validate_dashboards_url(base), index_prefix) if base else None

    @property
    def index_pattern_id(self) -> str:
        return "ctf-ocsf" if self.index_prefix == DEFAULT_INDEX_PREFIX else f"{self.index_prefix}-ocsf"

    def url(self, finding: Finding) -> str:
        index = f"{self.index_prefix}-ocsf-2004-{finding.event.event_time:%Y.%m.%d}"
        url = (f"{self.base}/app/discover#/doc/{quote(self.index_pattern_id, safe='')}/"
               f"{quote(index, safe='')}?id={quote(finding.id, safe='')}")
        if len(url) > MAX_URL:
            raise ValueError("the Dashboards link of this finding is too long")
        return url
