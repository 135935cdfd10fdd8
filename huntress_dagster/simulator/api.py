"""Routing of `/v1/...` requests over a World: list parameters (limit, page_token, sort_field, sort_direction,
filters with enum validation -> 400), envelopes, and the reseller sub-paths `/v1/accounts/{id}/...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .paging import BadRequest, parse_iso
from .signals import ENTITY_TYPES, SIGNAL_STATUSES, SIGNAL_TYPES

NOT_FOUND = (404, {"status": 404, "error": "Not Found"})
SEVERITY = {"low", "high", "critical"}
TICKET_STATUS = {"open", "overdue", "resolved"}


@dataclass(frozen=True)
class Collection:
    """One list endpoint as swagger declares it."""

    singular: str
    lister: str  # World method
    sorts: frozenset[str]
    enums: dict[str, set[str]] = field(default_factory=dict)
    csv_enums: dict[str, set[str]] = field(default_factory=dict)  # comma-separated lists of enum values
    ints: tuple[str, ...] = ()
    strs: tuple[str, ...] = ()
    bools: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()


_BASIC_SORTS = frozenset({"id", "created_at", "updated_at"})
COLLECTIONS = {
    "organizations": Collection("organization", "list_organizations", _BASIC_SORTS | {"name", "key"},
                                strs=("name", "key")),
    "agents": Collection("agent", "list_agents", _BASIC_SORTS, {"platform": {"windows", "darwin", "linux"}},
                         ints=("organization_id",), strs=("hostname", "os", "version")),
    "incident_reports": Collection(
        "incident_report", "list_incidents", _BASIC_SORTS,
        {"status": {"sent", "closed", "dismissed", "auto_remediating", "deleting", "partner_dismissed"},
         "severity": SEVERITY,
         "platform": {"windows", "darwin", "microsoft_365", "google", "linux", "email_security", "other"},
         "indicator_type": {
             "footholds", "monitored_files", "ransomware_canaries", "antivirus_detections", "process_detections",
             "managed_identity", "mde_detections", "siem_detections", "favicon_detections", "behavioral_detections",
             "email_security_detections", "app_control", "ai_misuse"}},
        ints=("organization_id", "agent_id")),
    "signals": Collection("signal", "list_signals", _BASIC_SORTS | {"status"}, {"entity_type": set(ENTITY_TYPES)},
                          {"types": set(SIGNAL_TYPES), "statuses": set(SIGNAL_STATUSES)},
                          ints=("organization_id",), strs=("entity_id",),
                          dates=("investigated_at_min", "investigated_at_max")),
    "escalations": Collection("escalation", "list_escalations", _BASIC_SORTS | {"severity", "due_at"},
                              {"status": TICKET_STATUS, "severity": SEVERITY}, ints=("organization_id",),
                              strs=("subtype",)),
    "platform_actions": Collection("platform_action", "list_platform_actions", _BASIC_SORTS | {"severity", "due_at"},
                                   {"status": TICKET_STATUS, "severity": SEVERITY}, ints=("organization_id",),
                                   strs=("subtype",)),
    "identities": Collection("identity", "list_identities", _BASIC_SORTS,
                             {"tenant_type": {"microsoft_365", "google_workspace"},
                              "risk_level": {"none", "low", "medium", "high"}},
                             ints=("organization_id", "escalation_id"),
                             bools=("billable", "enabled", "external", "mfa_enabled")),
    "external_ports": Collection("external_port", "list_external_ports", _BASIC_SORTS | {"port", "protocol"},
                                 {"protocol": {"TCP", "UDP"}}, ints=("organization_id", "port"),
                                 strs=("service",), bools=("risky_service",)),
    "accounts": Collection("account", "list_accounts", _BASIC_SORTS | {"name", "subdomain"},
                           {"status": {"enabled", "disabled"}}, strs=("name", "subdomain")),
}
# What `/v1/accounts/{account_id}/...` serves for a customer account (escalations, identities and platform
# actions exist only at the top level).
ACCOUNT_SCOPED = {"agents", "incident_reports", "organizations", "signals", "external_ports"}


def int_param(query: dict[str, str], name: str, default: int | None = None) -> int | None:
    if name not in query:
        return default
    try:
        return int(query[name])
    except ValueError:
        raise BadRequest(f"{name} is invalid") from None


def route(world: Any, path: str, query: dict[str, str], base_url: str) -> tuple[int, Any]:
    """(status, payload) of GET `path` (`/v1/...`); `base_url` (ending in /v1) builds next_page_url."""
    segments = path.strip("/").split("/")
    if segments[:1] != ["v1"]:
        return NOT_FOUND
    segments = segments[1:]
    if segments == ["account"]:
        return 200, {"account": world.account_json()}
    if segments == ["actor"]:
        return 200, world.actor_json()
    if segments[:1] == ["accounts"] and len(segments) >= 2:
        if not segments[1].isdigit():
            return NOT_FOUND
        account_id = int(segments[1])
        with world.lock:
            child = world.accounts.get(account_id)
            entry = world.account_entries.get(account_id)
            if child is None or entry is None:
                return NOT_FOUND
            if len(segments) == 2:
                return 200, {"account": world.customer_account_json(entry)}
        if segments[2] not in ACCOUNT_SCOPED:
            return NOT_FOUND
        return _collection(child, segments[2:], query, base_url, f"accounts/{account_id}/")
    return _collection(world, segments, query, base_url, "")


def _collection(world: Any, segments: list[str], query: dict[str, str], base_url: str,
                prefix: str) -> tuple[int, Any]:
    name = segments[0] if segments else ""
    spec = COLLECTIONS.get(name)
    if spec is None:
        return NOT_FOUND
    if len(segments) == 1:
        filters = _filters(spec, query)
        limit, sort_field, direction, token = _paging(query, spec.sorts)
        items, next_token = getattr(world, spec.lister)(filters, sort_field, direction, limit, token)
        return 200, {name: items, "pagination": _pagination(base_url, prefix + name, query, next_token)}
    if not segments[1].isdigit():
        return NOT_FOUND
    record_id = int(segments[1])
    if len(segments) == 2:
        record = None if name == "accounts" else world.get_json(name, record_id)
        return (200, {spec.singular: record}) if record is not None else NOT_FOUND
    if name == "incident_reports" and segments[2] == "remediations" and len(segments) in (3, 4):
        incident = world.incidents.get(record_id)
        if incident is None:
            return NOT_FOUND
        if len(segments) == 3:
            return _remediations(world, incident, query, base_url, f"{prefix}incident_reports/{record_id}/remediations")
        index = int(segments[3]) - incident.id * 100 if segments[3].isdigit() else -1
        if 0 <= index < incident.remediation_count:
            return 200, {"remediation": world.remediation_json(incident, index)}
    return NOT_FOUND


def _paging(query: dict[str, str], sort_fields: frozenset[str]) -> tuple[int, str, str, str | None]:
    limit = int_param(query, "limit", 10)
    if limit is None or not 1 <= limit <= 500:
        raise BadRequest("limit does not have a valid value (1..500)")
    sort_field = query.get("sort_field", "id")
    if sort_field not in sort_fields:
        raise BadRequest("sort_field does not have a valid value")
    direction = query.get("sort_direction", "desc")
    if direction not in ("asc", "desc"):
        raise BadRequest("sort_direction does not have a valid value")
    return limit, sort_field, direction, query.get("page_token") or None


def _filters(spec: Collection, query: dict[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for name, allowed in spec.enums.items():
        if name in query:
            if query[name] not in allowed:
                raise BadRequest(f"{name} does not have a valid value")
            filters[name] = query[name]
    for name, allowed in spec.csv_enums.items():
        if name in query:
            values = {v.strip() for v in query[name].split(",") if v.strip()}
            if not values or values - allowed:
                raise BadRequest(f"{name} does not have a valid value")
            filters[name] = values
    for name in spec.ints:
        if name in query:
            filters[name] = int_param(query, name)
    for name in spec.strs:
        if name in query:
            filters[name] = query[name]
    for name in spec.bools:
        if name in query:
            if query[name].lower() not in ("true", "false"):
                raise BadRequest(f"{name} is invalid")
            filters[name] = query[name].lower() == "true"
    for name in spec.dates:
        if name in query:
            filters[name] = parse_iso(name, query[name])
    if "entity_id" in filters and "entity_type" not in filters:
        raise BadRequest("entity_id must be used in tandem with entity_type")
    return filters


def _pagination(base_url: str, collection: str, query: dict[str, str], next_token: str | None) -> dict[str, Any]:
    if not next_token:
        return {}
    params = {k: v for k, v in query.items() if k != "page_token"}
    params["page_token"] = next_token
    return {"next_page_token": next_token, "next_page_url": f"{base_url}/{collection}?{urlencode(params)}"}


def _remediations(world: Any, incident: Any, query: dict[str, str], base_url: str, collection: str):
    limit, _, direction, token = _paging(query, _BASIC_SORTS)
    items = [world.remediation_json(incident, k) for k in range(incident.remediation_count)]
    if direction == "desc":
        items.reverse()
    start = int(token) if token and token.isdigit() else 0
    found = items[start:start + limit]
    next_token = str(start + limit) if start + limit < len(items) else None
    return 200, {"remediations": found, "pagination": _pagination(base_url, collection, query, next_token)}
