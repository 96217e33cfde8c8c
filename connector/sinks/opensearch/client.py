"""An opensearch-py client from settings: no auth, basic auth, or SigV4 for Amazon OpenSearch Service.

TLS certificates are verified by default (``opensearch.verify_tls``); a private CA is given with
``opensearch.ca_bundle``. SigV4 uses the process's AWS credentials (IRSA, instance profile...)
through opensearch-py's own signer, for the ``es`` (domains) or ``aoss`` (serverless) service.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from opensearchpy import OpenSearch, RequestsHttpConnection

from connector.config import OpenSearchSettings
from connector.errors import ConfigError

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


def make_client(settings: OpenSearchSettings, **overrides: Any) -> OpenSearch:
    if not settings.url:
        raise ConfigError("setting opensearch.url (CONNECTOR_OPENSEARCH_URL) is required for the opensearch sink")
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
        "http_compress": True,
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
