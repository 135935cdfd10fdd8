"""Normalization of raw Huntress API objects into parsed_syslog rows (`PARSED_SYSLOG_SCHEMA`).

A row is a plain dict keyed by column name (nested dicts for struct columns, datetimes in UTC); the batch
forms return a pyarrow Table with exactly the schema. Input is the API object's JSON text verbatim. Unknown
fields are ignored, nullable fields may be null or of a wrong type (which reads as null), and
`remediations` may be the current `{total_count, has_more, items}` or the older flat array of any length.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .arrow_rows import collector_paused, rows_to_table
from .body import FULL_MAX_BYTES, KEEP_MAX_BYTES, parse_body
from .decode import load_record
from .entities import ENTITY_COLUMNS
from .exclusions import (
    DEFAULT_EXCLUDED_INDICATOR_DOMAINS,
    IndicatorExclusion,
    indicator_exclusion,
    normalized_domains,
    without_excluded,
)
from .fields import (
    SEVERITY_ID,
    alert_uid,
    as_bool,
    as_counts,
    as_int,
    as_str,
    as_str_list,
    as_timestamp,
    json_text,
    portal_url,
    security_product,
    status_fields,
)
from .msg_classes import AGENT_CLASS, INCIDENT_CLASS
from .schema import AGENT_FIELDS, HUNTRESS_TYPE, INCIDENT_FIELDS, PARSED_SYSLOG_SCHEMA

_INCIDENT_ORIGIN = {"source": "huntress", "vendor": "huntress", "category": "mdr"}
_AGENT_ORIGIN = {"source": "huntress", "vendor": "huntress", "category": "endpoint"}
_NO_INCIDENT_FIELDS = dict.fromkeys(INCIDENT_FIELDS)
_NO_AGENT_FIELDS = dict.fromkeys(AGENT_FIELDS)
# The fields of the newer classes (signals, escalations, ...), null in incident and agent rows.
_NO_NEWER_FIELDS = dict.fromkeys(
    name for name in HUNTRESS_TYPE.names if name not in INCIDENT_FIELDS and name not in AGENT_FIELDS
)
NO_ENTITIES = dict.fromkeys(ENTITY_COLUMNS)
NO_ALERT_FIELDS = dict.fromkeys(
    (
        "report_header",
        "parse_level",
        "body_size",
        "body",
        "severity_id",
        "status_id",
        "is_open",
        "alert_uid",
        "portal_url",
        "security_product",
    )
)
# The agent fields that are plain strings in the schema (the rest are coerced one by one below).
_AGENT_STRING_FIELDS = tuple(name for name in AGENT_FIELDS if HUNTRESS_TYPE.field(name).type == pa.string())

# What an asset inventory needs from an agent row's `huntress` struct (see `asset_fields`).
ASSET_FIELDS = (
    "id",
    "account_id",
    "organization_id",
    "hostname",
    "domain_name",
    "platform",
    "os",
    "os_build_version",
    "ipv4_address",
    "external_ip",
    "mac_addresses",
    "defender_status",
    "defender_substatus",
    "defender_policy_status",
    "firewall_status",
    "tamper_protection_configured",
    "tamper_protection_actual",
    "tags",
    "last_callback_at",
    "updated_at",
)


@dataclass(frozen=True, slots=True)
class ParseContext:
    """Where records come from: the tenant (for dedup keys and SQL), the API host, the account subdomain
    (for portal links), the body size thresholds, and the account whose records these are when the
    caller knows it (e.g. a reseller's /accounts/{id}/signals): `account_id` fills `huntress.account_id`
    of signal and external port rows, whose objects carry no account (a record's own account wins;
    incident and agent rows never use it).

    `excluded_indicator_domains`: the vendor's domains kept out of the entity columns, with their
    subdomains (see `exclusions`); the host URL's host is excluded too, without being listed. Given as
    any iterable of names or a comma-separated string, stored normalized (sorted, lower-case tuple), so
    the repr (hashed into the parsed-partition fingerprint) is stable and the context stays picklable."""

    tenantid: str
    tenant_name: str
    host_url: str  # the Huntress API host; lands in the `domain` column
    account_subdomain: str | None = None  # builds portal_url; None leaves it null
    keep_max_bytes: int = KEEP_MAX_BYTES
    full_max_bytes: int = FULL_MAX_BYTES
    account_id: int | None = None
    excluded_indicator_domains: tuple[str, ...] = DEFAULT_EXCLUDED_INDICATOR_DOMAINS

    def __post_init__(self) -> None:
        domains = normalized_domains(self.excluded_indicator_domains)
        if domains != self.excluded_indicator_domains:
            object.__setattr__(self, "excluded_indicator_domains", domains)

    @property
    def indicator_exclusion(self) -> IndicatorExclusion:
        """The compiled exclusion (cached per list and host URL)."""
        return indicator_exclusion(self.excluded_indicator_domains, self.host_url)


def _timestamps(record: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {name: as_timestamp(record.get(name)) for name in fields}


def _remediation(item: Mapping[str, Any]) -> dict[str, Any]:
    approver = item.get("approved_by")
    parameters = item.get("parameters")
    return {
        "id": as_int(item.get("id")),
        "type": as_str(item.get("type")),
        "action": as_str(item.get("action")),
        "status": as_str(item.get("status")),
        "parameters": None if parameters is None else json_text(parameters),
        "approved_at": as_timestamp(item.get("approved_at")),
        "approved_by": {
            "id": as_str(approver.get("id")),
            "email": as_str(approver.get("email")),
            "name": as_str(approver.get("name")),
        }
        if isinstance(approver, dict)
        else None,
        "completed_at": as_timestamp(item.get("completed_at")),
    }


def _remediations(value: object) -> dict[str, Any]:
    """Summary and items from either payload shape: {total_count, has_more, items} or a flat array."""
    if isinstance(value, dict):
        listed, total, has_more = (
            value.get("items"),
            as_int(value.get("total_count")),
            as_bool(value.get("has_more")),
        )
    elif isinstance(value, list):
        listed, total, has_more = value, None, False
    else:
        return {"remediations_total": None, "remediations_has_more": None, "remediations": None}
    items = (
        [_remediation(item) for item in listed if isinstance(item, dict)] if isinstance(listed, list) else []
    )
    total = len(items) if total is None else total
    return {
        "remediations_total": total,
        "remediations_has_more": total > len(items) if has_more is None else has_more,
        "remediations": items,
    }


def with_all_remediations(raw_json: str | bytes, items: Iterable[Mapping[str, Any]]) -> str:
    """The incident's JSON text with `remediations` replaced by the complete list (e.g. every page of
    /incident_reports/{id}/remediations), so the normalized row carries all of them, not the first 10."""
    return json_text(record_with_all_remediations(load_record(raw_json, "incident"), items))


def record_with_all_remediations(record: dict[str, Any], items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The decoded incident with `remediations` replaced by the complete list (see `with_all_remediations`)."""
    complete = list(items)
    record["remediations"] = {"total_count": len(complete), "has_more": False, "items": complete}
    return record


def _envelope(
    ctx: ParseContext, msg_class: str, origin: dict[str, str], huntress: dict[str, Any]
) -> dict[str, Any]:
    return {
        "msg_class": msg_class,
        "msg_origin": origin,
        "tenantid": ctx.tenantid,
        "tenant_name": ctx.tenant_name,
        "domain": ctx.host_url,
        "timestamp": huntress["updated_at"] or huntress["created_at"],
        "huntress": huntress,
    }


def normalize_incident_record(record: Mapping[str, Any], ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of an incident report object already decoded from JSON."""
    severity = as_str(record.get("severity"))
    status = as_str(record.get("status"))
    platform = as_str(record.get("platform"))
    indicator_types = as_str_list(record.get("indicator_types"))
    huntress = {
        **_NO_AGENT_FIELDS,
        "id": as_int(record.get("id")),
        "account_id": as_int(record.get("account_id")),
        "organization_id": as_int(record.get("organization_id")),
        "agent_id": as_int(record.get("agent_id")),
        "platform": platform,
        "status": status,
        "severity": severity,
        "subject": as_str(record.get("subject")),
        "summary": as_str(record.get("summary")),
        "indicator_types": indicator_types,
        "indicator_counts": as_counts(record.get("indicator_counts")),
        **_remediations(record.get("remediations")),
        **_timestamps(record, ("created_at", "updated_at", "sent_at", "closed_at", "status_updated_at")),
        **_NO_NEWER_FIELDS,
    }
    parsed = parse_body(record.get("body"), ctx.keep_max_bytes, ctx.full_max_bytes)
    return {
        **_envelope(ctx, INCIDENT_CLASS, _INCIDENT_ORIGIN, huntress),
        "report_header": parsed.header,
        **(without_excluded(parsed.entities, ctx.indicator_exclusion) or NO_ENTITIES),
        "parse_level": parsed.parse_level,
        "body_size": parsed.body_size,
        "body": parsed.body,
        "severity_id": SEVERITY_ID.get(severity, 0),
        **status_fields(status),
        "alert_uid": alert_uid(
            ctx.tenantid, huntress["id"], huntress["organization_id"], huntress["account_id"]
        ),
        "portal_url": portal_url(ctx.account_subdomain, huntress["organization_id"], huntress["id"]),
        "security_product": security_product(indicator_types, platform),
    }


def normalize_agent_record(record: Mapping[str, Any], ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of an agent object already decoded from JSON."""
    huntress = {
        **_NO_INCIDENT_FIELDS,
        "id": as_int(record.get("id")),
        "account_id": as_int(record.get("account_id")),
        "organization_id": as_int(record.get("organization_id")),
        **{name: as_str(record.get(name)) for name in _AGENT_STRING_FIELDS},
        "mac_addresses": as_str_list(record.get("mac_addresses")),
        "tags": as_str_list(record.get("tags")),
        "tamper_protection_configured": as_bool(record.get("tamper_protection_configured")),
        "tamper_protection_actual": as_bool(record.get("tamper_protection_actual")),
        **_timestamps(record, ("created_at", "updated_at", "last_callback_at", "last_survey_at")),
        **_NO_NEWER_FIELDS,
    }
    return {**_envelope(ctx, AGENT_CLASS, _AGENT_ORIGIN, huntress), **NO_ENTITIES, **NO_ALERT_FIELDS}


def normalize_incident(raw_json: str | bytes, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of one incident report (its API JSON text). Raises `InvalidRecord` only
    when the text is not a JSON object."""
    return normalize_incident_record(load_record(raw_json, "incident"), ctx)


def normalize_agent(raw_json: str | bytes, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of one agent (its API JSON text). Raises `InvalidRecord` only when the text
    is not a JSON object."""
    return normalize_agent_record(load_record(raw_json, "agent"), ctx)


def normalize_incidents(raw_jsons: Iterable[str | bytes], ctx: ParseContext) -> pa.Table:
    with collector_paused():
        return rows_to_table([normalize_incident(raw, ctx) for raw in raw_jsons])


def normalize_agents(raw_jsons: Iterable[str | bytes], ctx: ParseContext) -> pa.Table:
    """The agents' parsed_syslog table. Decoded by Arrow's JSON reader when every record fits the agent
    field types (the usual case: ~5x faster than row by row), else row by row with the tolerant coercion
    of `normalize_agent`; both give the same table (a property test checks it)."""
    raw_jsons = list(raw_jsons)
    try:
        return _agents_from_arrow_json(raw_jsons, ctx)
    except (pa.ArrowInvalid, UnicodeError):
        with collector_paused():
            return rows_to_table([normalize_agent(raw, ctx) for raw in raw_jsons])


_AGENT_JSON_OPTIONS = pa_json.ParseOptions(
    explicit_schema=pa.schema([HUNTRESS_TYPE.field(name) for name in AGENT_FIELDS]),
    unexpected_field_behavior="ignore",
    newlines_in_values=True,
)


def _agents_from_arrow_json(raw_jsons: list[str | bytes], ctx: ParseContext) -> pa.Table:
    """Raises ArrowInvalid when a record is not an object of the agent field types (a number where a
    string belongs, an unparseable timestamp, ...), which only the row-by-row path coerces, or not an
    object at all (Arrow would read a `null` line as a row of nulls)."""
    if not all(raw.lstrip()[:1] in (b"{", "{") for raw in raw_jsons):
        raise pa.ArrowInvalid("a record is not a JSON object")
    data = b"\n".join(raw if isinstance(raw, bytes) else raw.encode() for raw in raw_jsons)
    parsed = pa_json.read_json(
        pa.BufferReader(data),
        read_options=pa_json.ReadOptions(use_threads=False),
        parse_options=_AGENT_JSON_OPTIONS,
    ).combine_chunks()
    count = len(raw_jsons)
    if parsed.num_rows != count:  # a blank record
        raise pa.ArrowInvalid("record count differs")
    huntress = pa.StructArray.from_arrays(
        [
            parsed.column(field.name).chunk(0) if field.name in AGENT_FIELDS else pa.nulls(count, field.type)
            for field in HUNTRESS_TYPE
        ],
        fields=list(HUNTRESS_TYPE),
    )
    constants = {
        "msg_class": AGENT_CLASS,
        "msg_origin": _AGENT_ORIGIN,
        "tenantid": ctx.tenantid,
        "tenant_name": ctx.tenant_name,
        "domain": ctx.host_url,
    }
    columns = {
        "huntress": huntress,
        "timestamp": pc.coalesce(parsed["updated_at"], parsed["created_at"]).chunk(0),
    }
    return pa.Table.from_arrays(
        [
            columns[field.name]
            if field.name in columns
            else pa.repeat(pa.scalar(constants[field.name], field.type), count)
            if field.name in constants
            else pa.nulls(count, field.type)
            for field in PARSED_SYSLOG_SCHEMA
        ],
        schema=PARSED_SYSLOG_SCHEMA,
    )


def asset_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """What an asset inventory needs from an agent row: the `ASSET_FIELDS` of its `huntress` struct,
    plus the tenant. (In SQL: `huntress.hostname`, `huntress.ipv4_address`, ...)"""
    huntress = row["huntress"]
    return {"tenantid": row["tenantid"], **{name: huntress[name] for name in ASSET_FIELDS}}


def host_context(asset: Mapping[str, Any]) -> dict[str, Any]:
    """The host keys an alert is enriched with (and that `ocsf.detection_finding` reads), from
    `asset_fields` of the incident's agent."""
    return {
        "hostname": asset.get("hostname"),
        "host_os": asset.get("os"),
        "host_ipv4": asset.get("ipv4_address"),
        "host_external_ip": asset.get("external_ip"),
        "host_mac_addresses": asset.get("mac_addresses"),
    }
