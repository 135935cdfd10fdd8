"""Escalations and platform actions: the two "needs your attention" models, which share one shape.

Per swagger (Escalation / PlatformAction): `account` {id, name}, `organizations` [{id, name}, ...] (several
for a multi-organization issue), `severity`, `status` (`open` | `sent` | `resolved`), `subject`, `type`,
`subtype`, `created_at`, `updated_at`, `resolved_at`; the single GET adds `entities` {total_count, has_more,
items}. The list filter `status` takes `open` | `overdue` | `resolved`: open matches every unresolved
record, overdue the unresolved ones past their (unrendered) due time, which also serves `sort_field=due_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .paging import iso, page

DAY = 86_400
SEVERITIES = ["low", "high", "critical"]
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
RESPONSE_HOURS = {"low": 72, "high": 24, "critical": 4}
# (type, subject, subtypes, entity kind, multi-organization share)
ESCALATION_KINDS = [
    ("Unexpected Country Access", "Unexpected Country Access", ["RU", "CN", "NG", "BR", "RO", "KP", "VN"],
     "Identity", 0.1),
    ("Unexpected VPN Access", "Sign-in from an unexpected VPN provider", ["NordVPN", "ExpressVPN", "Surfshark",
                                                                          "ProtonVPN"], "Identity", 0.3),
    ("False Positive Review", "Allow-list request: remote access tool flagged as malicious",
     ["AnyDesk", "ScreenConnect", "Splashtop"], "Agent", 0.2),
    ("Managed Defender", "Additional file path details needed for a Defender detection", [None], "Agent", 0.0),
    ("Environmental Issue", "Defender Disabled", [None], "Agent", 0.4),
    ("Environmental Issue", "Outdated Huntress agents across organizations", [None], "Agent", 0.8),
]
ESCALATION_WEIGHTS = [25, 12, 18, 10, 20, 15]
PLATFORM_ACTION_KINDS = [
    ("Integration Issue", "Unable to send incident reports to your PSA", ["ConnectWise Manage", "Autotask"],
     None, 0.6),
    ("Environmental Issue", "Defender Disabled", [None], "Agent", 0.2),
    ("Microsoft 365 Integration", "Microsoft 365 integration consent error", ["consent_revoked", "auth_failed"],
     None, 0.0),
    ("Log Source", "Log source stopped reporting events", ["syslog", "rest_api"], None, 0.1),
    ("Identity Sync", "On-premises identity sync is misconfigured", [None], "Identity", 0.0),
    ("Agent Health", "Host low on disk space", [None], "Agent", 0.0),
]
PLATFORM_ACTION_WEIGHTS = [15, 30, 15, 15, 10, 15]


@dataclass(slots=True)
class Ticket:
    id: int
    kind_index: int
    subtype: str | None
    severity: str
    status: str
    organization_ids: tuple[int, ...]
    entity_ids: tuple[int, ...]  # agent or identity ids, per the kind's entity kind
    entity_count: int
    created_at: int
    updated_at: int
    resolved_at: int | None
    due_at: int


class _TicketBook:
    """One collection of tickets (escalations or platform actions)."""

    def __init__(self, name: str, kinds: list, weights: list[int], first_id: int):
        from sortedcontainers import SortedList

        self.name, self.kinds, self.weights = name, kinds, weights
        self.records: dict[int, Ticket] = {}
        self.by_updated = SortedList()
        self.next_id = first_id

    def put(self, ticket: Ticket) -> None:
        self.records[ticket.id] = ticket
        self.by_updated.add((ticket.updated_at, ticket.id))

    def move(self, ticket: Ticket, updated_at: int) -> None:
        self.by_updated.remove((ticket.updated_at, ticket.id))
        ticket.updated_at = max(updated_at, ticket.updated_at)
        self.by_updated.add((ticket.updated_at, ticket.id))


class TicketsMixin:
    """Escalations (`/v1/escalations`) and platform actions (`/v1/platform_actions`) of a World."""

    def _init_tickets(self) -> None:
        offset = self.config.id_offset
        self._books = {"escalations": _TicketBook("escalations", ESCALATION_KINDS, ESCALATION_WEIGHTS,
                                                  80_001 + offset),
                       "platform_actions": _TicketBook("platform_actions", PLATFORM_ACTION_KINDS,
                                                       PLATFORM_ACTION_WEIGHTS, 60_001 + offset)}
        self.escalations = self._books["escalations"].records
        self.platform_actions = self._books["platform_actions"].records
        self._ticket_rng = {name: self._stream(name) for name in self._books}

    def _build_tickets(self) -> None:
        start = self.anchor - self.config.days * DAY
        for name, count in (("escalations", self.config.escalations),
                            ("platform_actions", self.config.platform_actions)):
            rng = self._ticket_rng[name]
            for created in sorted(rng.randint(start, self.anchor - 600) for _ in range(count)):
                ticket = self._new_ticket(name, created)
                if rng.random() < 0.75 and created < self.anchor - DAY:
                    resolved = min(self.anchor, created + rng.randint(1800, 6 * DAY))
                    ticket.status, ticket.resolved_at, ticket.updated_at = "resolved", resolved, resolved
                elif rng.random() < 0.5:
                    ticket.status, ticket.updated_at = "sent", min(self.anchor, created + rng.randint(60, 3600))
                self._books[name].put(ticket)

    def _new_ticket(self, name: str, created: int) -> Ticket:
        book, rng = self._books[name], self._ticket_rng[name]
        kind_index = rng.choices(range(len(book.kinds)), book.weights)[0]
        _, _, subtypes, entity_kind, multi_share = book.kinds[kind_index]
        org_ids = self._org_ids()
        orgs = [rng.choice(org_ids)]
        if len(org_ids) > 1 and rng.random() < multi_share:
            orgs = sorted(rng.sample(org_ids, rng.randint(2, min(4, len(org_ids)))))
        pool: list[int] = []
        for org_id in orgs:
            if entity_kind == "Agent":
                pool += self._agents_by_org_cache().get(org_id, [])
            elif entity_kind == "Identity":
                pool += self._identities_by_org.get(org_id, [])
        count = 0 if not pool else (rng.randint(11, 30) if rng.random() < 0.08 else rng.randint(1, 3))
        count = min(count, len(pool))
        entity_ids = tuple(rng.sample(pool, min(count, 10)))
        severity = rng.choices(SEVERITIES, [30, 55, 15])[0]
        ticket = Ticket(id=book.next_id, kind_index=kind_index, subtype=rng.choice(subtypes), severity=severity,
                        status="open", organization_ids=tuple(orgs), entity_ids=entity_ids,
                        entity_count=count, created_at=created,
                        updated_at=created, resolved_at=None, due_at=created + RESPONSE_HOURS[severity] * 3600)
        book.next_id += 1
        return ticket

    def _agents_by_org_cache(self) -> dict[int, list[int]]:
        if self._agents_by_org_size != len(self.agents):
            self._agents_by_org = {}
            for agent in self.agents.values():
                self._agents_by_org.setdefault(agent.organization_id, []).append(agent.id)
            self._agents_by_org_size = len(self.agents)
        return self._agents_by_org

    def _tick_tickets(self, name: str, now: int, opened: int, closed: int) -> dict[str, list[int]]:
        book, rng = self._books[name], self._ticket_rng[name]
        changed: dict[str, list[int]] = {f"{name}_opened": [], f"{name}_closed": [], f"{name}_sent": []}
        # Oldest unresolved first: the SOC and partners work the queue in order.
        unresolved = [t for t in book.records.values() if t.status != "resolved"]
        for ticket in unresolved[:closed]:
            ticket.status, ticket.resolved_at = "resolved", max(now, ticket.updated_at)
            book.move(ticket, now)
            changed[f"{name}_closed"].append(ticket.id)
        # and one waiting ticket is sent on to the partner (when the tick moves this book at all)
        for ticket in unresolved[closed:closed + 1] if opened or closed else []:
            if ticket.status == "open" and rng.random() < 0.5:
                ticket.status = "sent"
                book.move(ticket, now)
                changed[f"{name}_sent"].append(ticket.id)
        for _ in range(opened):
            ticket = self._new_ticket(name, now)
            book.put(ticket)
            changed[f"{name}_opened"].append(ticket.id)
        return changed

    # --- rendering and queries ---------------------------------------------------------------

    def ticket_json(self, name: str, ticket: Ticket, *, with_entities: bool = False) -> dict[str, Any]:
        kind, subject = self._books[name].kinds[ticket.kind_index][:2]
        if ticket.subtype and kind == "Unexpected Country Access":
            subject = f"{subject}: {ticket.subtype}"
        record = {
            "id": ticket.id, "account": {"id": self.config.account_id, "name": self.config.account_name},
            "organizations": [{"id": org_id, "name": self._org_name(org_id)} for org_id in ticket.organization_ids],
            "created_at": iso(ticket.created_at), "resolved_at": iso(ticket.resolved_at),
            "severity": ticket.severity, "status": ticket.status, "subject": subject, "subtype": ticket.subtype,
            "type": kind, "updated_at": iso(ticket.updated_at),
        }
        if with_entities:
            record["entities"] = {"total_count": ticket.entity_count, "has_more": ticket.entity_count > 10,
                                  "items": [self._entity_json(name, ticket, e) for e in ticket.entity_ids[:10]]}
        return record

    def _entity_json(self, name: str, ticket: Ticket, entity_id: int) -> dict[str, Any]:
        entity_kind = self._books[name].kinds[ticket.kind_index][3]
        if entity_kind == "Agent" and entity_id in self.agents:
            agent = self.agent_json(self.agents[entity_id])
            return {"id": entity_id, "type": "Agent",
                    "details": {k: agent[k] for k in ("hostname", "platform", "os", "last_callback_at")}}
        identity = self.identities.get(entity_id)
        details = {} if identity is None else {
            "username": identity.username, "email": identity.username, "tenant_type": self._tenant_type(identity),
            "enabled": identity.enabled}
        return {"id": entity_id, "type": "Identity", "details": details}

    def list_tickets(self, name: str, filters: dict[str, Any], sort_field: str, direction: str, limit: int,
                     token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        book = self._books[name]
        now = self.now()

        def keep(t: Ticket) -> bool:
            status = filters.get("status")
            if status == "resolved" and t.status != "resolved":
                return False
            if status in ("open", "overdue") and t.status == "resolved":
                return False
            if status == "overdue" and t.due_at >= now:
                return False
            if "severity" in filters and t.severity != filters["severity"]:
                return False
            if "subtype" in filters and t.subtype != filters["subtype"]:
                return False
            return not ("organization_id" in filters and filters["organization_id"] not in t.organization_ids)

        def key(t: Ticket, field: str) -> int:
            return SEVERITY_RANK[t.severity] if field == "severity" else t.due_at

        with self.lock:
            found, next_token = page(book.records, book.by_updated, keep, sort_field, direction, limit, token,
                                     key=key)
            return [self.ticket_json(name, t) for t in found], next_token

    def list_escalations(self, filters, sort_field, direction, limit, token):
        return self.list_tickets("escalations", filters, sort_field, direction, limit, token)

    def list_platform_actions(self, filters, sort_field, direction, limit, token):
        return self.list_tickets("platform_actions", filters, sort_field, direction, limit, token)

    def truth_tickets(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": t.id, "account_id": self.config.account_id, "organization_ids": list(t.organization_ids),
                     "type": self._books[name].kinds[t.kind_index][0], "subtype": t.subtype,
                     "severity": t.severity, "status": t.status, "resolved_at": iso(t.resolved_at),
                     "updated_at": iso(t.updated_at)} for t in self._books[name].records.values()]

    def truth_escalations(self) -> list[dict[str, Any]]:
        """The current state of every escalation's key fields (for tests and benchmarks)."""
        return self.truth_tickets("escalations")

    def truth_platform_actions(self) -> list[dict[str, Any]]:
        return self.truth_tickets("platform_actions")
