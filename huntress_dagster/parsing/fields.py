"""Field-level rules shared by the rows of every class: tolerant coercion of API values (a wrong type
becomes null, never an exception), Huntress enums mapped to scores and OCSF ids, and derived alert fields.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from .msg_classes import INCIDENT_CLASS

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# OCSF severity_id (base event attribute): 2 Low, 4 High, 5 Critical; anything else 0 Unknown.
SEVERITY_ID = {"low": 2, "high": 4, "critical": 5}

# OCSF Finding status_id (Detection Finding, 1.5.0 enum: 0 Unknown, 1 New, 2 In Progress, 3 Suppressed,
# 4 Resolved, 5 Archived, 99 Other). `sent`: delivered to the partner, not yet acted on -> New;
# `auto_remediating`: remediation under way -> In Progress; `closed` -> Resolved; `dismissed` and
# `partner_dismissed`: reviewed and judged benign/not actionable -> Suppressed; `deleting`: being removed,
# which 1.5.0 has no value for -> Other (the source label stays in `huntress.status`). Null -> Unknown.
#
# Escalations and platform actions (`open` | `sent` | `resolved`, and `overdue` in webhooks and list
# filters): `open` and `sent` wait for the partner -> New; `overdue` is still unresolved, only past its due
# time, which OCSF has no status for -> New too (a queue of status_id 1 must not lose it; the label stays
# in `huntress.status`); `resolved` -> Resolved. Signals (`reported` | `closed`): `reported` means the
# SOC reported it to the partner, who has not acted on it yet (like an incident's `sent`) -> New.
STATUS_ID = {
    "sent": 1,
    "auto_remediating": 2,
    "closed": 4,
    "dismissed": 3,
    "partner_dismissed": 3,
    "deleting": 99,
    "open": 1,
    "overdue": 1,
    "resolved": 4,
    "reported": 1,
}
# What takes an alert off the queue (`is_open` false): status_id 3 Suppressed (dismissed), 4 Resolved and
# 99 Other (`deleting`). Every other status is open, 0 Unknown included (no status, or a label Huntress
# added since): an alert whose state cannot be read stays in front of an analyst instead of dropping out.
CLOSED_STATUS_IDS = frozenset({3, 4, 99})


def status_fields(status: object) -> dict[str, object]:
    """`status_id` (OCSF) and `is_open` of an alert's Huntress status label."""
    status_id = STATUS_ID.get(status, 0) if isinstance(status, str) else 0
    return {"status_id": status_id, "is_open": status_id not in CLOSED_STATUS_IDS}

# indicator type -> product, in precedence order (first match wins); see `security_product`.
_PRODUCT_BY_INDICATOR = (
    ("mde_detections", "Microsoft Defender for Endpoint"),
    ("siem_detections", "Huntress Managed SIEM"),
    ("email_security_detections", "Huntress Managed Email Security"),
    ("managed_identity", "Huntress Managed ITDR"),
)
_PRODUCT_BY_PLATFORM = {
    "microsoft_365": "Huntress Managed ITDR",
    "google": "Huntress Managed ITDR",
    "email_security": "Huntress Managed Email Security",
}
DEFAULT_PRODUCT = "Huntress Managed EDR"

# Namespace of alert_uid: uuid5(NAMESPACE_URL, "https://huntress.io/huntress_dagster/alert").
ALERT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://huntress.io/huntress_dagster/alert")


def as_int(value: object) -> int | None:
    """An int64, from an int or an integral float/decimal string; anything else null."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return None
    if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        return value
    return None


def json_text(value: object) -> str:
    """Compact JSON text (orjson, or the stdlib for integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def as_str(value: object) -> str | None:
    """Strings as they are, other scalars in their text form, objects and arrays as JSON text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json_text(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def as_int_list(value: object) -> list[int | None] | None:
    """A list of int64s (members that are not integers become null); a lone integer a one-item list."""
    if isinstance(value, list):
        return list(map(as_int, value))
    single = None if isinstance(value, (dict, str)) else as_int(value)
    return None if single is None else [single]


def as_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def as_str_list(value: object) -> list[str | None] | None:
    """A list of strings (null members stay null); a lone string becomes a one-item list."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        return None
    return list(map(as_str, value))


def as_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from ISO-8601 text (naive text is taken as UTC); anything else null."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 has no UTC year
        return None


def as_counts(value: object) -> dict[str, int] | None:
    """indicator_counts: name -> integer count; members that are not integers are dropped."""
    if not isinstance(value, dict):
        return None
    return {
        str(name): count for name, count in ((k, as_int(v)) for k, v in value.items()) if count is not None
    }


def security_product(indicator_types: Iterable[object] | None, platform: object) -> str:
    """The Huntress product that raised an incident: the first matching indicator type in the precedence
    of `_PRODUCT_BY_INDICATOR`, else the platform (identity and email platforms), else Managed EDR."""
    kinds = set(as_str_list(indicator_types) or ())  # null members are harmless here
    for indicator, product in _PRODUCT_BY_INDICATOR:
        if indicator in kinds:
            return product
    return (
        _PRODUCT_BY_PLATFORM.get(platform, DEFAULT_PRODUCT) if isinstance(platform, str) else DEFAULT_PRODUCT
    )


def alert_uid(
    tenantid: str,
    huntress_id: int | None,
    organization_id: int | None,
    account_id: int | None,
    msg_class: str | None = None,
) -> str:
    """Stable alert id: UUIDv5 (namespace `ALERT_NAMESPACE`) of the alerts key
    (tenantid, msg_class, huntress id, organization_id, account_id).

    Incident reports (`msg_class` None or `INCIDENT_CLASS`) keep the name they always had,
    "tenantid|id|organization_id|account_id"; any other class appends itself, "...|account_id|msg_class",
    so escalation 5 and incident report 5 of the same organization never share an id. A null member is
    written as an empty field, so it never collides with a real id (the key reads unambiguously from the
    right: its last fields are integers or empty, then the class name, whatever `tenantid` holds).

    The alerts build calls it once per organization of an escalation (its parsed row leaves `alert_uid`
    null, since an escalation spanning N organizations is N alerts):
    `alert_uid(row.tenantid, row.huntress.id, organization_id, row.huntress.account_id, row.msg_class)`
    for each `organization_id` in `row.huntress.organization_ids`.
    """
    parts = (tenantid, huntress_id, organization_id, account_id)
    if msg_class is not None and msg_class != INCIDENT_CLASS:
        parts += (msg_class,)
    key = "|".join("" if part is None else str(part) for part in parts)
    # uuid.uuid5 spelled out (SHA-1 of namespace + name, version and variant bits set): 3x faster.
    digest = bytearray(
        hashlib.sha1(ALERT_NAMESPACE.bytes + key.encode("utf-8", "surrogatepass")).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def portal_url(
    account_subdomain: str | None, organization_id: int | None, incident_id: int | None
) -> str | None:
    """The incident report's page in the Huntress portal:
    https://{account subdomain}.huntress.io/org/{organization_id}/incident_reports/{id}.
    Null when the account subdomain, the organization or the id is unknown (the link needs all three)."""
    if not account_subdomain or organization_id is None or incident_id is None:
        return None
    return f"https://{account_subdomain}.huntress.io/org/{organization_id}/incident_reports/{incident_id}"
