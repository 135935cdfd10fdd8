"""OCSF output of the inventory tables beyond `agent_inventory`: an `identities` row as a User Inventory Info event
(5003), with its Arrow schema. Same conventions as `ocsf` (OCSF 1.5.0, plain dicts holding only non-null
attributes, epoch-millisecond times, `ocsf.to_table` to write them).

`external_ports` has no OCSF 1.5.0 form on purpose: 1.5.0 has no class for an inventory of exposed ports.
Device Inventory Info's device has no port attribute in 1.5.0 (`network_interface.open_ports` arrives in
1.6.0, the right home once the project moves up), Network Activity would claim a connection or a listener
start that a scan-derived row never saw, and Vulnerability Finding needs a CVE, CWE or advisory per
vulnerability, which Huntress does not give for a risky service.

Identity row input: the `identities` inventory columns listed in `USER_INVENTORY_INFO_INPUTS`, any of which
may be missing or null. `time` is the identity's last_seen_at (the latest snapshot that had it), else
updated_at, else created_at, else first_seen_at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa

from .ocsf import (
    _COMMON,
    _SEVERITY_NAMES,
    ACTIVITY_COLLECT,
    DISCOVERY_CATEGORY_UID,
    SEVERITY_INFORMATIONAL,
    _compact,
    _event_time,
    _metadata,
    _millis,
)

USER_INVENTORY_INFO_CLASS_UID = 5003
ITDR_PRODUCT = "Huntress Managed ITDR"

# user.risk_level_id (OCSF 1.5.0): Huntress's `none` (no risk detected) is the lowest level, 0 Info; any
# other label is 99 Other, carried in user.risk_level.
_RISK_LEVEL_IDS = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_RISK_LEVEL_NAMES = {0: "Info", 1: "Low", 2: "Medium", 3: "High", 4: "Critical"}
_RISK_OTHER = 99
# account.type_id (OCSF 1.5.0) of the identity provider tenant the user lives in.
_TENANT_ACCOUNT_TYPES = {"microsoft_365": (17, "M365 Tenant"), "google_workspace": (15, "Google Workspace")}
_ACCOUNT_OTHER = 99
# OCSF email_t, as its JSON schema checks it (an address that fails it stays in unmapped.email).
_EMAIL = re.compile(r"[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+")

# The identities columns `user_inventory_info` reads (a reader can fetch just these).
USER_INVENTORY_INFO_INPUTS = (
    "tenantid", "identity_id", "account_id", "organization_id", "organization_name", "username", "email",
    "enabled", "mfa_enabled", "risk_level", "risk_state", "billable", "external", "enabled_products",
    "tenant_id", "tenant_type", "created_at", "updated_at", "first_seen_at", "last_seen_at",
    "in_latest_snapshot", "mfa_changed_at", "risk_changed_at",
)
# `time`, in order of preference
_TIME_COLUMNS = ("last_seen_at", "updated_at", "created_at", "first_seen_at")

_BASE = [(name, kind) for name, kind in _COMMON if name != "device"]  # a user inventory event has no device
_USER = pa.struct(
    [
        ("uid", pa.string()),
        ("name", pa.string()),
        ("email_addr", pa.string()),
        ("has_mfa", pa.bool_()),
        ("risk_level", pa.string()),
        ("risk_level_id", pa.int32()),
        ("account", pa.struct([("uid", pa.string()), ("type", pa.string()), ("type_id", pa.int32())])),
        ("org", pa.struct([("uid", pa.string()), ("name", pa.string())])),
    ]
)

USER_INVENTORY_INFO_SCHEMA = pa.schema(
    _BASE
    + [
        ("user", _USER),
        (
            "unmapped",
            pa.struct(
                [
                    ("enabled", pa.bool_()),
                    ("risk_state", pa.string()),
                    ("billable", pa.bool_()),
                    ("external", pa.bool_()),
                    ("enabled_products", pa.list_(pa.string())),
                    ("tenant_type", pa.string()),
                    ("account_id", pa.int64()),
                    ("in_latest_snapshot", pa.bool_()),
                    ("email", pa.string()),
                    ("created_time", pa.int64()),
                    ("modified_time", pa.int64()),
                    ("first_seen_time", pa.int64()),
                    ("mfa_changed_time", pa.int64()),
                    ("risk_changed_time", pa.int64()),
                ]
            ),
        ),
    ]
)


def _uid(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _moment(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _time(value: object) -> int | None:
    return _millis(_moment(value))


def _risk(level: object) -> tuple[int | None, str | None]:
    """user.risk_level_id and user.risk_level for a Huntress risk label (None, None when unknown)."""
    if not isinstance(level, str) or not level:
        return None, None
    risk_id = _RISK_LEVEL_IDS.get(level.lower(), _RISK_OTHER)
    return risk_id, _RISK_LEVEL_NAMES.get(risk_id, level)


def _account(tenant_id: object, tenant_type: object) -> dict[str, Any] | None:
    """The identity provider tenant as the user's account; OCSF needs it identified, so none without an id."""
    if (uid := _uid(tenant_id)) is None:
        return None
    if (label := _text(tenant_type)) is None:
        return {"uid": uid}
    type_id, type_name = _TENANT_ACCOUNT_TYPES.get(label, (_ACCOUNT_OTHER, label))
    return {"uid": uid, "type": type_name, "type_id": type_id}


def user_inventory_info(row: Mapping[str, Any]) -> dict[str, Any]:
    """An OCSF 1.5.0 User Inventory Info event (activity Collect) for one `identities` row; `time` is the
    identity's last_seen_at. The user is named by its username, else its e-mail (the sign-in name at both
    identity providers); its account is the identity provider tenant (M365 Tenant or Google Workspace), its
    org the Huntress organization. What 1.5.0's user object has no attribute for (enabled, risk state,
    billable, external, products, the Huntress times, an e-mail that is no OCSF email_t) is in `unmapped`."""
    email = _text(row.get("email"))
    valid_email = email if email and _EMAIL.fullmatch(email) else None
    risk_level_id, risk_level = _risk(row.get("risk_level"))
    products = row.get("enabled_products")
    products = [p for p in products if isinstance(p, str)] if isinstance(products, (list, tuple)) else None
    event = {
        "activity_id": ACTIVITY_COLLECT,
        "activity_name": "Collect",
        "category_uid": DISCOVERY_CATEGORY_UID,
        "category_name": "Discovery",
        "class_uid": USER_INVENTORY_INFO_CLASS_UID,
        "class_name": "User Inventory Info",
        "type_uid": USER_INVENTORY_INFO_CLASS_UID * 100 + ACTIVITY_COLLECT,
        "type_name": "User Inventory Info: Collect",
        "time": _event_time(*(_moment(row.get(name)) for name in _TIME_COLUMNS)),
        "severity_id": SEVERITY_INFORMATIONAL,
        "severity": _SEVERITY_NAMES[SEVERITY_INFORMATIONAL],
        "metadata": _metadata(ITDR_PRODUCT, _uid(row.get("identity_id")), _text(row.get("tenantid")), []),
        "user": {
            "uid": _uid(row.get("identity_id")),
            "name": _text(row.get("username")) or email,
            "email_addr": valid_email,
            "has_mfa": _flag(row.get("mfa_enabled")),
            "risk_level": risk_level,
            "risk_level_id": risk_level_id,
            "account": _account(row.get("tenant_id"), row.get("tenant_type")),
            "org": {"uid": _uid(row.get("organization_id")), "name": _text(row.get("organization_name"))},
        },
        "unmapped": {
            "enabled": _flag(row.get("enabled")),
            "risk_state": _text(row.get("risk_state")),
            "billable": _flag(row.get("billable")),
            "external": _flag(row.get("external")),
            "enabled_products": products,
            "tenant_type": _text(row.get("tenant_type")),
            "account_id": _integer(row.get("account_id")),
            "in_latest_snapshot": _flag(row.get("in_latest_snapshot")),
            "email": email if email != valid_email else None,
            "created_time": _time(row.get("created_at")),
            "modified_time": _time(row.get("updated_at")),
            "first_seen_time": _time(row.get("first_seen_at")),
            "mfa_changed_time": _time(row.get("mfa_changed_at")),
            "risk_changed_time": _time(row.get("risk_changed_at")),
        },
    }
    event = _compact(event)
    user = event.setdefault("user", {})
    if not user.keys() & {"uid", "name", "account"}:  # OCSF requires an identified user; the row key is
        user["name"] = "unknown"  # never null in the inventory, so only a malformed row lands here
    return event
