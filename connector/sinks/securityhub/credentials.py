"""Assumed-role sessions for writing into other accounts, cached and refreshed before expiry.

Why: with the default product ARN (``.../product/<account>/default``) BatchImportFindings only
accepts findings whose ``AwsAccountId`` is the caller's own account. An organisation trail
carries events of every member account, so the Security Hub sink imports each account's
findings with credentials of a role *in that account* (``assume_role_arn_template``, e.g.
``arn:{partition}:iam::{account}:role/SecurityHubImporter``, optionally with an external id).

STS credentials last an hour; a session is replaced ``refresh_margin`` seconds before it
expires so that a batch (and its retries) never runs on credentials about to lapse. Clients are
cached with the credentials they were built from and rebuilt on refresh: a botocore client
keeps the credentials it was created with.

IAM: the process's own role needs ``sts:AssumeRole`` on the target roles (and
``sts:GetCallerIdentity``, which needs no permission); each target role needs
``securityhub:BatchImportFindings`` and a trust policy naming the connector's role.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from connector.errors import ConfigError, DeliveryError

IAM_ACTIONS: tuple[str, ...] = ("sts:AssumeRole", "sts:GetCallerIdentity")
SESSION_NAME = "cloudtrail-findings-connector"


@dataclass(frozen=True, slots=True)
class RoleSession:
    """A boto3 session on one role's temporary credentials, and when they stop working."""

    role_arn: str
    session: boto3.Session
    access_key_id: str
    expires_at: float  # on the cache's clock


def role_arn_for(template: str, *, account: str, partition: str = "aws", region: str = "") -> str:
    """Fill ``{account}``, ``{partition}`` and ``{region}`` in the role ARN template."""
    try:
        return template.format(account=account, partition=partition, region=region)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"setting securityhub.assume_role_arn_template: {template!r} cannot be filled "
            f"(placeholders are {{account}}, {{partition}}, {{region}}): {exc}"
        ) from None


class SessionCache:
    """This process's own session plus one cached assumed-role session per target role.

    Thread-safe: the sink may be called from several pipeline workers at once; two threads
    that need the same role at once assume it only once.
    """

    def __init__(
        self,
        *,
        base_session: boto3.Session | None = None,
        role_arn_template: str = "",
        external_id: str = "",
        duration_seconds: int = 3600,
        refresh_margin: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base = base_session or boto3.Session()
        self.role_arn_template = role_arn_template
        self.external_id = external_id
        self.duration_seconds = duration_seconds
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._roles: dict[str, RoleSession] = {}
        self._clients: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._own_account: str | None = None
        self.assume_calls = 0

    # -- identity ------------------------------------------------------------------------
    def own_account(self) -> str:
        """This process's account (STS GetCallerIdentity, asked once)."""
        if self._own_account is None:
            try:
                self._own_account = str(self.base.client("sts").get_caller_identity()["Account"])
            except (ClientError, BotoCoreError) as exc:
                raise DeliveryError(f"sts:GetCallerIdentity failed: {exc}") from exc
        return self._own_account

    # -- assumed roles -------------------------------------------------------------------
    def role_session(self, account: str, *, partition: str = "aws", region: str = "") -> RoleSession:
        """The cached session for ``account``'s role, assumed (again) when missing or near expiry."""
        if not self.role_arn_template:
            raise ConfigError(
                f"no securityhub.assume_role_arn_template: cannot write findings into account {account}"
            )
        role_arn = role_arn_for(self.role_arn_template, account=account, partition=partition, region=region)
        with self._lock:
            current = self._roles.get(role_arn)
            if current is not None and current.expires_at - self.refresh_margin > self._clock():
                return current
            fresh = self._assume(role_arn, region)
            self._roles[role_arn] = fresh
            return fresh

    def _assume(self, role_arn: str, region: str) -> RoleSession:
        kwargs: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": SESSION_NAME,
            "DurationSeconds": self.duration_seconds,
        }
        if self.external_id:
            kwargs["ExternalId"] = self.external_id
        sts = self.base.client("sts", region_name=region or self.base.region_name)
        try:
            answer = sts.assume_role(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise DeliveryError(f"sts:AssumeRole {role_arn} failed: {exc}") from exc
        self.assume_calls += 1
        creds = answer["Credentials"]
        expiration = creds.get("Expiration")
        lifetime = (
            expiration.timestamp() - time.time()
            if isinstance(expiration, datetime)
            else float(self.duration_seconds)
        )
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region or self.base.region_name,
        )
        return RoleSession(role_arn, session, creds["AccessKeyId"], self._clock() + lifetime)

    # -- clients -------------------------------------------------------------------------
    def client(
        self,
        service: str,
        *,
        region: str,
        account: str | None = None,
        partition: str = "aws",
        config: Config | None = None,
    ) -> Any:
        """A client in ``region``: this process's own for ``account`` None, else the role's.

        Cached per (service, region, account) and rebuilt whenever the role was re-assumed.
        """
        if account is None:
            key = (service, region, "")
            with self._lock:
                cached = self._clients.get(key)
                if cached is None:
                    cached = (float("inf"), self.base.client(service, region_name=region, config=config))
                    self._clients[key] = cached
                return cached[1]
        role = self.role_session(account, partition=partition, region=region)
        key = (service, region, account)
        with self._lock:
            cached = self._clients.get(key)
            if cached is None or cached[0] != role.expires_at:
                cached = (role.expires_at, role.session.client(service, region_name=region, config=config))
                self._clients[key] = cached
            return cached[1]
