"""Security Hub sink: ASFF findings through BatchImportFindings, one result per finding.

Contract (see ``connector.sinks.base``): every finding of a batch gets exactly one
``DeliveryResult`` — OK, RETRYABLE (left in the source for redelivery) or PERMANENT
("ErrorCode: ErrorMessage", dead-lettered by the pipeline). Nothing is dropped silently:

* **Request limits** — at most 100 findings and 6 MB of JSON per request, one finding at most
  240 KB (https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_BatchImportFindings.html).
  A finding over the per-finding limit is PERMANENT without being sent.
* **Rate** — BatchImportFindings allows 10 requests/s with a burst of 30 per account and Region.
  A token bucket per (account, region) is taken before every request, retries included
  (``connector.sinks.securityhub.ratelimit``). botocore's own retries are off, so every retry is ours: bounded,
  capped exponential backoff with full jitter (``connector.retry``), counted in the metrics.
* **Throttling and 5xx** (HTTP 429, ``LimitExceededException``, ``ThrottlingException``,
  ``TooManyRequestsException``, ``InternalException``, connection errors) are retried; when the
  attempts run out the findings are RETRYABLE.
* **FailedFindings** — every entry is read: internal/throttling codes are resent, any other code
  (``InvalidInput``, ...) is PERMANENT with its code and message. If the counts of an answer do
  not add up, the findings it does not account for are resent (ids are deterministic, so a
  resend overwrites, never duplicates).
* **A whole request refused as invalid** (``InvalidInputException``, or botocore's own parameter
  validation) is split in halves until the offending finding is alone, so one bad finding does
  not take the other 99 down with it.
* **Customer-owned fields** — ``Workflow``, ``Note``, ``UserDefinedFields`` and
  ``VerificationState`` belong to the analyst (``BatchUpdateFindings``); they are never sent, so a
  redelivery or ``connector replay`` cannot reset them (:func:`provider_document`). The one
  exception is ``Workflow.Status`` SUPPRESSED chosen by a suppression rule, sent so that a *new*
  finding is created suppressed: Security Hub ignores ``Workflow`` in ``BatchImportFindings`` once
  the finding exists (https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_BatchImportFindings.html),
  so an analyst's later status stands. moto does not: it merges every top-level key of a re-import
  into the stored finding, so there a re-sent ``Workflow`` would overwrite the analyst's.
* **Organisation trails** — with the default product ARN the caller must be the finding's
  ``AwsAccountId``. Findings are grouped by (AwsAccountId, Region); an account that is neither
  this process's own (STS GetCallerIdentity) nor in ``securityhub.local_accounts`` is written
  with a role assumed from ``securityhub.assume_role_arn_template`` (``connector.sinks.securityhub.credentials``),
  in the finding's Region. Without a template such findings are PERMANENT, with the reason.
  A non-default (partner) product ARN is imported with this process's own credentials.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from connector import metrics
from connector.config import Settings
from connector.errors import DeliveryError
from connector.model import DeliveryResult, FindingFormat, Outcome, RenderedFinding
from connector.retry import Backoff, pause, retry_call
from connector.sinks.base import register
from connector.sinks.securityhub.credentials import IAM_ACTIONS as STS_ACTIONS
from connector.sinks.securityhub.credentials import SessionCache, role_arn_for
from connector.sinks.securityhub.ratelimit import RateLimiter
from connector.validate import import_request_report

log = logging.getLogger(__name__)

MAX_FINDINGS_PER_REQUEST = 100
#: The documented request limit is 6 MB; counted in decimal megabytes to stay on the safe side.
MAX_REQUEST_BYTES = 6_000_000
MAX_FINDING_BYTES = 240 * 1024
#: ``{"Findings":[`` ... ``]}`` around the findings, and the "," between them (the request body
#: is compact JSON: :func:`request_body`).
ENVELOPE_BYTES = len('{"Findings":[]}')
SEPARATOR_BYTES = 1

THROTTLE_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "LimitExceededException", "RequestLimitExceeded"}
)
SERVER_CODES = frozenset({"InternalException", "InternalError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException"})
#: ``FailedFindings`` codes worth resending; anything else is a property of the finding itself.
RETRYABLE_FAILED_CODES = THROTTLE_CODES | SERVER_CODES
INVALID_REQUEST_CODES = frozenset({"InvalidInputException", "ValidationException", "SerializationException"})
CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError)


#: Fields Security Hub customers own and set with BatchUpdateFindings; a provider never sends them.
CUSTOMER_OWNED = frozenset({"Workflow", "Note", "UserDefinedFields", "VerificationState"})


def provider_document(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The finding as this provider may send it: without the customer-owned fields, except a
    suppression rule's ``Workflow.Status`` SUPPRESSED (which only a new finding takes)."""
    if not CUSTOMER_OWNED.intersection(document):
        return document
    out = {k: v for k, v in document.items() if k not in CUSTOMER_OWNED}
    workflow = document.get("Workflow")
    if isinstance(workflow, Mapping) and workflow.get("Status") == "SUPPRESSED":
        out["Workflow"] = {"Status": "SUPPRESSED"}
    return out


def finding_bytes(document: Mapping[str, Any]) -> int:
    """The finding's size in the request body (compact UTF-8 JSON, as :func:`request_body` writes it)."""
    return len(orjson.dumps(document, default=str))


def request_body(documents: Sequence[Mapping[str, Any]]) -> bytes:
    """The BatchImportFindings body, checked as botocore would check it, written by orjson.

    botocore spent 40 ms of this process's CPU on every request of 100 findings (14 ms checking
    the parameters against the model, 26 ms walking the model to write the JSON), where orjson
    writes the same body in 0.4 ms: at Security Hub's 10 requests a second that was 40 % of a
    core. The check keeps botocore's verdict: the compiled ASFF shape (held to the same verdicts
    as ``ParamValidator`` by tests/mappings/test_asff_compiled.py) accepts almost every request,
    and any other is judged by ``ParamValidator`` itself, raising its ``ParamValidationError``."""
    report = import_request_report(documents)
    if report:
        raise ParamValidationError(report=report)
    return orjson.dumps({"Findings": list(documents)}, default=str)


#: The body of the BatchImportFindings call this thread is making (:func:`_use_prepared_body`).
_PREPARED = threading.local()
PREPARED_BODY_HANDLER = "cloudtrail-findings-connector-prepared-body"


def _use_prepared_body(params: dict[str, Any], **_: Any) -> None:
    """``before-call`` of BatchImportFindings: the request carries the body ``request_body`` wrote
    (botocore serialised only an empty list). Signing comes after this event, over this body. A
    call without a prepared body is refused here rather than sent with no findings."""
    body = getattr(_PREPARED, "body", None)
    if body is None:
        raise DeliveryError("BatchImportFindings called without a prepared request body")
    params["body"] = body
    _PREPARED.body = None


def _prepared_client(client: Any) -> Any:
    client.meta.events.register("before-call.securityhub.BatchImportFindings", _use_prepared_body,
                                unique_id=PREPARED_BODY_HANDLER)
    return client


def chunk(
    documents: Sequence[tuple[str, Mapping[str, Any], int]],
    *,
    max_count: int = MAX_FINDINGS_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[tuple[str, Mapping[str, Any], int]]]:
    """Split ``(id, document, size)`` triples into requests within both limits, in order."""
    out: list[list[tuple[str, Mapping[str, Any], int]]] = []
    current: list[tuple[str, Mapping[str, Any], int]] = []
    size = ENVELOPE_BYTES
    for item in documents:
        extra = item[2] + (SEPARATOR_BYTES if current else 0)
        if current and (len(current) >= max_count or size + extra > max_bytes):
            out.append(current)
            current, size = [], ENVELOPE_BYTES
            extra = item[2]
        current.append(item)
        size += extra
    if current:
        out.append(current)
    return out


def _error_code(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return str(error.get("Code") or ""), status
    return type(exc).__name__, 0


def is_throttle(exc: BaseException) -> bool:
    code, status = _error_code(exc)
    return isinstance(exc, ClientError) and (status == 429 or code in THROTTLE_CODES)


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx and lost connections: worth another attempt after a pause."""
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    if isinstance(exc, ClientError):
        code, status = _error_code(exc)
        return is_throttle(exc) or status >= 500 or code in SERVER_CODES
    return False


def describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


@register("securityhub")
class SecurityHubSink:
    name: ClassVar[str] = "securityhub"
    formats: ClassVar[tuple[FindingFormat, ...]] = ("asff",)
    iam_actions: ClassVar[tuple[str, ...]] = (
        "securityhub:BatchImportFindings",
        "securityhub:DescribeHub",
        *STS_ACTIONS,
    )

    def __init__(
        self,
        *,
        sessions: SessionCache | None = None,
        region: str = "",
        rate_per_second: float = 10.0,
        burst: int = 30,
        backoff: Backoff | None = None,
        local_accounts: Sequence[str] = (),
        max_findings_per_request: int = MAX_FINDINGS_PER_REQUEST,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        stop: threading.Event | None = None,
    ) -> None:
        self.sessions = sessions or SessionCache()
        self.region = region or self.sessions.base.region_name or "us-east-1"
        self.limiter = RateLimiter(rate_per_second, burst)
        self.backoff = backoff or Backoff()
        self.local_accounts = frozenset(local_accounts)
        self.max_findings_per_request = min(max_findings_per_request, MAX_FINDINGS_PER_REQUEST)
        self.max_request_bytes = min(max_request_bytes, MAX_REQUEST_BYTES)
        self.stop = stop
        # botocore's retries off: ours are rate-limited and counted, theirs would be neither.
        # Parameter validation off: ``request_body`` checks each request against the same model
        # (and botocore's check of the empty list it serialises would refuse it).
        self.client_config = Config(
            parameter_validation=False,
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra="cloudtrail-findings-connector",
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SecurityHubSink:
        sh = settings.securityhub
        if sh.assume_role_arn_template:
            role_arn_for(sh.assume_role_arn_template, account="000000000000")  # raises ConfigError early
        sessions = SessionCache(role_arn_template=sh.assume_role_arn_template, external_id=sh.external_id)
        return cls(
            sessions=sessions,
            region=sh.region,
            rate_per_second=sh.rate_per_second,
            burst=sh.burst,
            backoff=Backoff(max_attempts=max(1, sh.max_attempts)),
            local_accounts=sh.local_accounts,
        )

    # -- routing -------------------------------------------------------------------------
    def _is_local(self, account: str) -> bool:
        return account in self.local_accounts or account == self.sessions.own_account()

    @staticmethod
    def _default_product(document: Mapping[str, Any], account: str) -> bool:
        """Only the default product ties the caller to ``AwsAccountId``; a partner product ARN
        is imported by the product's own account for any account that enabled it."""
        return str(document.get("ProductArn", "")).endswith(f":product/{account}/default")

    # -- send ----------------------------------------------------------------------------
    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        results: dict[str, DeliveryResult] = {}
        groups: OrderedDict[tuple[str, str, str, bool], list[tuple[str, Mapping[str, Any], int]]] = OrderedDict()
        seen: set[str] = set()
        for item in batch:
            if item.format != "asff" or item.finding_id in seen:
                continue
            seen.add(item.finding_id)
            doc = provider_document(item.document)
            size = finding_bytes(doc)
            if size > MAX_FINDING_BYTES:
                results[item.finding_id] = DeliveryResult(
                    item.finding_id, Outcome.PERMANENT,
                    f"FindingTooLarge: {size} bytes, over Security Hub's {MAX_FINDING_BYTES}-byte limit per finding",
                )
                continue
            account = str(doc.get("AwsAccountId") or item.finding.event.account_id)
            region = str(doc.get("Region") or item.finding.event.region)
            partition = item.finding.event.partition or "aws"
            own = not self._default_product(doc, account)
            groups.setdefault((account, region, partition, own), []).append((item.finding_id, doc, size))

        for (account, region, partition, own), docs in groups.items():
            self._send_group(account, region, partition, docs, results, own_credentials=own)

        out = []
        for item in batch:
            found = results.get(item.finding_id)
            if found is None:  # not ASFF, or an id this sink never saw: never report success
                found = DeliveryResult(item.finding_id, Outcome.RETRYABLE, "securityhub: not processed")
            out.append(found)
        return out

    def _send_group(
        self,
        account: str,
        region: str,
        partition: str,
        docs: list[tuple[str, Mapping[str, Any], int]],
        results: dict[str, DeliveryResult],
        *,
        own_credentials: bool = False,
    ) -> None:
        try:
            if own_credentials or self._is_local(account):
                client = self.sessions.client("securityhub", region=region, config=self.client_config)
                # The quota is the caller's: rate-limit by the account that signs the request.
                caller = self.sessions.own_account()
            elif not self.sessions.role_arn_template:
                reason = (
                    f"AccountNotWritable: the finding is for account {account}, not this connector's "
                    f"({self.sessions.own_account()}), and no securityhub.assume_role_arn_template is set; "
                    "Security Hub imports a default-product finding only from its own account"
                )
                for fid, _, _ in docs:
                    results[fid] = DeliveryResult(fid, Outcome.PERMANENT, reason)
                return
            else:
                client = self.sessions.client(
                    "securityhub", region=region, account=account, partition=partition, config=self.client_config
                )
                caller = account
        except DeliveryError as exc:
            for fid, _, _ in docs:
                results[fid] = DeliveryResult(fid, Outcome.RETRYABLE, str(exc))
            return
        for request in chunk(docs, max_count=self.max_findings_per_request, max_bytes=self.max_request_bytes):
            self._import(client, (caller, region), request, results)

    def _call(self, client: Any, key: tuple[str, str], documents: list[Mapping[str, Any]],
              calls: list[int] | None = None) -> dict[str, Any]:
        """One BatchImportFindings request, with a token first and our own retries.

        ``calls`` is the request's attempt budget, shared with the rounds of ``_import`` that
        resend failed findings: in all at most ``backoff.max_attempts`` calls (they nested to
        8 × 8 = 64 calls for one finding before)."""
        used = calls if calls is not None else [0]
        body = request_body(documents)  # raises ParamValidationError as botocore did
        backoff = dataclasses.replace(self.backoff, max_attempts=max(1, self.backoff.max_attempts - used[0]))

        def attempt() -> dict[str, Any]:
            used[0] += 1
            if not self.limiter.acquire(key, self.stop):
                raise DeliveryError("stopping before the request could be sent")
            _PREPARED.body = body
            try:
                response: dict[str, Any] = _prepared_client(client).batch_import_findings(Findings=[])
            finally:
                _PREPARED.body = None
            return response

        def on_retry(number: int, exc: BaseException) -> None:
            if is_throttle(exc):
                metrics.THROTTLES.labels(self.name).inc()
            log.info("securityhub %s/%s attempt %d failed, retrying: %s", key[0], key[1], number, describe(exc))

        return retry_call(attempt, backoff=backoff, retryable=is_transient, component=self.name, on_retry=on_retry,
                          stop=self.stop)

    def _import(
        self,
        client: Any,
        key: tuple[str, str],
        request: list[tuple[str, Mapping[str, Any], int]],
        results: dict[str, DeliveryResult],
    ) -> None:
        pending = list(request)
        last_error = ""
        calls = [0]  # one attempt budget for the request's retries and its resend rounds
        for round_number in range(1, self.backoff.max_attempts + 1):
            if calls[0] >= self.backoff.max_attempts:
                break
            if round_number > 1 and not pause(self.backoff, round_number - 1, self.name, self.stop):
                break
            try:
                answer = self._call(client, key, [doc for _, doc, _ in pending], calls)
            except ParamValidationError as exc:
                self._bisect(client, key, pending, results, f"ParamValidationError: {exc}")
                return
            except ClientError as exc:
                code, _ = _error_code(exc)
                if code in INVALID_REQUEST_CODES:
                    self._bisect(client, key, pending, results, describe(exc))
                    return
                outcome = Outcome.RETRYABLE
                for fid, _, _ in pending:
                    results[fid] = DeliveryResult(fid, outcome, describe(exc))
                return
            except (BotoCoreError, DeliveryError) as exc:
                for fid, _, _ in pending:
                    results[fid] = DeliveryResult(fid, Outcome.RETRYABLE, describe(exc))
                return
            pending, last_error = self._read_answer(answer, pending, results, key)
            if not pending:
                return
        for fid, _, _ in pending:
            results[fid] = DeliveryResult(fid, Outcome.RETRYABLE, last_error or "securityhub: attempts exhausted")

    def _read_answer(
        self,
        answer: Mapping[str, Any],
        pending: list[tuple[str, Mapping[str, Any], int]],
        results: dict[str, DeliveryResult],
        key: tuple[str, str],
    ) -> tuple[list[tuple[str, Mapping[str, Any], int]], str]:
        """Record what the answer settles; return what must be resent and why."""
        by_id = {fid: (fid, doc, size) for fid, doc, size in pending}
        failed_ids: set[str] = set()
        resend: list[tuple[str, Mapping[str, Any], int]] = []
        last_error = ""
        for entry in answer.get("FailedFindings") or ():
            fid = str(entry.get("Id", ""))
            reason = f"{entry.get('ErrorCode', 'Unknown')}: {entry.get('ErrorMessage', '')}".rstrip(": ")
            if fid not in by_id:
                log.warning("securityhub %s/%s reported a failure for unknown id %r: %s", key[0], key[1], fid, reason)
                continue
            failed_ids.add(fid)
            if str(entry.get("ErrorCode", "")) in RETRYABLE_FAILED_CODES:
                resend.append(by_id[fid])
                last_error = reason
            else:
                results[fid] = DeliveryResult(fid, Outcome.PERMANENT, reason)
        succeeded = [item for item in pending if item[0] not in failed_ids]
        reported = answer.get("SuccessCount")
        if reported is not None and int(reported) != len(succeeded):
            # The answer does not say which findings it holds: resend them (same id, overwrite).
            log.warning(
                "securityhub %s/%s: SuccessCount %s but %d findings not listed as failed; resending them",
                key[0], key[1], reported, len(succeeded),
            )
            last_error = f"InconsistentAnswer: SuccessCount {reported} for {len(succeeded)} findings"
            return resend + succeeded, last_error
        for fid, _, _ in succeeded:
            results[fid] = DeliveryResult(fid, Outcome.OK)
        return resend, last_error

    def _bisect(
        self,
        client: Any,
        key: tuple[str, str],
        pending: list[tuple[str, Mapping[str, Any], int]],
        results: dict[str, DeliveryResult],
        reason: str,
    ) -> None:
        """A request refused as a whole: halve it until the invalid finding stands alone."""
        if len(pending) == 1:
            fid = pending[0][0]
            results[fid] = DeliveryResult(fid, Outcome.PERMANENT, reason)
            return
        middle = len(pending) // 2
        self._import(client, key, pending[:middle], results)
        self._import(client, key, pending[middle:], results)

    # -- health --------------------------------------------------------------------------
    def check(self) -> None:
        """DescribeHub in the configured Region: cheap, and fails when the hub is not enabled."""
        client = self.sessions.client("securityhub", region=self.region, config=self.client_config)
        try:
            client.describe_hub()
        except (ClientError, BotoCoreError) as exc:
            raise DeliveryError(f"securityhub in {self.region}: {describe(exc)}", retryable=True) from exc

    def close(self) -> None:
        """Nothing buffered: every send returns only once its findings are settled."""
