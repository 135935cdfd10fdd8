"""OCSF output: an alert (a parsed incident row plus host context) as a Detection Finding (2004) and an
agent row as a Device Inventory Info event (5001), with Arrow schemas to write them to Parquet.

Pinned to OCSF 1.5.0 (`OCSF_VERSION`). Events are plain dicts holding only non-null attributes, so each
validates against the official 1.5.0 JSON schema (tests use the `ocsf-json-schema` package, which ships
the compiled schema, with `jsonschema`). Times are epoch milliseconds, as OCSF `timestamp_t` requires.

Alert input keys: the parsed_syslog incident columns (`huntress`, `severity_id`, `status_id`, `alert_uid`,
`portal_url`, `security_product`, entity columns, `tenantid`) plus the host context keys `hostname`,
`host_os`, `host_ipv4`, `host_external_ip`, `host_mac_addresses` (see `syslog.host_context`), any of
which may be missing or null. `time` is the source record's updated_at (else created_at, else the status
or callback time; a record with no time at all gets the processing time, since OCSF requires one).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import pyarrow as pa

OCSF_VERSION = "1.5.0"
VENDOR = "Huntress"

DETECTION_FINDING_CLASS_UID = 2004
FINDINGS_CATEGORY_UID = 2
DEVICE_INVENTORY_INFO_CLASS_UID = 5001
DISCOVERY_CATEGORY_UID = 5
ACTIVITY_CREATE, ACTIVITY_UPDATE, ACTIVITY_CLOSE = 1, 2, 3
ACTIVITY_COLLECT = 2
SEVERITY_INFORMATIONAL = 1

_ACTIVITY_NAMES = {ACTIVITY_CREATE: "Create", ACTIVITY_UPDATE: "Update", ACTIVITY_CLOSE: "Close"}
_SEVERITY_NAMES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_STATUS_NAMES = {0: "Unknown", 1: "New", 2: "In Progress", 3: "Suppressed", 4: "Resolved", 5: "Archived"}
_CLOSED_STATUSES = frozenset({"closed", "dismissed", "partner_dismissed"})
_MAC = re.compile(r"(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}")
_OS_TYPE_IDS = {"windows": 100, "linux": 200, "darwin": 300}  # OCSF os.type_id; other platforms 0 Unknown
_DEVICE_SERVER, _DEVICE_UNKNOWN = 1, 0

# Observable type_ids (OCSF 1.5.0) per entity column.
OBSERVABLE_TYPES = (
    ("users", "user.name", 4),
    ("emails", "email_address", 5),
    ("urls", "url_string", 6),
    ("md5", "hash", 8),
    ("sha1", "hash", 8),
    ("sha256", "hash", 8),
    ("processes", "process.name", 9),
    ("command_lines", "process.cmd_line", 13),
    ("files", "file.path", 45),
    ("ipv4", "ip", 2),
    ("ipv6", "ip", 2),
    ("domains", "hostname", 1),
    ("registry_keys", "reg_key.path", 46),
)

# The alert columns `detection_finding` reads (a reader can fetch just these).
DETECTION_FINDING_INPUTS = (
    "huntress", "tenantid", "alert_uid", "portal_url", "severity_id", "status_id", "security_product",
    "hostname", "host_os", "host_ipv4", "host_external_ip", "host_mac_addresses",
    *dict.fromkeys(column for column, _, _ in OBSERVABLE_TYPES),
)

# The fields of the `huntress` struct (the parsed API object) a Device Inventory Info reads: its reader
# takes only these from the agent inventory's ~80 (`inventory.write_ocsf_form`).
DEVICE_INVENTORY_HUNTRESS_FIELDS = (
    "id", "hostname", "domain_name", "ipv4_address", "mac_addresses", "os", "platform", "os_build_version",
    "tags", "serial_number", "arch", "version", "created_at", "updated_at", "last_callback_at",
    "defender_status", "defender_substatus", "defender_policy_status", "firewall_status",
    "tamper_protection_configured", "tamper_protection_actual", "external_ip", "organization_id", "account_id",
)


_OS = pa.struct([("name", pa.string()), ("type_id", pa.int32()), ("build", pa.string())])
_PRODUCT = pa.struct([("name", pa.string()), ("vendor_name", pa.string())])
_METADATA = pa.struct(
    [
        ("version", pa.string()),
        ("product", _PRODUCT),
        ("uid", pa.string()),
        ("tenant_uid", pa.string()),
        ("profiles", pa.list_(pa.string())),
    ]
)
_DEVICE = pa.struct(
    [
        ("uid", pa.string()),
        ("hostname", pa.string()),
        ("domain", pa.string()),
        ("ip", pa.string()),
        ("mac", pa.string()),
        ("type_id", pa.int32()),
        ("os", _OS),
        ("is_managed", pa.bool_()),
        ("created_time", pa.int64()),
        ("last_seen_time", pa.int64()),
        ("groups", pa.list_(pa.struct([("name", pa.string())]))),
        ("hw_info", pa.struct([("serial_number", pa.string()), ("cpu_architecture", pa.string())])),
        (
            "agent_list",
            pa.list_(
                pa.struct(
                    [
                        ("name", pa.string()),
                        ("type_id", pa.int32()),
                        ("uid", pa.string()),
                        ("vendor_name", pa.string()),
                        ("version", pa.string()),
                    ]
                )
            ),
        ),
        (
            "network_interfaces",
            pa.list_(pa.struct([("ip", pa.string()), ("mac", pa.string()), ("type_id", pa.int32())])),
        ),
    ]
)
_OBSERVABLES = pa.list_(pa.struct([("name", pa.string()), ("type_id", pa.int32()), ("value", pa.string())]))
_COMMON = [
    ("activity_id", pa.int32()),
    ("activity_name", pa.string()),
    ("category_uid", pa.int32()),
    ("category_name", pa.string()),
    ("class_uid", pa.int32()),
    ("class_name", pa.string()),
    ("type_uid", pa.int64()),
    ("type_name", pa.string()),
    ("time", pa.int64()),
    ("severity_id", pa.int32()),
    ("severity", pa.string()),
    ("metadata", _METADATA),
    ("device", _DEVICE),
]

DETECTION_FINDING_SCHEMA = pa.schema(
    _COMMON
    + [
        ("status_id", pa.int32()),
        ("status", pa.string()),
        ("message", pa.string()),
        ("is_alert", pa.bool_()),
        (
            "finding_info",
            pa.struct(
                [
                    ("uid", pa.string()),
                    ("title", pa.string()),
                    ("desc", pa.string()),
                    ("created_time", pa.int64()),
                    ("modified_time", pa.int64()),
                    ("types", pa.list_(pa.string())),
                    ("src_url", pa.string()),
                    ("product_uid", pa.string()),
                ]
            ),
        ),
        ("observables", _OBSERVABLES),
        (
            "unmapped",
            pa.struct(
                [
                    ("huntress_status", pa.string()),
                    ("huntress_severity", pa.string()),
                    ("huntress_platform", pa.string()),
                    ("organization_id", pa.int64()),
                    ("account_id", pa.int64()),
                    ("agent_id", pa.int64()),
                    ("remediations_total", pa.int64()),
                ]
            ),
        ),
    ]
)

DEVICE_INVENTORY_INFO_SCHEMA = pa.schema(
    _COMMON
    + [
        (
            "unmapped",
            pa.struct(
                [
                    ("defender_status", pa.string()),
                    ("defender_substatus", pa.string()),
                    ("defender_policy_status", pa.string()),
                    ("firewall_status", pa.string()),
                    ("tamper_protection_configured", pa.bool_()),
                    ("tamper_protection_actual", pa.bool_()),
                    ("external_ip", pa.string()),
                    ("organization_id", pa.int64()),
                    ("account_id", pa.int64()),
                ]
            ),
        ),
    ]
)


def ip_or_none(value: object) -> str | None:
    """The value if it is an IP address (OCSF's ip_t rejects anything else), else None."""
    if not isinstance(value, str):
        return None
    # A dotted quad is its own text: no ipaddress object (~6 us) for the IPv4 address of every host.
    return value if _DOTTED_QUAD.fullmatch(value) else _ip_text(value)


# What `ipaddress` accepts as IPv4, and prints back unchanged: four decimal octets, no leading zero.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}", re.ASCII)


@lru_cache(maxsize=1 << 14)  # a host's address recurs in each of its alerts, and ipaddress is slow to parse
def _ip_text(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _macs(values: object) -> list[str]:
    """The values that are MAC addresses in OCSF's mac_t form (six hex pairs)."""
    return [value for value in values if isinstance(value, str) and _MAC.fullmatch(value)] if values else []


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _event_time(*candidates: datetime | None) -> int:
    """The first known source time; OCSF requires `time`, so a record with none gets the processing time."""
    return _millis(next((moment for moment in candidates if moment is not None), None) or datetime.now(UTC))


_DROPPED = object()


def _compact(value: Any) -> Any:
    """Drop null attributes and empty objects/lists, recursively (OCSF JSON carries no nulls). No predicate
    call per attribute: it runs on every event of an inventory and every finding."""
    if isinstance(value, dict):
        return {key: kept for key, item in value.items() if (kept := _compact_item(item)) is not _DROPPED}
    if isinstance(value, list):
        return [kept for item in value if (kept := _compact_item(item)) is not _DROPPED]
    return value


def _compact_item(item: Any) -> Any:
    if item is None:
        return _DROPPED
    if type(item) is dict or type(item) is list:
        item = _compact(item)
        return item if item else _DROPPED
    return item


def _metadata(product: str, uid: object, tenant: object, profiles: list[str]) -> dict[str, Any]:
    return {
        "version": OCSF_VERSION,
        "product": {"name": product, "vendor_name": VENDOR},
        "uid": None if uid is None else str(uid),
        "tenant_uid": tenant,
        "profiles": profiles,
    }


def _os(name: object, platform: object, build: object = None) -> dict[str, Any] | None:
    if not name and not platform:  # OCSF's os requires a name: "" is none
        return None
    return {"name": name or platform, "type_id": _OS_TYPE_IDS.get(platform, 0), "build": build}


def _device_type(os_name: object) -> int:
    return _DEVICE_SERVER if isinstance(os_name, str) and "server" in os_name.lower() else _DEVICE_UNKNOWN


def _observables(alert: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Built compact (no null values), so the event's `_compact` need not walk the ~40 of an alert."""
    observables = []
    if alert.get("hostname"):
        observables.append({"name": "device.hostname", "type_id": 1, "value": alert["hostname"]})
    for column, name, type_id in OBSERVABLE_TYPES:
        observables.extend(
            {"name": name, "type_id": type_id, "value": value} for value in alert.get(column) or () if value is not None
        )
    if external_ip := ip_or_none(alert.get("host_external_ip")):
        observables.append({"name": "device.external_ip", "type_id": 2, "value": external_ip})
    return observables


def detection_finding(alert: Mapping[str, Any], with_observables: bool = True) -> dict[str, Any]:
    """An OCSF 1.5.0 Detection Finding for one alert. The activity follows the incident's lifecycle:
    Close once closed or dismissed, Update once it changed after creation, else Create; `time` is the
    incident's updated_at (the moment of this state). Without observables for a caller that builds them
    for a whole batch (`ocsf_findings`)."""
    huntress = alert["huntress"]
    status = huntress.get("status")
    created, updated = huntress.get("created_at"), huntress.get("updated_at")
    if status in _CLOSED_STATUSES:
        activity = ACTIVITY_CLOSE
    elif created is not None and updated is not None and updated > created:
        activity = ACTIVITY_UPDATE
    else:
        activity = ACTIVITY_CREATE
    severity_id = alert.get("severity_id") or 0
    status_id = alert.get("status_id") or 0
    macs = _macs(alert.get("host_mac_addresses"))
    product = alert.get("security_product") or "Huntress"
    event = {
        "activity_id": activity,
        "activity_name": _ACTIVITY_NAMES[activity],
        "category_uid": FINDINGS_CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": DETECTION_FINDING_CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": DETECTION_FINDING_CLASS_UID * 100 + activity,
        "type_name": f"Detection Finding: {_ACTIVITY_NAMES[activity]}",
        "time": _event_time(updated, created, huntress.get("status_updated_at")),
        "severity_id": severity_id,
        "severity": _SEVERITY_NAMES.get(severity_id),
        "status_id": status_id,
        "status": _STATUS_NAMES.get(status_id, status),  # 99 Other carries the Huntress label
        "message": huntress.get("subject"),
        "is_alert": activity != ACTIVITY_CLOSE,
        "metadata": _metadata(product, huntress.get("id"), alert.get("tenantid"), ["host"]),
        "finding_info": {
            "uid": alert.get("alert_uid") or str(huntress.get("id")),
            "title": huntress.get("subject") or f"Huntress incident report {huntress.get('id')}",
            "desc": huntress.get("summary"),
            "created_time": _millis(created),
            "modified_time": _millis(updated),
            "types": huntress.get("indicator_types"),
            "src_url": alert.get("portal_url"),
            "product_uid": None if huntress.get("id") is None else str(huntress.get("id")),
        },
        "device": {
            "uid": None if huntress.get("agent_id") is None else str(huntress.get("agent_id")),
            "hostname": alert.get("hostname"),
            "ip": ip_or_none(alert.get("host_ipv4")),
            "mac": macs[0] if macs else None,
            "type_id": _device_type(alert.get("host_os")),
            "os": _os(alert.get("host_os"), huntress.get("platform")),
        },
        "unmapped": {
            "huntress_status": status,
            "huntress_severity": huntress.get("severity"),
            "huntress_platform": huntress.get("platform"),
            "organization_id": huntress.get("organization_id"),
            "account_id": huntress.get("account_id"),
            "agent_id": huntress.get("agent_id"),
            "remediations_total": huntress.get("remediations_total"),
        },
    }
    if not any(event["device"][key] for key in ("uid", "hostname", "ip")):
        del event["device"]  # OCSF wants a device identified by at least one of these, or no device
    event = _compact(event)
    if with_observables and (observables := _observables(alert)):
        event["observables"] = observables
    return event


def device_inventory_info(agent_row: Mapping[str, Any]) -> dict[str, Any]:
    """An OCSF 1.5.0 Device Inventory Info event (activity Collect) for one agent row; `time` is the
    agent's updated_at, `device.last_seen_time` its last callback."""
    agent = agent_row["huntress"]
    macs = _macs(agent.get("mac_addresses"))
    ip = ip_or_none(agent.get("ipv4_address"))
    event = {
        "activity_id": ACTIVITY_COLLECT,
        "activity_name": "Collect",
        "category_uid": DISCOVERY_CATEGORY_UID,
        "category_name": "Discovery",
        "class_uid": DEVICE_INVENTORY_INFO_CLASS_UID,
        "class_name": "Device Inventory Info",
        "type_uid": DEVICE_INVENTORY_INFO_CLASS_UID * 100 + ACTIVITY_COLLECT,
        "type_name": "Device Inventory Info: Collect",
        "time": _event_time(agent.get("updated_at"), agent.get("created_at"), agent.get("last_callback_at")),
        "severity_id": SEVERITY_INFORMATIONAL,
        "severity": _SEVERITY_NAMES[SEVERITY_INFORMATIONAL],
        "metadata": _metadata("Huntress Managed EDR", agent.get("id"), agent_row.get("tenantid"), ["host"]),
        "device": {
            "uid": None if agent.get("id") is None else str(agent.get("id")),
            "hostname": agent.get("hostname"),
            "domain": agent.get("domain_name"),
            "ip": ip,
            "mac": macs[0] if macs else None,
            "type_id": _device_type(agent.get("os")),
            "os": _os(agent.get("os"), agent.get("platform"), agent.get("os_build_version")),
            "is_managed": True,
            "created_time": _millis(agent.get("created_at")),
            "last_seen_time": _millis(agent.get("last_callback_at")),
            "groups": [{"name": tag} for tag in agent.get("tags") or ()],
            "hw_info": {"serial_number": agent.get("serial_number"), "cpu_architecture": agent.get("arch")},
            "agent_list": [
                {
                    "name": "Huntress Agent",
                    "type_id": 1,
                    "uid": None if agent.get("id") is None else str(agent.get("id")),
                    "vendor_name": VENDOR,
                    "version": agent.get("version"),
                }
            ],
            "network_interfaces": [{"ip": ip, "mac": mac, "type_id": 0} for mac in macs],
        },
        "unmapped": {
            name: agent.get(name) for name in DEVICE_INVENTORY_INFO_SCHEMA.field("unmapped").type.names
        },
    }
    return _compact(event)


def to_table(events: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """OCSF events as a Table of `schema` (`DETECTION_FINDING_SCHEMA` or `DEVICE_INVENTORY_INFO_SCHEMA`);
    attributes outside the schema are left out, missing ones are null."""
    return pa.Table.from_pylist(list(events), schema=schema)
