"""How the Security Hub sink reads BatchImportFindings answers, against a scripted client.

``ScriptedHub`` answers ``batch_import_findings`` the way the API contract allows — partial
``FailedFindings``, throttling errors, a whole request refused, counts that do not add up — and
``LocalSessions`` is the session cache's contract (own account, a client per Region). The real
API shape is exercised against moto in tests/integration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from connector.factory import FindingFactory
from connector.model import Outcome, RenderedFinding
from connector.retry import Backoff
from connector.sinks.securityhub.sink import MAX_FINDING_BYTES, SecurityHubSink
from tests.support.records import ACCOUNT, an_event, make_record

Answer = Callable[[list[Mapping[str, Any]]], dict[str, Any]]


def throttled(_: list[Mapping[str, Any]]) -> dict[str, Any]:
    raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"},
                       "ResponseMetadata": {"HTTPStatusCode": 429}}, "BatchImportFindings")


def accept_all(findings: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {"SuccessCount": len(findings), "FailedCount": 0, "FailedFindings": []}


class ScriptedEvents:
    """botocore's ``client.meta.events`` as far as the sink uses it: one ``before-call`` handler,
    which may replace the serialised request body."""

    def __init__(self) -> None:
        self.before_call: Callable[..., None] | None = None

    def register(self, event: str, handler: Callable[..., None], unique_id: str = "") -> None:
        assert event == "before-call.securityhub.BatchImportFindings"
        self.before_call = handler


class ScriptedHub:
    """Plays the answers in order (the last one repeats) and records every request's ids. Like
    botocore it serialises the parameters and runs the ``before-call`` handler on the request,
    then reads the findings from the body that is sent."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers) or [accept_all]
        self.requests: list[list[str]] = []
        self.meta = SimpleNamespace(events=ScriptedEvents())

    def batch_import_findings(self, *, Findings: list[Mapping[str, Any]]) -> dict[str, Any]:
        request = {"body": json.dumps({"Findings": Findings}).encode()}
        if self.meta.events.before_call is not None:
            self.meta.events.before_call(params=request, model=None)
        Findings = json.loads(request["body"])["Findings"]
        self.requests.append([str(f["Id"]) for f in Findings])
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(Findings)


class LocalSessions:
    role_arn_template = ""

    def __init__(self, hub: ScriptedHub, account: str = ACCOUNT) -> None:
        self.hub = hub
        self.account = account
        self.base = type("Base", (), {"region_name": "us-east-1"})()

    def own_account(self) -> str:
        return self.account

    def client(self, service: str, **kwargs: Any) -> ScriptedHub:
        assert service == "securityhub"
        return self.hub


def findings(n: int) -> list[RenderedFinding]:
    factory = FindingFactory.load()
    out = []
    for i in range(n):
        out += [r for r in factory.render(make_record(an_event(i), event_id=f"00000000-0000-4000-8000-{i:012d}"))
                if r.format == "asff"]
    return out


def make_sink(hub: ScriptedHub, **kwargs: Any) -> SecurityHubSink:
    return SecurityHubSink(sessions=LocalSessions(hub), rate_per_second=0,  # type: ignore[arg-type]
                           backoff=Backoff(base_seconds=0.001, cap_seconds=0.002, max_attempts=4), **kwargs)


def outcomes(results: list[Any]) -> dict[str, Outcome]:
    return {r.finding_id: r.outcome for r in results}


def test_partial_failed_findings_settle_each_finding_on_its_own() -> None:
    batch = findings(4)
    ids = [f.finding_id for f in batch]

    def partial(sent: list[Mapping[str, Any]]) -> dict[str, Any]:
        failed = [{"Id": ids[1], "ErrorCode": "InvalidInput", "ErrorMessage": "Finding is invalid"},
                  {"Id": ids[2], "ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}]
        return {"SuccessCount": len(sent) - 2, "FailedCount": 2, "FailedFindings": failed}

    hub = ScriptedHub(partial, accept_all)
    results = make_sink(hub).send(batch)
    by_id = {r.finding_id: r for r in results}
    assert by_id[ids[1]].outcome is Outcome.PERMANENT and by_id[ids[1]].error == "InvalidInput: Finding is invalid"
    assert by_id[ids[2]].outcome is Outcome.OK, "a throttled entry is resent, and then accepted"
    assert by_id[ids[0]].outcome is Outcome.OK and by_id[ids[3]].outcome is Outcome.OK
    assert hub.requests == [ids, [ids[2]]], "only the throttled finding is sent again"


def test_throttling_is_retried_then_left_for_redelivery_when_it_persists() -> None:
    batch = findings(2)
    recovered = ScriptedHub(throttled, throttled, accept_all)
    assert set(outcomes(make_sink(recovered).send(batch)).values()) == {Outcome.OK}
    assert len(recovered.requests) == 3
    stuck = ScriptedHub(throttled)
    results = make_sink(stuck).send(batch)
    assert {r.outcome for r in results} == {Outcome.RETRYABLE}, "never PERMANENT: a throttle is not the finding's fault"
    assert all("TooManyRequestsException" in (r.error or "") for r in results)


def test_a_lost_connection_is_retryable() -> None:
    def unreachable(_: list[Mapping[str, Any]]) -> dict[str, Any]:
        raise EndpointConnectionError(endpoint_url="https://securityhub.example")

    results = make_sink(ScriptedHub(unreachable)).send(findings(1))
    assert [r.outcome for r in results] == [Outcome.RETRYABLE]


def test_a_request_refused_as_a_whole_is_halved_until_the_bad_finding_is_alone() -> None:
    batch = findings(5)
    bad = batch[3].finding_id

    def refuse_if_bad(sent: list[Mapping[str, Any]]) -> dict[str, Any]:
        if any(f["Id"] == bad for f in sent):
            raise ClientError({"Error": {"Code": "InvalidInputException", "Message": "bad field"}}, "BatchImportFindings")
        return accept_all(sent)

    hub = ScriptedHub(refuse_if_bad)
    results = outcomes(make_sink(hub).send(batch))
    assert results.pop(bad) is Outcome.PERMANENT
    assert set(results.values()) == {Outcome.OK}
    assert [bad] in hub.requests


def test_an_answer_whose_counts_do_not_add_up_is_resent_not_trusted() -> None:
    batch = findings(3)
    hub = ScriptedHub(lambda sent: {"SuccessCount": 1, "FailedCount": 0, "FailedFindings": []}, accept_all)
    results = make_sink(hub).send(batch)
    assert {r.outcome for r in results} == {Outcome.OK} and len(hub.requests) == 2


def test_a_finding_over_the_size_limit_is_permanent_without_being_sent() -> None:
    item = findings(1)[0]
    # (Not a big Note: the sink never sends customer-owned fields.)
    big = RenderedFinding(item.finding_id, "asff", {**item.document, "Description": "x" * MAX_FINDING_BYTES},
                          item.finding)
    hub = ScriptedHub()
    results = make_sink(hub).send([big])
    assert results[0].outcome is Outcome.PERMANENT and "FindingTooLarge" in (results[0].error or "")
    assert hub.requests == []


def test_customer_owned_fields_are_never_sent() -> None:
    """Workflow, Note, UserDefinedFields and VerificationState are the analyst's: a re-import must
    not carry them. A suppression rule's SUPPRESSED is sent (Security Hub applies it only to a
    new finding)."""
    item = findings(1)[0]
    sent: list[Mapping[str, Any]] = []

    def capture(batch: list[Mapping[str, Any]]) -> dict[str, Any]:
        sent.extend(batch)
        return accept_all(batch)

    owned = {"Workflow": {"Status": "NEW"}, "Note": {"Text": "n", "UpdatedBy": "t", "UpdatedAt": "2026-01-01T00:00:00Z"},
             "UserDefinedFields": {"k": "v"}, "VerificationState": "TRUE_POSITIVE"}
    make_sink(ScriptedHub(capture)).send([RenderedFinding(item.finding_id, "asff", {**item.document, **owned}, item.finding)])
    assert len(sent) == 1 and sent[0]["Id"] == item.finding_id and not set(owned) & set(sent[0])
    suppressed = {**item.document, "Workflow": {"Status": "SUPPRESSED"}}
    make_sink(ScriptedHub(capture)).send([RenderedFinding(item.finding_id, "asff", suppressed, item.finding)])
    assert sent[1]["Workflow"] == {"Status": "SUPPRESSED"}


def test_requests_respect_the_count_limit() -> None:
    hub = ScriptedHub()
    batch = findings(7)
    results = make_sink(hub, max_findings_per_request=3).send(batch)
    assert [len(r) for r in hub.requests] == [3, 3, 1] and {r.outcome for r in results} == {Outcome.OK}


def test_another_accounts_finding_without_a_role_is_permanent_with_the_reason() -> None:
    hub = ScriptedHub()
    sink = SecurityHubSink(sessions=LocalSessions(hub, account="999999999999"), rate_per_second=0)  # type: ignore[arg-type]
    results = sink.send(findings(1))
    assert results[0].outcome is Outcome.PERMANENT and "AccountNotWritable" in (results[0].error or "")
    assert hub.requests == []


def test_every_finding_of_the_batch_gets_exactly_one_result() -> None:
    batch = findings(3)
    for answers in ([accept_all], [throttled], [lambda s: {"SuccessCount": 0, "FailedFindings": [
            {"Id": f["Id"], "ErrorCode": "InvalidInput", "ErrorMessage": "no"} for f in s]}]):
        results = make_sink(ScriptedHub(*answers)).send(batch)
        assert [r.finding_id for r in results] == [f.finding_id for f in batch]


@pytest.mark.parametrize("code", ["InternalException", "ServiceUnavailable"])
def test_server_side_failed_entries_are_resent(code: str) -> None:
    batch = findings(1)
    hub = ScriptedHub(lambda s: {"SuccessCount": 0, "FailedFindings": [{"Id": s[0]["Id"], "ErrorCode": code}]},
                      accept_all)
    assert [r.outcome for r in make_sink(hub).send(batch)] == [Outcome.OK] and len(hub.requests) == 2


def test_one_attempt_budget_covers_retries_and_resend_rounds() -> None:
    """A finding that fails retryably in every answer, between throttles, costs at most
    ``max_attempts`` requests in all (before: the rounds and the retries nested, 8 × 8 = 64)."""

    def fails_one(sent: list[Mapping[str, Any]]) -> dict[str, Any]:
        return {"SuccessCount": 0, "FailedCount": len(sent), "FailedFindings": [
            {"Id": f["Id"], "ErrorCode": "InternalFailure", "ErrorMessage": "try again"} for f in sent]}

    hub = ScriptedHub(*([throttled, fails_one] * 50))
    results = make_sink(hub).send(findings(1))
    assert {r.outcome for r in results} == {Outcome.RETRYABLE}
    assert len(hub.requests) == 4, "max_attempts=4 in make_sink: four requests, whatever the mix of failures"
