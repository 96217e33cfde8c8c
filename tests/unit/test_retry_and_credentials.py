"""The one retry mechanism, and the assumed-role session cache, with injected time and STS.

``ScriptedSts`` is the contract of STS AssumeRole/GetCallerIdentity; the cache's clock is
injected, so expiry and refresh are checked without waiting an hour.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.errors import ConfigError, DeliveryError
from connector.retry import Backoff, retry_call
from connector.sinks.securityhub.credentials import SessionCache, role_arn_for

# -- retry ---------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_a_capped_exponential_ceiling() -> None:
    backoff = Backoff(base_seconds=0.5, cap_seconds=4.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(300)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8, "the whole range is used, not a fixed step"


def test_retry_call_stops_at_max_attempts_and_reraises_the_last_error() -> None:
    calls: list[int] = []
    retried: list[int] = []

    def always_fails() -> None:
        calls.append(1)
        raise TimeoutError(f"attempt {len(calls)}")

    with pytest.raises(TimeoutError, match="attempt 3"):
        retry_call(always_fails, backoff=Backoff(base_seconds=0.0001, max_attempts=3),
                   retryable=lambda e: True, on_retry=lambda n, e: retried.append(n))
    assert len(calls) == 3 and retried == [1, 2]


def test_retry_call_does_not_retry_what_is_not_retryable() -> None:
    calls: list[int] = []

    def bad() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        retry_call(bad, backoff=Backoff(base_seconds=0.0001, max_attempts=5), retryable=lambda e: isinstance(e, TimeoutError))
    assert len(calls) == 1


def test_retry_call_returns_the_first_success() -> None:
    answers = iter([TimeoutError(), TimeoutError(), "ok"])

    def flaky() -> str:
        value = next(answers)
        if isinstance(value, Exception):
            raise value
        return value

    assert retry_call(flaky, backoff=Backoff(base_seconds=0.0001, max_attempts=5), retryable=lambda e: True) == "ok"


def test_a_stop_ends_the_wait_between_attempts_at_once() -> None:
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        retry_call(lambda: (_ for _ in ()).throw(TimeoutError()), backoff=Backoff(base_seconds=30, cap_seconds=30),
                   retryable=lambda e: True, stop=stop)
    assert time.monotonic() - started < 5


# -- credentials ---------------------------------------------------------------------------

class ScriptedSts:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.assumed: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.n = 0

    def get_caller_identity(self) -> dict[str, str]:
        return {"Account": "111111111111"}

    def assume_role(self, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        if self.fail:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "AssumeRole")
        time.sleep(0.01)  # widen the window in which a second thread could also assume
        with self.lock:
            self.assumed.append(kwargs)
            self.n += 1
            n = self.n
        return {"Credentials": {
            "AccessKeyId": f"ASIATEST{n:012d}", "SecretAccessKey": "secret", "SessionToken": "token",
            "Expiration": datetime.fromtimestamp(time.time() + 3600, tz=UTC),
        }}


class BaseSession:
    region_name = "us-east-1"

    def __init__(self, sts: ScriptedSts) -> None:
        self.sts = sts
        self.clients: list[tuple[str, str | None]] = []

    def client(self, service: str, region_name: str | None = None, config: Any = None) -> Any:
        if service == "sts":
            return self.sts
        self.clients.append((service, region_name))
        return object()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def cache(sts: ScriptedSts, clock: Clock, **kwargs: Any) -> SessionCache:
    return SessionCache(base_session=BaseSession(sts), clock=clock,  # type: ignore[arg-type]
                        role_arn_template="arn:{partition}:iam::{account}:role/Importer", **kwargs)


def test_a_role_is_assumed_once_and_reused_until_near_expiry() -> None:
    sts, clock = ScriptedSts(), Clock()
    sessions = cache(sts, clock, refresh_margin=600, external_id="ext-1")
    first = sessions.role_session("222222222222")
    assert sessions.role_session("222222222222") is first
    assert sts.assumed[0]["RoleArn"] == "arn:aws:iam::222222222222:role/Importer"
    assert sts.assumed[0]["ExternalId"] == "ext-1"
    clock.now += 3600 - 601
    assert sessions.role_session("222222222222") is first
    clock.now += 2  # now inside the refresh margin
    second = sessions.role_session("222222222222")
    assert second is not first and second.access_key_id != first.access_key_id and len(sts.assumed) == 2


def test_clients_are_rebuilt_when_the_role_is_reassumed() -> None:
    sts, clock = ScriptedSts(), Clock()
    sessions = cache(sts, clock)
    a = sessions.client("securityhub", region="eu-west-1", account="222222222222")
    assert sessions.client("securityhub", region="eu-west-1", account="222222222222") is a
    clock.now += 3600
    assert sessions.client("securityhub", region="eu-west-1", account="222222222222") is not a


def test_each_account_gets_its_own_role_and_the_partition_is_filled() -> None:
    sts, clock = ScriptedSts(), Clock()
    sessions = cache(sts, clock)
    sessions.role_session("222222222222", partition="aws-us-gov")
    sessions.role_session("333333333333")
    assert [a["RoleArn"] for a in sts.assumed] == ["arn:aws-us-gov:iam::222222222222:role/Importer",
                                                    "arn:aws:iam::333333333333:role/Importer"]


def test_concurrent_callers_assume_a_role_only_once() -> None:
    sts, clock = ScriptedSts(), Clock()
    sessions = cache(sts, clock)
    threads = [threading.Thread(target=sessions.role_session, args=("222222222222",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sts.assumed) == 1


def test_a_refused_assume_role_is_a_delivery_error_naming_the_role() -> None:
    sessions = cache(ScriptedSts(fail=True), Clock())
    with pytest.raises(DeliveryError, match="arn:aws:iam::222222222222:role/Importer"):
        sessions.role_session("222222222222")


def test_own_account_is_asked_once() -> None:
    sts = ScriptedSts()
    sessions = cache(sts, Clock())
    assert sessions.own_account() == "111111111111" == sessions.own_account()


@pytest.mark.parametrize("template", ["arn:aws:iam::{acount}:role/x", "arn:aws:iam::{0}:role/x", "arn:{account"])
def test_a_bad_template_is_a_configuration_error(template: str) -> None:
    with pytest.raises(ConfigError, match="assume_role_arn_template"):
        role_arn_for(template, account="222222222222")
