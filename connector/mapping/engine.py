"""Apply a mapping to an event: extract values, fill templates, build the neutral ``Finding``.

Nothing here knows any particular event: what differs between events is in the mapping files.
Everything derives from the record (ids from ``eventID``, times from ``eventTime``), so mapping
the same record twice gives the same finding — the basis of idempotent delivery.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from connector.mapping.details import fill_details
from connector.mapping.formats import list_kind, matches, placeholder
from connector.mapping.loader import CliSpec, EventMapping
from connector.mapping.runbook import runbook_text
from connector.model import AffectedResource, CallOutcome, CliCommand, CloudTrailEvent, Finding, Remediation, Severity

TITLE_MAX = 256
DESCRIPTION_MAX = 1024
RECOMMENDATION_MAX = 512
PRODUCT_NAME = "cloudtrail-findings"


class TemplateValues(dict[str, str]):
    """Template namespace: an absent value renders as ``<name>`` so a gap is visible, never blank.

    ``optional``: values the enrichment may supply (``enrichment.values`` of the mapping); absent,
    they render as their ``UPPER_CASE`` placeholder, as the runbook did before they were known.
    """

    optional: frozenset[str] = frozenset()

    def __missing__(self, key: str) -> str:
        return placeholder(key) if key in self.optional else f"<{key}>"


class ProseValues(TemplateValues):
    """For titles and descriptions: an absent id reads as "(unknown)" rather than a placeholder."""

    def __missing__(self, key: str) -> str:
        return "(unknown)"


def fill(template: str, values: Mapping[str, str]) -> str:
    """``str.format_map`` (it honours ``__missing__``) over the extracted values only, through
    the template compiled once (``compiled_template``): the same text at a quarter of the cost."""
    text: str = compiled_template(template)(values)
    return text


@lru_cache(maxsize=4096)
def compiled_template(template: str) -> Any:
    """``template.format_map`` as one f-string function of the values. Only plain ``{name}``
    fields are compiled (each is ``format(values[name], "")``, exactly what ``format_map`` does,
    ``__missing__`` included); a conversion, a format spec, an attribute or index field, or a
    template ``str.format`` would reject keeps ``format_map`` itself. The generated code names
    no template text: literals and names are constants bound to the function."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return template.format_map  # raises as format_map does, at the call
    constants: dict[str, str] = {}
    code = []
    for literal, name, spec, conversion in parsed:
        if literal:
            key = f"L{len(constants)}"
            constants[key] = literal
            code.append("{" + key + "}")
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            return template.format_map
        key = f"L{len(constants)}"
        constants[key] = name
        code.append("{v[" + key + "]}")
    if not code:
        return lambda values: template
    function: Any = eval(f"lambda v: f\"{''.join(code)}\"", dict(constants))  # generated from names of constants only
    return function


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
VALUE_MAX = 256


def _as_text(value: Any) -> str | None:
    """A record value as one line of bounded text: record values are attacker-influenced, and a
    newline or a 100 kB string must not reshape a title, a description or a runbook."""
    if type(value) is str:
        # printable text holds none of _CONTROL's characters: no substitution needed
        text = (value if value.isprintable() else _CONTROL.sub(" ", value)).strip()
        return (text[: VALUE_MAX - 1] + "…" if len(text) > VALUE_MAX else text) or None
    if value is None or value == "" or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _CONTROL.sub(" ", str(value)).strip()
    return (text[: VALUE_MAX - 1] + "…" if len(text) > VALUE_MAX else text) or None


def finding_id(event: CloudTrailEvent) -> str:
    """Deterministic: the same record always yields the same id in every format and sink."""
    return f"{PRODUCT_NAME}/{event.partition}/{event.region}/{event.account_id}/{event.event_id}"


def outcome_of(event: CloudTrailEvent) -> CallOutcome:
    if event.dry_run:
        return "dry_run"
    if event.failed:
        return "failed"
    return "succeeded"


def extract(mapping: EventMapping, event: CloudTrailEvent) -> TemplateValues:
    """The mapping's fields (first non-null JMESPath wins) plus the values common to all events."""
    values = TemplateValues()
    raw = event.raw
    for name, expressions in mapping.fields.items():
        for expression in expressions:
            text = _as_text(expression.search(raw))
            if text is not None:
                values[name] = text
                break
    ident = event.identity
    common = {
        "region": event.region,
        "account": event.account_id,
        "partition": event.partition,
        "eventID": event.event_id,
        "eventTime": event.time_text,
        "eventName": event.event_name,
        "principal": ident.display,
        "principalArn": ident.arn or ident.invoked_by or ident.principal_id or ident.identity_store_arn or "unknown",
        "sourceIP": event.source_ip or "unknown",
        "userAgent": event.user_agent or "unknown",
        "errorCode": event.error_code or "",
        "errorMessage": (event.error_message or "").rstrip(". ") + "." if event.error_message else "",
        "outcome": outcome_of(event).replace("_", " "),
    }
    extra = {
        "accessKeyId": ident.access_key_id,
        "userName": ident.user_name or ((ident.arn or "").rsplit("/", 1)[-1] if ident.type == "AssumedRole" else None),
        "roleArn": ident.session_issuer_arn if ident.type == "AssumedRole" else ident.arn,
    }
    values.update(common)
    values.update({k: text for k, v in extra.items() if (text := _as_text(v))})
    for key in ("principal", "principalArn", "userAgent", "errorMessage", "sourceIP"):
        values[key] = _as_text(values[key]) or ""
    targets = [fill(spec.id, values) for spec in mapping.resources]
    values["target"] = ", ".join(t for t in targets if "<" not in t) or "a resource the record does not name"
    return values


#: Whatever the outcome, a call by the root user is at least this severe.
ROOT_FLOOR = Severity.HIGH


def choose_severity(mapping: EventMapping, event: CloudTrailEvent) -> tuple[Severity, str]:
    """The mapping's base severity, then its outcome rule (dry run, failed) or, for a call that
    went through, its caller rule (root, an AWS service). Root is never below HIGH: a root
    session probing or failing is as alarming as one succeeding."""
    rules = mapping.severity
    ident = event.identity
    by_service = ident.type == "AWSService" or (ident.invoked_by or "").endswith(".amazonaws.com")
    root = ident.type == "Root"
    conditions = (
        ("dry_run", event.dry_run, "dry run: the caller holds the permission, nothing was deleted"),
        ("failed", event.failed, f"the call failed ({event.error_code}), nothing was deleted"),
        ("root", root, "the root user made the call"),
        ("invoked_by_service", by_service, f"made by an AWS service on a principal's behalf ({ident.invoked_by or ident.type})"),
    )
    severity, reason = Severity[rules["base"]], mapping.severity_rationale
    for rule, applies, why in conditions:
        if applies and rule in rules:
            # An attempt changed nothing: the rationale (what the deletion removed) would claim it did.
            attempt = rule in ("dry_run", "failed")
            severity, reason = Severity[rules[rule]], why if attempt else f"{why}; {mapping.severity_rationale}"
            break
    if root and severity < ROOT_FLOOR:
        severity, reason = ROOT_FLOOR, f"the root user made the call ({reason})"
    return severity, reason


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _resources(mapping: EventMapping, event: CloudTrailEvent, values: TemplateValues) -> tuple[AffectedResource, ...]:
    """The mapping's resources whose id the values name (with their typed details), else the account."""
    out = []
    for spec in mapping.resources:
        resource_id = fill(spec.id, values)
        if "<" in resource_id:  # its id field is absent from this record (e.g. a failed call)
            continue
        details = {k: fill(v, values) for k, v in spec.details_other.items()}
        out.append(
            AffectedResource(
                asff_type=spec.asff_type,
                ocsf_type=spec.ocsf_type,
                id=resource_id,
                arn=fill(spec.arn, values),
                region=event.region,
                partition=event.partition,
                details_other={k: v for k, v in details.items() if "<" not in v},
                role=spec.role,
                details=(fill_details(spec.details, values, mapping.formats) or {}) if spec.details else {},
            )
        )
    if not out:
        # ASFF needs at least one resource; without request parameters the account is what we know.
        out.append(
            AffectedResource(
                asff_type="Other",
                ocsf_type="AWS::::Account",
                id=f"AWS::::Account:{event.account_id}",
                arn=f"AWS::::Account:{event.account_id}",
                region=event.region,
                partition=event.partition,
                details_other={"Reason": "the record names no resource (requestParameters absent)"},
                role="target",
            )
        )
    return tuple(out)


#: Public name: the enrichment re-renders the resources with the values it read.
resources_of = _resources


@lru_cache(maxsize=4096)
def _names(template: str) -> tuple[str, ...]:
    """The template's field names, in order, once each (templates come from the mapping files:
    parsed once, not per finding)."""
    return tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template) if name))


def _quoted(value: str, kind: str) -> str:
    """Shell-quoted; a ``<kind>-list`` value is several arguments, each quoted on its own."""
    return " ".join(map(shlex.quote, value.split(" "))) if list_kind(kind) else shlex.quote(value)


def _judge(name: str, value: str | None, formats: Mapping[str, str],
           optional: frozenset[str]) -> tuple[str | None, str | None]:
    """(the value if it may enter a command, else None; the problem to name, if there is one).

    A value enters only when it matches its strict format; a missing or malformed one becomes an
    inert ``UPPER_CASE`` placeholder, and the problem is named so the analyst fills it in (an
    absent optional value, which only the enrichment could supply, keeps its plain placeholder)."""
    if value is None:
        return None, (None if name in optional else f"the event lacks {name}")
    if not matches(formats.get(name, ""), value):
        return None, f"{name} in the record is malformed ({formats.get(name, 'no format')} expected)"
    return value, None


def _command_note(wrong: Sequence[tuple[str, str]]) -> str:
    """What a command's description adds when some of its values are placeholders."""
    if not wrong:
        return ""
    return f" [fill in {', '.join(placeholder(name) for name, _ in wrong)}: {'; '.join(why for _, why in wrong)}]"


def _snippet_note(wrong: Sequence[tuple[str, str]]) -> str:
    """The lines above the boto3 snippet when some of its values are placeholders."""
    return "".join(f"# Fill in {placeholder(name)} before running: {why}.\n" for name, why in wrong)


class CommandValues:
    """The values a finding's commands may contain, each judged once per finding (``_judge``).

    A runbook's commands and its snippet name the same few values over and over: each is matched
    (and shell-quoted) once, not once per command. Held for one finding only: the values are the
    record's."""

    __slots__ = ("_formats", "_judged", "_optional", "_quoted", "_values")

    def __init__(self, values: Mapping[str, str], formats: Mapping[str, str]) -> None:
        self._values = values
        self._formats = formats
        self._optional: frozenset[str] = getattr(values, "optional", frozenset())
        self._judged: dict[str, tuple[str | None, str | None]] = {}
        self._quoted: dict[str, str] = {}

    def _judge(self, name: str) -> tuple[str | None, str | None]:
        """(the value if it may enter a command, else None; the problem, if one is to be named)."""
        judged = self._judged.get(name)
        if judged is None:
            judged = self._judged[name] = _judge(name, self._values.get(name), self._formats, self._optional)
        return judged

    def safe(self, template: str, *, quote: bool) -> tuple[dict[str, str], list[tuple[str, str]]]:
        """The template's values as they may enter it (shell-quoted when ``quote``), and what is
        wrong with the others, in the template's order."""
        out: dict[str, str] = {}
        problems: list[tuple[str, str]] = []
        judged = self._judged
        for name in _names(template):
            value, problem = judged.get(name) or self._judge(name)
            if value is None:
                out[name] = placeholder(name)
                if problem is not None:
                    problems.append((name, problem))
            elif quote:
                quoted = self._quoted.get(name)
                if quoted is None:
                    quoted = self._quoted[name] = _quoted(value, self._formats.get(name, ""))
                out[name] = quoted
            else:
                out[name] = value
        return out, problems


def render_command(spec: CliSpec, values: Mapping[str, str], formats: Mapping[str, str],
                   prose: Mapping[str, str] | None = None, judged: CommandValues | None = None) -> CliCommand:
    """``prose``: ``ProseValues(values)`` and ``judged``: ``CommandValues(values, formats)`` when the
    caller already holds them (one per finding)."""
    safe, problems = (judged or CommandValues(values, formats)).safe(spec.command, quote=True)
    description = compiled_template(spec.description)(ProseValues(values) if prose is None else prose)
    return CliCommand(description + _command_note(problems), compiled_template(spec.command)(safe))


def render_snippet(template: str, values: Mapping[str, str], formats: Mapping[str, str],
                   judged: CommandValues | None = None) -> str:
    """The boto3 snippet: values only as validated string literals, placeholders otherwise."""
    safe, problems = (judged or CommandValues(values, formats)).safe(template, quote=False)
    text: str = compiled_template(template)(safe)
    return _snippet_note(problems) + text


def build_remediation_from(spec: Mapping[str, Any], cli_specs: Sequence[CliSpec], values: TemplateValues,
                           formats: Mapping[str, str]) -> Remediation:
    return _remediation(spec, cli_specs, values, formats, None)


def _remediation(spec: Mapping[str, Any], cli_specs: Sequence[CliSpec], values: TemplateValues,
                 formats: Mapping[str, str], first: str | None, prose: ProseValues | None = None) -> Remediation:
    """``first``: the runbook's opening section (``render_runbook``); None: no runbook text.
    ``prose``: ``ProseValues(values)`` when the caller already holds it."""
    return RunbookPlan(spec, tuple(cli_specs), formats, first).render(values, prose)


class RunbookPlan:
    """One runbook (a mapping's restore runbook or its attempt runbook, with the mapping's value
    formats) compiled once: every template's function, the names its commands and its snippet
    use, and the runbook text's fixed lines. Per finding, each command value is judged and
    shell-quoted once and every command is filled from the same quoted values, instead of
    collecting each command's values anew (``CommandValues.safe``) — the same text."""

    __slots__ = ("_args", "_boto3", "_boto3_names", "_cli", "_console", "_first", "_formats", "_hardening",
                 "_names", "_quoted_names", "_recovery", "_references", "_summary", "_url")

    def __init__(self, spec: Mapping[str, Any], cli_specs: tuple[CliSpec, ...], formats: Mapping[str, str],
                 first: str | None) -> None:
        self._args = (spec, cli_specs, formats, first)
        self._formats = formats
        self._first = first
        self._summary = compiled_template(spec["summary"])
        self._url: str = spec["url"]
        self._recovery = tuple(map(compiled_template, spec["recovery"]))
        self._console = tuple(map(compiled_template, spec["console_steps"]))
        self._hardening = tuple(map(compiled_template, spec["hardening"]))
        self._references = tuple(spec["references"])
        self._cli = tuple((compiled_template(c.description), compiled_template(c.command), _names(c.command))
                          for c in cli_specs)
        self._boto3 = compiled_template(spec["boto3"])
        self._boto3_names = _names(spec["boto3"])
        self._quoted_names = tuple(dict.fromkeys(name for _, _, names in self._cli for name in names))
        self._names = tuple(dict.fromkeys(self._quoted_names + self._boto3_names))

    def __reduce__(self) -> tuple[type[RunbookPlan], tuple[Any, ...]]:
        """Pickled as what it is compiled from (its functions are generated): a mapping that has
        made findings pickles as it did before."""
        return RunbookPlan, self._args

    def render(self, values: TemplateValues, prose: ProseValues | None = None) -> Remediation:
        prose = ProseValues(values) if prose is None else prose
        formats = self._formats
        optional: frozenset[str] = getattr(values, "optional", frozenset())
        # Each value a command or the snippet names, judged once (``_judge``).
        safe: dict[str, str] = {}
        problems: dict[str, str] = {}
        valid: dict[str, str] = {}
        for name in self._names:
            value, problem = _judge(name, values.get(name), formats, optional)
            if value is None:
                safe[name] = placeholder(name)
                if problem is not None:
                    problems[name] = problem
            else:
                safe[name] = valid[name] = value
        quoted = {name: _quoted(valid[name], formats.get(name, "")) if name in valid else safe[name]
                  for name in self._quoted_names}
        cli = []
        for description, command, names in self._cli:
            text = description(prose)
            if problems:
                text += _command_note([(name, problems[name]) for name in names if name in problems])
            cli.append(CliCommand(text, command(quoted)))
        boto3: str = self._boto3(safe)
        if problems:
            boto3 = _snippet_note([(name, problems[name]) for name in self._boto3_names if name in problems]) + boto3
        summary = _clip(self._summary(prose), RECOMMENDATION_MAX)
        recovery = tuple([step(values) for step in self._recovery])
        console = tuple([step(values) for step in self._console])
        hardening = tuple([step(values) for step in self._hardening])
        commands = tuple(cli)
        runbook = ""
        if self._first is not None:
            runbook = runbook_text(summary, recovery, console, commands, boto3, hardening, self._references,
                                   first=self._first)
        return Remediation(summary, self._url, recovery, console, commands, boto3, hardening, self._references,
                           runbook)


def build_remediation(mapping: EventMapping, values: TemplateValues, *, attempt: bool = False,
                      prose: ProseValues | None = None) -> Remediation:
    """The restore runbook of a call that went through; the investigation runbook of an attempt."""
    plans = mapping.runbooks
    if plans is None:  # compiled at the mapping's first finding; a race compiles the same twice
        plans = (RunbookPlan(mapping.remediation, mapping.cli, mapping.formats, "Recover what was removed"),
                 RunbookPlan(mapping.attempt.remediation, mapping.attempt.cli, mapping.formats,
                             "Investigate the attempt"))
        object.__setattr__(mapping, "runbooks", plans)
    return plans[attempt].render(values, prose)


def build_finding(event: CloudTrailEvent, mapping: EventMapping) -> Finding:
    """The neutral finding for one event; pure (no clock, no randomness, no I/O)."""
    values = extract(mapping, event)
    values.optional = mapping.optional_values
    severity, reason = choose_severity(mapping, event)
    if event.dry_run and mapping.dry_run_title:
        title_template = mapping.dry_run_title
    elif event.failed and mapping.failed_title:
        title_template = mapping.failed_title
    else:
        title_template = mapping.title
    prose = ProseValues(values)
    attempt = event.dry_run or event.failed
    if event.dry_run:
        description = fill(mapping.attempt.dry_run_description, prose)
    elif event.failed:
        description = fill(mapping.attempt.failed_description, prose)
    else:
        description = fill(mapping.description, prose)
    return Finding(
        id=finding_id(event),
        mapping_id=mapping.id,
        mapping_version=mapping.version,
        title=_clip(fill(title_template, prose), TITLE_MAX),
        description=_clip(description, DESCRIPTION_MAX),
        severity=severity,
        severity_reason=reason,
        asff_types=mapping.asff_types,
        ocsf_types=mapping.ocsf_types,
        attacks=mapping.attacks,
        resources=_resources(mapping, event, values),
        remediation=build_remediation(mapping, values, attempt=attempt, prose=prose),
        information=mapping.information,
        impact=mapping.impact,
        values=dict(values),
        event=event,
        outcome=outcome_of(event),
    )
