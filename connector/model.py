"""The values that cross stage boundaries.

Every stage of the pipeline takes and returns these frozen dataclasses, so that a stage can be
tested alone and so that no untyped dict travels further than the stage that parsed it. Raw
dicts live only inside decoding (``CloudTrailEvent.raw``) and rendering (the ASFF/OCSF dicts).
No I/O happens here.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, get_args

_T = TypeVar("_T")


def quick_init(cls: type[_T]) -> type[_T]:
    """A frozen slots dataclass with an ``__init__`` that stores each field through its slot's
    own descriptor instead of ``object.__setattr__(self, name, value)`` (a name look-up per
    field): the same signature, defaults, factories and ``__post_init__``, at 60 % of the cost.
    The classes made per finding (the event, its identity, the finding and its runbook) are
    built several times per record; everything else about the dataclass (frozen, eq, hash,
    ``replace``, pickling) is unchanged."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if len(fields) != len(cls.__dataclass_fields__) or any(f.kw_only for f in fields):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: InitVar and keyword-only fields are not supported")
    namespace: dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    params: list[str] = []
    body: list[str] = []
    for f in fields:
        setter, default, factory = f"_set_{f.name}", f"_default_{f.name}", f"_factory_{f.name}"
        namespace[setter] = getattr(cls, f.name).__set__  # the slot's member descriptor
        value = f.name
        if f.default is not dataclasses.MISSING:
            namespace[default] = f.default
            if f.init:
                params.append(f"{f.name}={default}")
            else:
                value = default
        elif f.default_factory is not dataclasses.MISSING:
            namespace[factory] = f.default_factory
            if f.init:
                params.append(f"{f.name}=_MISSING")
                value = f"{factory}() if {f.name} is _MISSING else {f.name}"
            else:
                value = f"{factory}()"
        elif f.init:
            params.append(f.name)
        else:
            continue  # set by __post_init__
        body.append(f"    {setter}(self, {value})\n")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()\n")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("".join(body) or "    pass\n")
    exec(source, namespace)  # generated from the class's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = source
    setattr(cls, "__init__", init)  # noqa: B010 -- mypy refuses assigning to a method
    return cls

#: Where a message came from: decides ordering (Kinesis) and how a dead letter names it.
MessageOrigin = Literal["sqs", "kinesis", "file", "deadletter", ""]


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One unit a source delivers and later acknowledges (an SQS message, a Kinesis record, a file).

    ``body`` is kept as bytes: decoding may find gzip, base64 or JSON inside, and the dead-letter
    destination must receive exactly what arrived.
    """

    id: str
    body: bytes
    ack_token: Any = None
    received_at: float = 0.0
    attempt: int = 1
    source: MessageOrigin = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    #: For a body too large to hold (a big log file): opens it as chunks, and ``body`` is only a
    #: reference to it (what a dead letter of the whole message carries).
    chunks: Callable[[], Iterable[bytes]] | None = None
    #: The source's own receive limit (an SQS redrive policy's ``maxReceiveCount``; 0: none):
    #: on its last receive a message that fails is dead-lettered with its reason.
    max_receives: int = 0


@quick_init
@dataclass(frozen=True, slots=True)
class Identity:
    """Who made the call (``userIdentity``), flattened to what a finding shows."""

    type: str | None = None
    arn: str | None = None
    principal_id: str | None = None
    account_id: str | None = None
    user_name: str | None = None
    access_key_id: str | None = None
    invoked_by: str | None = None
    session_issuer_arn: str | None = None
    session_issuer_name: str | None = None
    session_issuer_type: str | None = None
    session_created: str | None = None
    mfa_authenticated: bool | None = None
    #: IAM Identity Center: the directory user behind the session (``onBehalfOf``).
    on_behalf_of_user_id: str | None = None
    identity_store_arn: str | None = None
    credential_id: str | None = None

    @property
    def display(self) -> str:
        """A short, human name for tables and titles: issuer/session for roles, else the ARN."""
        if self.type == "Root":
            return f"root ({self.account_id})" if self.account_id else "root"
        if self.type == "AssumedRole" and self.session_issuer_name:
            session = (self.arn or "").rsplit("/", 1)[-1]
            return f"{self.session_issuer_name}/{session}" if session else self.session_issuer_name
        if self.user_name:
            return self.user_name
        if self.on_behalf_of_user_id:
            return f"Identity Center user {self.on_behalf_of_user_id}"
        if self.arn:
            return self.arn
        if self.invoked_by:
            return self.invoked_by
        return self.principal_id or self.type or "unknown"


def utc_seconds(when: datetime) -> str:
    """``when.strftime("%Y-%m-%dT%H:%M:%SZ")`` (the year unpadded, as strftime writes it), at half
    its cost: every finding writes its event time in several places."""
    return f"{when.year}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}Z"


def utc_millis(when: datetime) -> str:
    """``when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"``: milliseconds, as ASFF timestamps."""
    return (f"{when.year}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
            f".{when.microsecond // 1000:03d}Z")


@quick_init
@dataclass(frozen=True, slots=True)
class CloudTrailEvent:
    """A CloudTrail record that passed decoding and selection.

    ``account_id`` is the 12-digit recipient account (left-padded with zeros: some exporters
    strip leading zeros by treating the id as a number). ``raw`` is the record as parsed and is
    only read by mapping and rendering.
    """

    event_id: str
    event_name: str
    event_source: str
    event_time: datetime
    event_version: str | None
    account_id: str
    region: str
    partition: str
    identity: Identity
    source_ip: str | None
    user_agent: str | None
    request_id: str | None
    error_code: str | None
    error_message: str | None
    raw: Mapping[str, Any]
    origin: str = ""
    #: ``event_time`` as CloudTrail writes it (``utc_seconds``), formatted once for every format.
    time_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time_text", utc_seconds(self.event_time))

    @property
    def failed(self) -> bool:
        """The API call was refused or failed, so nothing was deleted."""
        return bool(self.error_code) and not self.dry_run

    @property
    def dry_run(self) -> bool:
        """``Client.DryRunOperation`` means the caller *would* have been allowed: a probe."""
        return (self.error_code or "").endswith("DryRunOperation")


#: The two renderings of a finding; a sink declares which it takes.
FindingFormat = Literal["asff", "ocsf"]
FORMATS: tuple[FindingFormat, ...] = get_args(FindingFormat)

#: What the API call itself did: a failed or dry-run call deleted nothing.
CallOutcome = Literal["succeeded", "failed", "dry_run"]


class Severity(enum.IntEnum):
    """Severity labels shared by both formats (values are OCSF ``severity_id``)."""

    INFORMATIONAL = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5

    @property
    def asff_normalized(self) -> int:
        """ASFF Normalized score inside the band Security Hub documents for the label."""
        return {1: 0, 2: 30, 3: 50, 4: 70, 5: 90}[int(self)]


@quick_init
@dataclass(frozen=True, slots=True)
class AffectedResource:
    """A resource the event touched, with both formats' type names and its ARN."""

    asff_type: str
    ocsf_type: str
    id: str
    arn: str
    region: str
    partition: str
    details_other: Mapping[str, str] = field(default_factory=dict)
    role: str = "target"
    #: Typed ASFF ``Details.<asff_type>`` (ids, VPC, ...): only values the record or the enrichment gave.
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attack:
    """A MITRE ATT&CK technique as of a given ATT&CK version."""

    version: str
    tactic_uid: str
    tactic_name: str
    technique_uid: str
    technique_name: str
    sub_technique_uid: str | None = None
    sub_technique_name: str | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class CliCommand:
    """A rendered AWS CLI command with what it does."""

    description: str
    command: str


@quick_init
@dataclass(frozen=True, slots=True)
class Remediation:
    """The runbook rendered with the event's real ids.

    ``summary`` fits ASFF's 512-character ``Recommendation.Text``; ``runbook`` is the whole text
    (recovery, console steps, CLI, boto3, hardening) for OCSF and OpenSearch.
    """

    summary: str
    url: str
    recovery: tuple[str, ...]
    console_steps: tuple[str, ...]
    cli: tuple[CliCommand, ...]
    boto3: str
    hardening: tuple[str, ...]
    references: tuple[str, ...]
    runbook: str


EnrichmentStatus = Literal["enriched", "partial", "unenriched"]


@dataclass(frozen=True, slots=True)
class RouteImpact:
    """One route table whose routes went through the removed resource (connector/enrich/)."""

    route_table_id: str
    vpc_id: str
    destinations: tuple[str, ...]
    subnets: tuple[str, ...]
    main: bool = False


@dataclass(frozen=True, slots=True)
class BlastRadius:
    """What else the deletion broke, read live: route tables, their subnets, running instances."""

    route_tables: tuple[RouteImpact, ...]
    subnets: tuple[str, ...]
    running_instances: int | None
    summary: str


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What the enrichment read about the removed resource, or why it could not.

    ``status`` is ``unenriched`` when no lookup answered in time (the finding is delivered anyway,
    saying so), ``partial`` when some did.
    """

    status: EnrichmentStatus
    values: Mapping[str, str]
    blast_radius: BlastRadius | None = None
    problems: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        text = self.status
        return f"{text}: {'; '.join(self.problems)}" if self.problems else text


@quick_init
@dataclass(frozen=True, slots=True)
class Finding:
    """The neutral finding that both renderers read.

    Times are the event's, never the wall clock, so re-mapping a record gives byte-identical
    findings and redelivery overwrites instead of duplicating.
    """

    id: str
    mapping_id: str
    mapping_version: str
    title: str
    description: str
    severity: Severity
    severity_reason: str
    asff_types: tuple[str, ...]
    ocsf_types: tuple[str, ...]
    attacks: tuple[Attack, ...]
    resources: tuple[AffectedResource, ...]
    remediation: Remediation
    information: tuple[str, ...]
    impact: tuple[str, ...]
    values: Mapping[str, str]
    event: CloudTrailEvent
    outcome: CallOutcome
    #: For a correlation finding (``connector.correlate``): the ids of the findings it groups.
    related: tuple[str, ...] = ()
    #: None when enrichment is off (the default): the finding is exactly the event's.
    enrichment: Enrichment | None = None

    @property
    def observed_at(self) -> datetime:
        return self.event.event_time


@quick_init
@dataclass(frozen=True, slots=True)
class RenderedFinding:
    """One finding in one output format, ready for a sink."""

    finding_id: str
    format: FindingFormat
    document: Mapping[str, Any]
    finding: Finding


class Outcome(enum.Enum):
    """What a sink says of one finding."""

    OK = "ok"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """A sink's answer for one finding; ``error`` names the reason when not OK."""

    finding_id: str
    outcome: Outcome
    error: str | None = None
    #: Which rendering the result is for; ``None`` means every format of the finding in the batch.
    format: FindingFormat | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What the dead-letter destination receives: the stage, the reason and the original bytes."""

    stage: str
    reason: str
    record_id: str
    body: bytes
    source: str = ""
    error_type: str = ""
