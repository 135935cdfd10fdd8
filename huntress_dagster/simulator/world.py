"""The simulated Huntress account: a seeded, deterministic world that can move in time.

Records are kept compact (bodies and remediation items are rendered on demand from the seed), so a
world of a million incident reports fits in memory. Two sorted indexes serve the API's sort orders
with keyset pagination, which stays exact while the world changes under a paginating client.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedList

from .accounts import AccountsMixin
from .catalog import (
    AGENT_OS,
    DAY,
    ENDPOINT_INDICATORS,
    INCIDENT_PLATFORM_WEIGHTS,
    INCIDENT_PLATFORMS,
    OPEN_STATUSES,
    ORG_SUFFIX,
    ORG_WORDS,
    PLATFORM_INDICATORS,
    REMEDIATION_ACTIONS,
    REMEDIATION_STATUSES,
    SEVERITIES,
    SEVERITY_WEIGHTS,
    STATUS_WEIGHTS,
    STATUSES,
    SUMMARIES,
    Agent,
    Incident,
)
from .config import TICK_COUNTS, WorldConfig
from .inventory import InventoryMixin, Organization
from .paging import BadRequest, decode_token, encode_token, iso, page
from .signals import SignalsMixin
from .tickets import TicketsMixin

__all__ = ["BadRequest", "World", "WorldConfig", "decode_token", "encode_token", "iso"]


class World(SignalsMixin, TicketsMixin, InventoryMixin, AccountsMixin):
    """Everything one simulated Huntress account holds, guarded by one lock."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        self.anchor = self.config.anchor or int(time.time())
        self._clock = self.anchor
        self.lock = threading.RLock()
        self._rng = random.Random(self.config.seed)
        self.tick_count = 0
        self.organizations: dict[int, Organization] = {}
        self.agents: dict[int, Agent] = {}
        self.incidents: dict[int, Incident] = {}
        self._agents_by_updated = SortedList()  # (updated_at, id)
        self._incidents_by_updated = SortedList()
        self._next_incident_id = 100_001 + self.config.id_offset
        self._agent_ids: list[int] = []
        self._agents_by_org: dict[int, list[int]] = {}
        self._agents_by_org_size = -1
        # Called at the end of every tick, under the lock, with the tick's changes (webhooks.py's sender).
        self.tick_listeners: list[Callable[[World, dict[str, Any]], None]] = []
        self._init_inventory()
        self._init_signals()
        self._init_tickets()
        self._init_accounts()
        self._build()
        self._build_inventory()
        self._build_signals()
        self._build_tickets()
        self._build_accounts()

    def _stream(self, name: str) -> random.Random:
        """A random stream of its own per content type: adding one never shifts another's records."""
        return random.Random(f"huntress-sim:{self.config.seed}:{name}")

    def now(self) -> int:
        """The world's current time: the wall clock, never before the anchor or the latest tick."""
        return max(int(time.time()), self._clock)

    # --- generation ----------------------------------------------------------------------------

    def _build(self) -> None:
        cfg, rng = self.config, self._rng
        start = self.anchor - cfg.days * DAY
        for i in range(cfg.organizations):
            org_id = 501 + cfg.id_offset + i
            name = f"{ORG_WORDS[i % len(ORG_WORDS)]} {ORG_SUFFIX[(i * 7) % len(ORG_SUFFIX)]}"
            if i >= len(ORG_WORDS):
                name = f"{name} {i}"
            created = start - rng.randint(30, 900) * DAY
            logs_sources = rng.randint(0, 40)
            rng.randint(0, 300)  # formerly a random billable identity count: now counted from identities
            self.organizations[org_id] = Organization(
                id=org_id, name=name, key=f"org{org_id}", created_at=created, updated_at=created + DAY,
                logs_sources_count=logs_sources, sat_learner_count=rng.randint(0, 300))
        org_ids = list(self.organizations)
        for i in range(cfg.agents):
            agent = self._new_agent(10_001 + cfg.id_offset + i, rng.choice(org_ids),
                                    start - rng.randint(1, 400) * DAY)
            self._put_agent(agent)
        agent_ids = list(self.agents)
        # Incidents are created in id order, so sorting by id equals sorting by created_at.
        created_times = sorted(rng.randint(start, self.anchor) for _ in range(cfg.incidents))
        for created in created_times:
            incident = self._new_incident(created, agent_ids)
            # Older incidents have moved on: most were closed some hours or days after creation.
            if incident.status not in OPEN_STATUSES:
                moved = min(self.anchor, created + rng.randint(600, 5 * DAY))
                incident.updated_at = incident.status_updated_at = moved
                if incident.status == "closed":
                    incident.closed_at = moved
            self._put_incident(incident)

    def _new_agent(self, agent_id: int, org_id: int, created: int) -> Agent:
        rng = self._rng
        platform = rng.choices(["windows", "darwin", "linux"], [80, 12, 8])[0]
        prefix = {"windows": "DESKTOP", "darwin": "MBP", "linux": "srv"}[platform]
        callback = self.anchor - rng.randint(0, 3 * DAY if rng.random() < 0.9 else 60 * DAY)
        return Agent(
            id=agent_id, organization_id=org_id, hostname=f"{prefix}-{agent_id:05d}", platform=platform,
            os_index=rng.randrange(len(AGENT_OS[platform])), created_at=created,
            updated_at=max(created, callback), last_callback_at=callback,
            last_survey_at=callback - 3600 if platform == "windows" else None,
            ipv4=f"10.{org_id % 250}.{(agent_id >> 8) % 250}.{agent_id % 250 + 1}",
            external_ip=None if rng.random() < self.config.null_share else
            f"203.0.{org_id % 250}.{rng.randint(1, 254)}",
            macs=tuple(f"02:{org_id % 256:02x}:{(agent_id >> 8) % 256:02x}:{agent_id % 256:02x}:{k:02x}:{rng.randint(0, 255):02x}"
                       for k in range(rng.choice([1, 1, 2]))),
            version=f"0.14.{rng.randint(10, 40)}", edr_version=None if platform != "windows" else f"0.3.{rng.randint(1, 30)}",
            defender_status=rng.choice(["Healthy", "Unhealthy", "Disabled"]) if platform == "windows" else None,
            firewall_status=rng.choices(["Enabled", "Disabled", "Isolated"], [85, 13, 2])[0],
            tamper_protection=rng.choice([True, True, False]) if platform == "windows" else None,
            tags=tuple(rng.sample(["Server", "Production", "Workstation", "VIP", "Finance", "Remote"], rng.randint(0, 2))),
            serial=f"SN{rng.getrandbits(40):010X}",
        )

    def _new_incident(self, created: int, agent_ids: list[int]) -> Incident:
        cfg, rng = self.config, self._rng
        incident_id = self._next_incident_id
        self._next_incident_id += 1
        platform = rng.choices(INCIDENT_PLATFORMS, INCIDENT_PLATFORM_WEIGHTS)[0]
        pool = PLATFORM_INDICATORS.get(platform, ENDPOINT_INDICATORS)
        indicators = tuple(sorted(rng.sample(pool, min(len(pool), rng.choice([1, 1, 2, 3])))))
        agent = self.agents[rng.choice(agent_ids)] if agent_ids and platform in ("windows", "darwin", "linux") else None
        if agent:
            platform = agent.platform  # an endpoint incident happens on its agent's platform
        organization_id = agent.organization_id if agent else rng.choice(list(self.organizations))
        if rng.random() < cfg.null_share / 2:
            organization_id = None
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0] if created < self.anchor - DAY else "sent"
        roll = rng.random()
        if roll < cfg.huge_body_share:
            body_bytes = rng.randint(5 * 1024 * 1024, 6 * 1024 * 1024)
        elif roll < cfg.huge_body_share + cfg.large_body_share:
            body_bytes = rng.randint(512_000, 5 * 1024 * 1024 - 1)
        else:
            body_bytes = rng.randint(cfg.body_min_bytes, cfg.body_max_bytes)
        many = rng.random() < cfg.many_remediations_share
        return Incident(
            id=incident_id, organization_id=organization_id,
            agent_id=agent.id if agent and rng.random() > cfg.null_share / 2 else None,
            platform=platform, severity=rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0], status=status,
            indicator_types=indicators,
            indicator_counts={name: (rng.randint(1, 4) if name in indicators else 0) for name in pool},
            created_at=created, updated_at=created,
            sent_at=None if rng.random() < cfg.null_share else created + rng.randint(60, 1800),
            closed_at=None, status_updated_at=created,
            summary_index=None if rng.random() < cfg.null_share else rng.randrange(len(SUMMARIES)),
            remediation_count=rng.randint(11, 30) if many else rng.randint(0, 4),
            flat_remediations=rng.random() < cfg.flat_remediations_share,
            body_bytes=body_bytes,
            hostname=agent.hostname if agent else f"{platform}-tenant",
        )

    def _put_agent(self, agent: Agent) -> None:
        self.agents[agent.id] = agent
        self._agents_by_updated.add((agent.updated_at, agent.id))
        self._org_agent_counts[agent.organization_id] += 1

    def _put_incident(self, incident: Incident) -> None:
        self.incidents[incident.id] = incident
        self._incidents_by_updated.add((incident.updated_at, incident.id))
        self._org_incident_counts[incident.organization_id] += 1

    # --- time moves ----------------------------------------------------------------------------

    def tick(self, new_incidents: int = 3, status_changes: int = 2, agent_changes: int = 5,
             new_agents: int = 0, now: int | None = None, *, new_signals: int = 3, signal_status_changes: int = 2,
             escalations_opened: int = 1, escalations_closed: int = 1, platform_actions_opened: int = 1,
             platform_actions_closed: int = 1, identity_changes: int = 1, new_identities: int = 0,
             port_scans: int = 2, ports_opened: int = 0, ports_closed: int = 0, organization_renames: int = 0,
             identities_removed: int = 0, accounts: bool = True) -> dict[str, Any]:
        """Move the world: new incidents appear, open ones change status, agents call back; new signals
        arrive and old ones change status; escalations and platform actions open and resolve; identities
        and external ports change; customer accounts (if any) move with the same counts."""
        with self.lock:
            now = max(now or int(time.time()), self.anchor)
            self._clock = max(self._clock, now)
            self.tick_count += 1
            rng = self._rng
            changed: dict[str, Any] = {"new_incidents": [], "status_changes": [], "agent_changes": [],
                                              "new_agents": []}
            org_ids = list(self.organizations)
            for _ in range(new_agents):
                agent = self._new_agent(10_001 + self.config.id_offset + len(self.agents), rng.choice(org_ids), now)
                agent.updated_at = agent.last_callback_at = now
                self._put_agent(agent)
                changed["new_agents"].append(agent.id)
            for agent_id in rng.sample(list(self.agents), min(agent_changes, len(self.agents))):
                agent = self.agents[agent_id]
                self._agents_by_updated.remove((agent.updated_at, agent.id))
                agent.updated_at = agent.last_callback_at = now
                self._agents_by_updated.add((agent.updated_at, agent.id))
                changed["agent_changes"].append(agent_id)
            candidates = [i for i in self._newest_incident_ids(500) if self.incidents[i].status in OPEN_STATUSES]
            for incident_id in candidates[:status_changes]:
                incident = self.incidents[incident_id]
                self._incidents_by_updated.remove((incident.updated_at, incident.id))
                incident.status = rng.choices(["closed", "dismissed", "auto_remediating"], [70, 20, 10])[0]
                incident.updated_at = incident.status_updated_at = now
                incident.closed_at = now if incident.status == "closed" else None
                self._incidents_by_updated.add((incident.updated_at, incident.id))
                changed["status_changes"].append(incident_id)
            agent_ids = list(self.agents)
            for _ in range(new_incidents):
                incident = self._new_incident(now, agent_ids)
                incident.status, incident.sent_at = "sent", now
                self._put_incident(incident)
                changed["new_incidents"].append(incident.id)
            # Everything below draws from its own random streams: the changes above never depend on it.
            changed.update(self._tick_signals(now, new_signals, signal_status_changes))
            changed.update(self._tick_tickets("escalations", now, escalations_opened, escalations_closed))
            changed.update(self._tick_tickets("platform_actions", now, platform_actions_opened,
                                              platform_actions_closed))
            changed.update(self._tick_inventory(now, identity_changes, new_identities, port_scans, ports_opened,
                                                ports_closed, organization_renames, identities_removed))
            if accounts and self.accounts:
                counts = {k: v for k, v in locals().items() if k in TICK_COUNTS}
                changed["accounts"] = self._tick_accounts(now, counts)
            for listener in list(self.tick_listeners):
                listener(self, changed)
            return changed

    def _newest_incident_ids(self, n: int) -> list[int]:
        return [record_id for _, record_id in self._incidents_by_updated.islice(-n, reverse=True)]

    # --- rendering -----------------------------------------------------------------------------

    def agent_json(self, agent: Agent) -> dict[str, Any]:
        os_name, os_major, os_minor, build = AGENT_OS[agent.platform][agent.os_index]
        return {
            "id": agent.id, "account_id": self.config.account_id, "organization_id": agent.organization_id,
            "arch": "x86_64" if agent.platform != "darwin" else "arm64",
            "created_at": iso(agent.created_at), "updated_at": iso(agent.updated_at),
            "domain_name": "CORP" if agent.platform == "windows" else None,
            "edr_version": agent.edr_version, "external_ip": agent.external_ip, "hostname": agent.hostname,
            "defender_policy_status": "Compliant" if agent.defender_status else None,
            "defender_status": agent.defender_status,
            "defender_substatus": "Up to date" if agent.defender_status == "Healthy" else None,
            "firewall_status": agent.firewall_status,
            "tamper_protection_configured": agent.tamper_protection,
            "tamper_protection_actual": agent.tamper_protection,
            "ipv4_address": agent.ipv4, "last_callback_at": iso(agent.last_callback_at),
            "last_survey_at": iso(agent.last_survey_at), "mac_addresses": list(agent.macs),
            "service_pack_major": 0 if agent.platform == "windows" else None,
            "service_pack_minor": 0 if agent.platform == "windows" else None,
            "os": os_name, "os_build_version": build, "os_major": os_major, "os_minor": os_minor,
            "os_patch": 0, "platform": agent.platform, "serial_number": agent.serial, "tags": list(agent.tags),
            "version": agent.version, "version_number": 720899,
            "win_build_number": int(build) if agent.platform == "windows" else None,
        }

    def remediation_json(self, incident: Incident, index: int) -> dict[str, Any]:
        rng = random.Random(self.config.seed * 1_000_003 + incident.id * 1_009 + index)
        kind, action, param = REMEDIATION_ACTIONS[rng.randrange(len(REMEDIATION_ACTIONS))]
        status = rng.choice(REMEDIATION_STATUSES)
        approved = incident.created_at + rng.randint(60, 7200)
        if param:
            value = {"path": f"C:\\Users\\Public\\{rng.choice(['svc', 'upd', 'tmp'])}{index}.exe",
                     "task_name": f"\\Microsoft\\Windows\\Update{index}",
                     "registry_key": f"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\u{index}",
                     "process_id": str(rng.randint(1000, 65000))}[param]
            parameters: Any = [{"name": param, "description": value}]
        elif kind == "containment":
            parameters = [incident.hostname]
        else:
            parameters = []
        return {
            "id": incident.id * 100 + index, "type": kind, "action": action, "parameters": parameters,
            "status": status,
            "approved_at": iso(approved) if status != "unapproved" else None,
            "approved_by": {"id": 123123, "email": "john.smith@example.com", "name": "John Smith"}
            if status != "unapproved" else None,
            "completed_at": iso(approved + 60) if status == "completed" else None,
        }

    def incident_summary(self, incident: Incident) -> str | None:
        return None if incident.summary_index is None else SUMMARIES[incident.summary_index]

    def incident_json(self, incident: Incident, *, with_body: bool = True) -> dict[str, Any]:
        items = [self.remediation_json(incident, k) for k in range(min(10, incident.remediation_count))]
        remediations: Any = (items if incident.flat_remediations else
                             {"total_count": incident.remediation_count,
                              "has_more": incident.remediation_count > 10, "items": items})
        record = {
            "id": incident.id, "account_id": self.config.account_id, "agent_id": incident.agent_id,
            "organization_id": incident.organization_id, "platform": incident.platform,
            "severity": incident.severity, "status": incident.status,
            "subject": f"{incident.severity.upper()} - Incident on {incident.hostname} "
                       f"({self._org_name(incident.organization_id)})",
            "summary": self.incident_summary(incident),
            "indicator_types": list(incident.indicator_types), "indicator_counts": dict(incident.indicator_counts),
            "remediations": remediations,
            "sent_at": iso(incident.sent_at), "closed_at": iso(incident.closed_at),
            "status_updated_at": iso(incident.status_updated_at), "updated_at": iso(incident.updated_at),
            "created_at": iso(incident.created_at),
        }
        if with_body:
            record["body"] = self.render_body(incident, record)
        return record

    def render_body(self, incident: Incident, record: dict[str, Any]) -> str:
        from .bodies import render_body  # bodies are rendered on demand, never stored

        context = dict(record, portal_url=self.portal_url(incident),
                       organization_name=self._org_name(incident.organization_id), hostname=incident.hostname)
        return render_body(self.config.seed * 7_919 + incident.id, context, incident.body_bytes)

    def portal_url(self, incident: Incident) -> str:
        return (f"https://{self.config.subdomain}.huntress.io/org/{incident.organization_id}"
                f"/incident_reports/{incident.id}")

    def _org_name(self, org_id: int | None) -> str:
        org = self.organizations.get(org_id) if org_id is not None else None
        return org.name if org else "Unassigned"

    # --- queries -------------------------------------------------------------------------------

    def list_agents(self, filters: dict[str, Any], sort_field: str, direction: str, limit: int,
                    token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        def keep(agent: Agent) -> bool:
            if "organization_id" in filters and agent.organization_id != filters["organization_id"]:
                return False
            if "platform" in filters and agent.platform != filters["platform"]:
                return False
            if "hostname" in filters and agent.hostname != filters["hostname"]:
                return False
            if "os" in filters and AGENT_OS[agent.platform][agent.os_index][0] != filters["os"]:
                return False
            return not ("version" in filters and agent.version != filters["version"])

        with self.lock:
            found, next_key = page(self.agents, self._agents_by_updated, keep, sort_field, direction, limit, token)
            return [self.agent_json(a) for a in found], next_key

    def list_incidents(self, filters: dict[str, Any], sort_field: str, direction: str, limit: int,
                       token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        def keep(incident: Incident) -> bool:
            for name in ("status", "severity", "platform", "organization_id", "agent_id"):
                if name in filters and getattr(incident, name) != filters[name]:
                    return False
            return not ("indicator_type" in filters and filters["indicator_type"] not in incident.indicator_types)

        with self.lock:
            found, next_key = page(self.incidents, self._incidents_by_updated, keep, sort_field, direction, limit,
                                   token)
            found = [copy.copy(x) for x in found]
        # Bodies can be megabytes: render them from snapshots, outside the lock.
        return [self.incident_json(x) for x in found], next_key

    def get_json(self, collection: str, record_id: int) -> dict[str, Any] | None:
        """The single-record answer of `/v1/<collection>/{id}` (with the detail-only fields), or None."""
        with self.lock:
            if collection == "agents" and record_id in self.agents:
                return self.agent_json(self.agents[record_id])
            if collection == "incident_reports" and record_id in self.incidents:
                incident = copy.copy(self.incidents[record_id])
            elif collection == "organizations" and record_id in self.organizations:
                return self.organization_json(self.organizations[record_id], with_usages=True)
            elif collection == "signals" and record_id in self.signals:
                return self.signal_json(self.signals[record_id])
            elif collection in ("escalations", "platform_actions") and record_id in self._books[collection].records:
                return self.ticket_json(collection, self._books[collection].records[record_id], with_entities=True)
            elif collection == "identities" and record_id in self.identities:
                return self.identity_json(self.identities[record_id])
            elif collection == "external_ports" and record_id in self.external_ports:
                return self.external_port_json(self.external_ports[record_id])
            else:
                return None
        return self.incident_json(incident)

    def truth_incidents(self) -> list[dict[str, Any]]:
        """The current state of every incident's key fields (for tests and benchmarks)."""
        with self.lock:
            return [{"id": x.id, "account_id": self.config.account_id, "organization_id": x.organization_id,
                     "agent_id": x.agent_id, "status": x.status, "severity": x.severity,
                     "created_at": iso(x.created_at), "updated_at": iso(x.updated_at)}
                    for x in self.incidents.values()]

    def truth_agents(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": a.id, "organization_id": a.organization_id, "hostname": a.hostname,
                     "updated_at": iso(a.updated_at)} for a in self.agents.values()]
