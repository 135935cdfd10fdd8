"""Normalizers of the newer Huntress classes into parsed_syslog rows (`PARSED_SYSLOG_SCHEMA`): signals,
escalations, platform actions, identities, external ports, organizations (see `msg_classes` for their
`msg_class` and `msg_origin.category`).

Each takes the API object already decoded from JSON and returns the row dict, like
`syslog.normalize_incident_record`; none raises on any JSON object: unknown fields are ignored, a missing
field is null, and a value of a wrong type is coerced by the `fields.as_*` rules (null when it cannot be).

Shared rules:
- `huntress.account_id`: the object's `account_id`, else its embedded `account.id`, else `ctx.account_id`
  (signals and external ports carry no account; the caller knows whose they are).
- `huntress.organization_id` / `organization_name`: `organization_id` or the embedded `organization`
  object's `id` and `name`. Objects spanning several organizations (escalations, platform actions,
  external ports) leave `organization_id` null and fill `organization_ids` (and `organization_names`,
  parallel to it, when the API gives names: `organizations: [{id, name}, ...]`).
- `timestamp`: when the object's current version was made: `updated_at`, else the latest of the other
  times the object has (see each normalizer).
- Alert fields: escalations and platform actions get `severity_id` / `status_id` / `is_open`; their
  `alert_uid` stays null (an escalation of N organizations is N alerts: the alerts build calls
  `fields.alert_uid(..., organization_id, ..., msg_class)` per organization). Signals get `status_id` and
  an `alert_uid` of their own class. Inventory rows (identities, ports, organizations) have none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from .details import detail_entities
from .exclusions import without_excluded
from .fields import (
    DEFAULT_PRODUCT,
    SEVERITY_ID,
    alert_uid,
    as_bool,
    as_int,
    as_int_list,
    as_str,
    as_str_list,
    as_timestamp,
    json_text,
    status_fields,
)
from .msg_classes import (
    CATEGORY,
    ESCALATION_CLASS,
    EXTERNAL_PORT_CLASS,
    IDENTITY_CLASS,
    ORGANIZATION_CLASS,
    PLATFORM_ACTION_CLASS,
    SIGNAL_CATEGORY,
    SIGNAL_CLASS,
    SIGNAL_PRODUCT,
    origin,
)
from .schema import HUNTRESS_TYPE
from .syslog import NO_ALERT_FIELDS, NO_ENTITIES, ParseContext

Record = Mapping[str, Any]

_NO_HUNTRESS_FIELDS = dict.fromkeys(HUNTRESS_TYPE.names)
_ORIGINS = {category: origin(category) for category in {*CATEGORY.values(), *SIGNAL_CATEGORY.values()}}

# Plain fields per class: huntress field (= the API's key) -> coercion.
_TICKET_FIELDS: dict[str, Callable[[object], Any]] = {
    "status": as_str,
    "severity": as_str,
    "subject": as_str,
    "type": as_str,
    "subtype": as_str,
    "created_at": as_timestamp,
    "updated_at": as_timestamp,
    "resolved_at": as_timestamp,
}
_IDENTITY_FIELDS: dict[str, Callable[[object], Any]] = {
    **dict.fromkeys(("username", "email", "risk_level", "risk_state", "risk_detail"), as_str),
    **dict.fromkeys(("enabled", "billable", "mfa_enabled", "external", "on_premises_sync_enabled"), as_bool),
    **dict.fromkeys(
        ("risk_last_updated_at", "password_last_changed_at", "created_at", "updated_at"), as_timestamp
    ),
    "enabled_products": as_str_list,
}
_PORT_FIELDS: dict[str, Callable[[object], Any]] = {
    "ip_address": as_str,
    "port": as_int,
    "protocol": as_str,
    "service": as_str,
    "risky_service": as_bool,
    **dict.fromkeys(("last_scan_at", "last_external_scan_at", "created_at", "updated_at"), as_timestamp),
}
_ORGANIZATION_FIELDS: dict[str, Callable[[object], Any]] = {
    "name": as_str,
    "key": as_str,
    **dict.fromkeys(
        (
            "agents_count",
            "incident_reports_count",
            "logs_sources_count",
            "billable_identity_count",
            "sat_learner_count",
        ),
        as_int,
    ),
    "identity_provider_tenant_id": as_str,
    "created_at": as_timestamp,
    "updated_at": as_timestamp,
}


def _plain(record: Record, fields: Mapping[str, Callable[[object], Any]]) -> dict[str, Any]:
    return {name: coerce(record.get(name)) for name, coerce in fields.items()}


def _embedded(record: Record, key: str) -> Mapping[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _account_id(record: Record, ctx: ParseContext) -> int | None:
    account_id = as_int(record.get("account_id"))
    if account_id is None:
        account_id = as_int(_embedded(record, "account").get("id"))
    return ctx.account_id if account_id is None else account_id


def _organization(record: Record) -> dict[str, Any]:
    """organization_id and organization_name of an object of one organization."""
    embedded = _embedded(record, "organization")
    organization_id = as_int(record.get("organization_id"))
    return {
        "organization_id": as_int(embedded.get("id")) if organization_id is None else organization_id,
        "organization_name": as_str(embedded.get("name")),
    }


def _organizations(value: object) -> dict[str, Any]:
    """organization_ids and the parallel organization_names of `organizations: [{id, name}, ...]`.
    A member that is a bare id (or name) counts too; a member giving neither is skipped."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return {"organization_ids": None, "organization_names": None}
    ids, names = [], []
    for member in value:
        if isinstance(member, dict):
            organization_id, name = as_int(member.get("id")), as_str(member.get("name"))
        else:
            organization_id = as_int(member)
            name = member if organization_id is None and isinstance(member, str) else None
        if organization_id is not None or name is not None:
            ids.append(organization_id)
            names.append(name)
    return {"organization_ids": ids, "organization_names": names}


def _latest(*moments: datetime | None) -> datetime | None:
    present = [moment for moment in moments if moment is not None]
    return max(present) if present else None


def _row(
    ctx: ParseContext, msg_class: str, category: str, huntress: dict[str, Any], timestamp: datetime | None
) -> dict[str, Any]:
    return {
        "msg_class": msg_class,
        "msg_origin": _ORIGINS[category],
        "tenantid": ctx.tenantid,
        "tenant_name": ctx.tenant_name,
        "domain": ctx.host_url,
        "timestamp": timestamp,
        "huntress": huntress,
        **NO_ENTITIES,
        **NO_ALERT_FIELDS,
    }


def signal_category(signal_type: object) -> str:
    """`msg_origin.category` of a signal of this `type` (see `msg_classes.SIGNAL_CATEGORY`)."""
    if isinstance(signal_type, str):
        return SIGNAL_CATEGORY.get(signal_type.strip().lower(), CATEGORY[SIGNAL_CLASS])
    return CATEGORY[SIGNAL_CLASS]


def normalize_signal_record(record: Record, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of a signal: its `details` as JSON text and mapped into the entity columns
    (see `details.detail_entities`), its `entity` and `organization`; category by `type`."""
    signal_type = as_str(record.get("type"))
    entity = _embedded(record, "entity")
    details = record.get("details")
    status = as_str(record.get("status"))
    huntress = {
        **_NO_HUNTRESS_FIELDS,
        "id": as_int(record.get("id")),
        "account_id": _account_id(record, ctx),
        **_organization(record),
        "status": status,
        "name": as_str(record.get("name")),
        "type": signal_type,
        "investigation_context": as_str(record.get("investigation_context")),
        "entity_type": as_str(entity.get("type")),
        "entity_id": as_int(entity.get("id")),
        "entity_name": as_str(entity.get("name")),
        "details": None if details is None else json_text(details),
        **_plain(record, dict.fromkeys(("created_at", "updated_at", "investigated_at"), as_timestamp)),
    }
    category = signal_category(signal_type)
    row = _row(
        ctx,
        SIGNAL_CLASS,
        category,
        huntress,
        huntress["updated_at"] or _latest(huntress["investigated_at"], huntress["created_at"]),
    )
    row.update(without_excluded(detail_entities(details), ctx.indicator_exclusion))
    row.update(status_fields(status))
    row["alert_uid"] = alert_uid(
        ctx.tenantid, huntress["id"], huntress["organization_id"], huntress["account_id"], SIGNAL_CLASS
    )
    row["security_product"] = SIGNAL_PRODUCT.get(signal_type.strip().lower()) if signal_type else None
    if row["security_product"] is None and category == "edr":
        row["security_product"] = DEFAULT_PRODUCT
    return row


def _ticket(record: Record, ctx: ParseContext, msg_class: str) -> dict[str, Any]:
    """Escalations and platform actions share one shape (swagger: Escalation, PlatformAction)."""
    huntress = {
        **_NO_HUNTRESS_FIELDS,
        "id": as_int(record.get("id")),
        "account_id": _account_id(record, ctx),
        **_organizations(record.get("organizations")),
        **_plain(record, _TICKET_FIELDS),
    }
    timestamp = huntress["updated_at"] or _latest(huntress["resolved_at"], huntress["created_at"])
    row = _row(ctx, msg_class, CATEGORY[msg_class], huntress, timestamp)
    severity, status = huntress["severity"], huntress["status"]
    row["severity_id"] = SEVERITY_ID.get(severity, 0)
    row.update(status_fields(status))
    return row


def normalize_escalation_record(record: Record, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of an escalation (one row for all its organizations; `alert_uid` null)."""
    return _ticket(record, ctx, ESCALATION_CLASS)


def normalize_platform_action_record(record: Record, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of a platform action (one row for all its organizations; `alert_uid` null)."""
    return _ticket(record, ctx, PLATFORM_ACTION_CLASS)


def normalize_identity_record(record: Record, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of an identity: `tenant` {id, type} -> tenant_id (as text), tenant_type."""
    tenant = _embedded(record, "tenant")
    tenant_id, tenant_type = tenant.get("id"), tenant.get("type")
    huntress = {
        **_NO_HUNTRESS_FIELDS,
        "id": as_int(record.get("id")),
        "account_id": _account_id(record, ctx),
        **_organization(record),
        **_plain(record, _IDENTITY_FIELDS),
        "tenant_id": as_str(record.get("tenant_id") if tenant_id is None else tenant_id),
        "tenant_type": as_str(record.get("tenant_type") if tenant_type is None else tenant_type),
    }
    timestamp = huntress["updated_at"] or huntress["created_at"]
    return _row(ctx, IDENTITY_CLASS, CATEGORY[IDENTITY_CLASS], huntress, timestamp)


def normalize_external_port_record(record: Record, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of an external port; `timestamp` is its latest scan (ports have no
    updated_at)."""
    huntress = {
        **_NO_HUNTRESS_FIELDS,
        "id": as_int(record.get("id")),
        "account_id": _account_id(record, ctx),
        "organization_ids": as_int_list(record.get("organization_ids")),
        **_plain(record, _PORT_FIELDS),
    }
    timestamp = huntress["updated_at"] or _latest(
        huntress["last_scan_at"], huntress["last_external_scan_at"], huntress["created_at"]
    )
    return _row(ctx, EXTERNAL_PORT_CLASS, CATEGORY[EXTERNAL_PORT_CLASS], huntress, timestamp)


def normalize_organization_record(record: Record, ctx: ParseContext) -> dict[str, Any]:
    """The parsed_syslog row of an organization: `organization_id` / `organization_name` are its own id and
    name (so `huntress.organization_id` joins every class), `name` its name too."""
    huntress = {
        **_NO_HUNTRESS_FIELDS,
        "id": as_int(record.get("id")),
        "account_id": _account_id(record, ctx),
        **_plain(record, _ORGANIZATION_FIELDS),
    }
    huntress["organization_id"], huntress["organization_name"] = huntress["id"], huntress["name"]
    timestamp = huntress["updated_at"] or huntress["created_at"]
    return _row(ctx, ORGANIZATION_CLASS, CATEGORY[ORGANIZATION_CLASS], huntress, timestamp)
