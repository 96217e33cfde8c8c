"""An opensearch-py client from settings: no auth, basic auth, or SigV4 for Amazon OpenSearch Service.

TLS certificates are verified by default (``opensearch.verify_tls``); a private CA is given with
``opensearch.ca_bundle``. SigV4 uses the process's AWS credentials (IRSA, instance profile...)
through opensearch-py's own signer for the ``es`` service (Amazon OpenSearch Service domains).

``service: aoss`` (OpenSearch Serverless) is refused here, so ``run``, ``setup`` and ``findings``
stop at start-up with the reason instead of failing later: time-series collections do not accept
a client-chosen ``_id`` (which is how a redelivery overwrites instead of duplicating), Serverless
has no ``_cluster/health`` (readiness) and no ISM (retention). A domain, or a self-managed
cluster, is what the sink is written for.

The connection pool holds ``pool_maxsize`` connections (urllib3's default is ONE per host, so
pipeline workers writing at once each opened and then discarded a connection with "Connection
pool is full"): the sink sizes it to ``max_in_flight`` plus one for the readiness probe.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from opensearchpy import OpenSearch, RequestsHttpConnection

from connector.config import OpenSearchSettings
from connector.errors import ConfigError

AOSS_REFUSED = (
    "opensearch.service=aoss (OpenSearch Serverless) is not supported: time-series collections do not "
    "accept the client-chosen _id the connector relies on to overwrite a redelivered finding instead of "
    "duplicating it, and Serverless has no _cluster/health or ISM; use an Amazon OpenSearch Service domain "
    "(opensearch.service=es) or a self-managed cluster"
)
log = logging.getLogger(__name__)


def insecure_settings(settings: OpenSearchSettings) -> list[str]:
    """What in these settings gives credentials or findings away on the network."""
    found = []
    url = urlsplit(settings.url)
    if url.scheme == "https" and not settings.verify_tls:
        found.append("opensearch.verify_tls is false: any certificate is accepted, so anyone on the path can read and change what is sent")
    if url.scheme == "http" and (settings.auth == "basic" or url.password):
        found.append("basic-auth credentials would travel over plain http:// (opensearch.url); use https://")
    return found



_OBJECT = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>: ")


def describe(error: object, limit: int = 300) -> str:
    """An OpenSearch client error as one short line that keeps its cause ("Connection refused")."""
    return _OBJECT.sub("", str(error))[:limit]


class _OneLine(logging.Filter):
    """opensearch-py logs every failed request with a full traceback (``exc_info``); an expected
    failure (the cluster is down, a 429) is one line with its cause instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            if record.exc_info[1] is not None:
                record.msg, record.args = f"{record.getMessage()}: {describe(record.exc_info[1])}", None
            record.exc_info, record.exc_text = None, None  # (None, None, None) would print "NoneType: None"
        return True


def _quiet_tracebacks() -> None:
    logger = logging.getLogger("opensearch")
    if not any(isinstance(f, _OneLine) for f in logger.filters):
        logger.addFilter(_OneLine())


def make_client(settings: OpenSearchSettings, *, pool_maxsize: int = 4, **overrides: Any) -> OpenSearch:
    """A client for ``settings``; ``pool_maxsize`` connections may be open at once (one per thread)."""
    if not settings.url:
        raise ConfigError("setting opensearch.url (CONNECTOR_OPENSEARCH_URL) is required for the opensearch sink")
    if settings.service == "aoss":
        raise ConfigError(AOSS_REFUSED)
    _quiet_tracebacks()
    for problem in insecure_settings(settings):
        if not settings.allow_insecure:
            raise ConfigError(f"{problem}; set opensearch.allow_insecure (CONNECTOR_OPENSEARCH_ALLOW_INSECURE=true) to accept it")
        log.warning("insecure OpenSearch settings accepted (opensearch.allow_insecure): %s", problem)
    kwargs: dict[str, Any] = {
        "hosts": [settings.url],
        "timeout": settings.timeout_seconds,
        "verify_certs": settings.verify_tls,
        "ssl_show_warn": settings.verify_tls,
        "max_retries": 0,  # retries are ours: bounded, with jitter, and counted
        "retry_on_timeout": False,
        # No gzip of request bodies: opensearch-py compresses at level 9, 64 ms of CPU per MB
        # (2.7x the JSON serialisation itself), which made the sink 0.55x a plain helpers.bulk
        # (bench/opensearch_bulk.py); in-region bandwidth to a domain is not the bottleneck.
        "http_compress": False,
        "pool_maxsize": max(1, pool_maxsize),
    }
    if settings.ca_bundle:
        kwargs["ca_certs"] = settings.ca_bundle
    if settings.auth == "basic":
        if not settings.username:
            raise ConfigError("setting opensearch.username is required with opensearch.auth=basic")
        kwargs["http_auth"] = (settings.username, settings.password)
    elif settings.auth == "sigv4":
        import boto3
        from opensearchpy import RequestsAWSV4SignerAuth

        session = boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise ConfigError("opensearch.auth=sigv4 but no AWS credentials were found")
        region = settings.region or session.region_name
        if not region:
            raise ConfigError("setting opensearch.region is required with opensearch.auth=sigv4")
        kwargs["http_auth"] = RequestsAWSV4SignerAuth(credentials, region, settings.service)
        kwargs["connection_class"] = RequestsHttpConnection
    kwargs.update(overrides)
    return OpenSearch(**kwargs)
