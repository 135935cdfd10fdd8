"""Inventories: organizations (live counts, renames), identities (`/v1/identities`) and external ports
(`/v1/external_ports`), per swagger's Organization, Identity and ExternalPort models.

External ports have no timestamps of their own in swagger beyond the scan times; their (unrendered)
created/updated times serve `sort_field=created_at|updated_at`. Ports close (records disappear) and open
over time, so a consumer snapshots them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .paging import iso, page

DAY = 86_400
RISK_LEVELS = ["none", "low", "medium", "high"]
TENANT_TYPES = ["microsoft_365", "google_workspace"]
_FIRST = ["james", "maria", "robert", "linda", "michael", "sarah", "david", "karen", "daniel", "nancy", "omar",
          "yuki", "priya", "zoe", "lucas", "amara"]
_LAST = ["smith", "garcia", "chen", "patel", "nguyen", "muller", "okafor", "rossi", "kim", "silva"]
PORTS = [(22, "TCP", "ssh", True), (3389, "TCP", "rdp", True), (443, "TCP", "https", False),
         (80, "TCP", "http", False), (445, "TCP", "smb", True), (21, "TCP", "ftp", True), (23, "TCP", "telnet", True),
         (1194, "UDP", "openvpn", False), (500, "UDP", "ike", False), (161, "UDP", "snmp", True),
         (3306, "TCP", "mysql", True), (5900, "TCP", "vnc", True), (8443, "TCP", "https", False),
         (25, "TCP", "smtp", False), (53, "UDP", "dns", False)]
PORT_WEIGHTS = [8, 6, 20, 12, 2, 3, 1, 4, 4, 2, 2, 2, 6, 3, 3]
RENAME_WORDS = ["Holdings", "Group", "Partners", "Health", "Services", "International", "Solutions"]


@dataclass(slots=True)
class Organization:
    id: int
    name: str
    key: str
    created_at: int
    updated_at: int
    logs_sources_count: int
    sat_learner_count: int
    tenant_type: str | None = None
    tenant_id: int | None = None
    tenant_guid: str | None = None
    products: tuple[str, ...] = ()


@dataclass(slots=True)
class Identity:
    id: int
    organization_id: int
    username: str
    email: str
    enabled: bool
    billable: bool
    mfa_enabled: bool
    risk_level: str
    external: bool
    on_premises_sync: bool
    created_at: int
    updated_at: int
    password_changed_at: int | None
    risk_updated_at: int | None


@dataclass(slots=True)
class ExternalPort:
    id: int
    ip_address: str
    port: int
    protocol: str
    service: str
    risky: bool
    organization_ids: tuple[int, ...]
    created_at: int
    updated_at: int
    last_scan_at: int
    last_external_scan_at: int | None


class InventoryMixin:
    """Organizations, identities and external ports of a World."""

    def _init_inventory(self) -> None:
        from sortedcontainers import SortedList

        self.identities: dict[int, Identity] = {}
        self._identities_by_updated = SortedList()
        self._identities_by_org: dict[int, list[int]] = {}
        self.external_ports: dict[int, ExternalPort] = {}
        self._ports_by_updated = SortedList()
        self._org_agent_counts: Counter = Counter()
        self._org_incident_counts: Counter = Counter()
        self._identity_rng, self._port_rng, self._org_rng = (self._stream(n) for n in ("identities", "ports", "orgs"))
        self._next_identity_id = 7_000_001 + self.config.id_offset
        self._next_port_id = 40_001 + self.config.id_offset

    def _org_ids(self) -> list[int]:
        return list(self.organizations)

    def _build_inventory(self) -> None:
        cfg, rng = self.config, self._identity_rng
        start = self.anchor - cfg.days * DAY
        for org in self.organizations.values():
            roll = rng.random()
            if roll < 0.9:
                org.tenant_type = "microsoft_365" if roll < 0.7 else "google_workspace"
                org.tenant_id, org.tenant_guid = 5_000 + org.id, str(uuid.UUID(int=rng.getrandbits(128), version=4))
                org.products = ("itdr", "ispm") if rng.random() < 0.6 else ("itdr",)
        tenants = [o.id for o in self.organizations.values() if o.tenant_type]
        for created in sorted(rng.randint(start - 200 * DAY, self.anchor - 600)
                              for _ in range(cfg.identities if tenants else 0)):
            identity = self._new_identity(rng.choice(tenants), created)
            if rng.random() < 0.3:
                identity.updated_at = min(self.anchor, created + rng.randint(DAY, 120 * DAY))
            self._put_identity(identity)
        rng = self._port_rng
        ips: dict[int, list[str]] = {org_id: [] for org_id in self.organizations}
        for agent in self.agents.values():
            if agent.external_ip and agent.external_ip not in ips[agent.organization_id]:
                ips[agent.organization_id].append(agent.external_ip)
        for org_id, found in ips.items():
            if not found:
                found.append(f"198.51.{org_id % 250}.{rng.randint(1, 254)}")
            del found[3:]
        seen: set[tuple[str, int, str]] = set()
        for created in sorted(rng.randint(start - 60 * DAY, self.anchor - 3600) for _ in range(cfg.external_ports)):
            org_id = rng.choice(self._org_ids())
            ip = rng.choice(ips[org_id])
            port, protocol, service, risky = rng.choices(PORTS, PORT_WEIGHTS)[0]
            if (ip, port, protocol) in seen:
                continue
            seen.add((ip, port, protocol))
            orgs = (org_id,)
            if len(ips) > 1 and rng.random() < 0.1:  # a shared public address (an MSP jump host, a co-located office)
                orgs = tuple(sorted({org_id, rng.choice(self._org_ids())}))
            scan = min(self.anchor, max(created, self.anchor - rng.randint(0, 2 * DAY)))
            self._put_port(ExternalPort(
                id=self._next_port_id, ip_address=ip, port=port, protocol=protocol, service=service, risky=risky,
                organization_ids=orgs, created_at=created, updated_at=scan, last_scan_at=scan,
                last_external_scan_at=None if rng.random() < 0.1 else scan - rng.randint(3600, DAY)))
            self._next_port_id += 1

    def _new_identity(self, org_id: int, created: int) -> Identity:
        rng, org = self._identity_rng, self.organizations[org_id]
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        domain = f"{org.key}.example.com"
        external = rng.random() < 0.06
        username = f"{first}.{last}{rng.randint(1, 99)}@{domain}"
        email = username
        if external:
            email = f"{first}.{last}@partner-{rng.randint(1, 9)}.example.net"
            username = f"{email.replace('@', '_')}#EXT#@{domain}" if org.tenant_type == "microsoft_365" else email
        risky = org.tenant_type == "microsoft_365" and rng.random() < 0.12
        identity = Identity(
            id=self._next_identity_id, organization_id=org_id, username=username, email=email,
            enabled=rng.random() < 0.92, billable=not external and rng.random() < 0.85,
            mfa_enabled=rng.random() < 0.78, risk_level=rng.choice(RISK_LEVELS[1:]) if risky else "none",
            external=external, on_premises_sync=org.tenant_type == "microsoft_365" and rng.random() < 0.3,
            created_at=created, updated_at=created,
            password_changed_at=None if rng.random() < 0.05 else created + rng.randint(0, 30 * DAY),
            risk_updated_at=created if org.tenant_type == "microsoft_365" else None)
        identity.password_changed_at = identity.password_changed_at and min(identity.password_changed_at,
                                                                               self.anchor)
        self._next_identity_id += 1
        return identity

    def _put_identity(self, identity: Identity) -> None:
        self.identities[identity.id] = identity
        self._identities_by_updated.add((identity.updated_at, identity.id))
        self._identities_by_org.setdefault(identity.organization_id, []).append(identity.id)

    def _put_port(self, port: ExternalPort) -> None:
        self.external_ports[port.id] = port
        self._ports_by_updated.add((port.updated_at, port.id))

    def _tick_inventory(self, now: int, identity_changes: int, new_identities: int, port_scans: int,
                        ports_opened: int, ports_closed: int, organization_renames: int,
                        identities_removed: int = 0) -> dict[str, list[int]]:
        changed: dict[str, list[int]] = {"identity_changes": [], "new_identities": [], "port_scans": [],
                                         "ports_opened": [], "ports_closed": [], "organization_renames": [],
                                         "identities_removed": []}
        rng = self._identity_rng
        for identity_id in rng.sample(sorted(self.identities), min(identities_removed, len(self.identities))):
            identity = self.identities.pop(identity_id)  # deleted at the identity provider
            self._identities_by_updated.remove((identity.updated_at, identity.id))
            self._identities_by_org[identity.organization_id].remove(identity_id)
            changed["identities_removed"].append(identity_id)
        for identity_id in rng.sample(list(self.identities), min(identity_changes, len(self.identities))):
            identity = self.identities[identity_id]
            self._identities_by_updated.remove((identity.updated_at, identity.id))
            what = rng.randrange(3)
            if what == 0:
                identity.risk_level = "none" if identity.risk_level != "none" else rng.choice(RISK_LEVELS[1:])
                identity.risk_updated_at = now
            elif what == 1:
                identity.mfa_enabled = not identity.mfa_enabled
            else:
                identity.password_changed_at = now
            identity.updated_at = max(now, identity.updated_at)
            self._identities_by_updated.add((identity.updated_at, identity.id))
            changed["identity_changes"].append(identity_id)
        tenants = [o.id for o in self.organizations.values() if o.tenant_type]
        for _ in range(new_identities if tenants else 0):
            identity = self._new_identity(rng.choice(tenants), now)
            self._put_identity(identity)
            changed["new_identities"].append(identity.id)
        rng = self._port_rng
        for port_id in rng.sample(list(self.external_ports), min(port_scans, len(self.external_ports))):
            port = self.external_ports[port_id]
            self._ports_by_updated.remove((port.updated_at, port.id))
            port.last_scan_at = port.updated_at = max(now, port.updated_at)
            self._ports_by_updated.add((port.updated_at, port.id))
            changed["port_scans"].append(port_id)
        for port_id in rng.sample(list(self.external_ports), min(ports_closed, len(self.external_ports))):
            port = self.external_ports.pop(port_id)
            self._ports_by_updated.remove((port.updated_at, port.id))
            changed["ports_closed"].append(port_id)
        for _ in range(ports_opened):
            org_id = rng.choice(self._org_ids())
            port, protocol, service, risky = rng.choices(PORTS, PORT_WEIGHTS)[0]
            self._put_port(ExternalPort(
                id=self._next_port_id, ip_address=f"198.51.{org_id % 250}.{rng.randint(1, 254)}", port=port,
                protocol=protocol, service=service, risky=risky, organization_ids=(org_id,), created_at=now,
                updated_at=now, last_scan_at=now, last_external_scan_at=None))
            changed["ports_opened"].append(self._next_port_id)
            self._next_port_id += 1
        for org_id in self._org_rng.sample(self._org_ids(), min(organization_renames, len(self.organizations))):
            self.rename_organization(org_id, now=now)
            changed["organization_renames"].append(org_id)
        return changed

    def rename_organization(self, org_id: int, name: str | None = None, now: int | None = None) -> dict[str, Any]:
        with self.lock:
            org = self.organizations[org_id]
            if name is None:
                base = org.name.split(" ")[0]
                name = f"{base} {self._org_rng.choice(RENAME_WORDS)} {self._org_rng.randint(2, 99)}"
            org.name = name
            org.updated_at = max(now or self.now(), org.updated_at)
            return self.organization_json(org)

    # --- rendering and queries ---------------------------------------------------------------

    def organization_json(self, org: Organization, *, with_usages: bool = False) -> dict[str, Any]:
        members = self._identities_by_org.get(org.id, [])
        billable = sum(1 for i in members if self.identities[i].billable)
        record = {
            "id": org.id, "name": org.name, "key": org.key, "account_id": self.config.account_id,
            "agents_count": self._org_agent_counts[org.id], "incident_reports_count": self._org_incident_counts[org.id],
            "logs_sources_count": org.logs_sources_count, "billable_identity_count": billable,
            "sat_learner_count": org.sat_learner_count, "identity_provider_tenant_id": org.tenant_guid,
            "microsoft_365_tenant_id": org.tenant_guid if org.tenant_type == "microsoft_365" else None,
            "microsoft_365_users_count": len(members) if org.tenant_type == "microsoft_365" else 0,
            "notify_emails": [f"soc@org{org.id}.example"], "report_recipients": [f"it@org{org.id}.example"],
            "created_at": iso(org.created_at), "updated_at": iso(org.updated_at),
        }
        if with_usages:
            agents = [self.agents[a] for a in self._agents_by_org_cache().get(org.id, [])]
            now = self.now()
            record["actual_usages"] = {
                "edr": {"billable_agents_count": len(agents),
                        "unresponsive_agents_count": sum(1 for a in agents if a.last_callback_at < now - 7 * DAY),
                        "outdated_agents_count": sum(1 for a in agents if a.version < "0.14.20"),
                        "isolated_agents_count": sum(1 for a in agents if a.firewall_status == "Isolated")},
                "sat": {"learners_count": org.sat_learner_count},
                "itdr": [] if not org.tenant_type else [{
                    "type": "microsoft" if org.tenant_type == "microsoft_365" else "google",
                    "identity_provider_tenant_id": org.tenant_guid, "billable_identities_count": billable,
                    "total_identities_count": len(members)}],
            }
        return record

    def list_organizations(self, filters, sort_field, direction, limit, token):
        def keep(org: Organization) -> bool:
            return all(getattr(org, name) == value for name, value in filters.items())

        with self.lock:
            found, next_token = page(self.organizations, None, keep, sort_field, direction, limit, token,
                                     id_ordered=frozenset({"id"}), key=lambda o, field: getattr(o, field))
            return [self.organization_json(o) for o in found], next_token

    def _tenant_type(self, identity: Identity) -> str | None:
        return self.organizations[identity.organization_id].tenant_type

    def identity_json(self, identity: Identity) -> dict[str, Any]:
        org = self.organizations[identity.organization_id]
        risk_state = {"none": "none", "low": "remediated"}.get(identity.risk_level, "atRisk")
        return {
            "id": identity.id, "account": {"id": self.config.account_id, "name": self.config.account_name},
            "organization": {"id": org.id, "name": org.name}, "tenant": {"id": org.tenant_id, "type": org.tenant_type},
            "username": identity.username, "email": identity.email, "enabled": identity.enabled,
            "billable": identity.billable, "enabled_products": list(org.products),
            "mfa_enabled": identity.mfa_enabled, "risk_level": identity.risk_level, "risk_state": risk_state,
            "risk_detail": "none" if risk_state == "none" else "userPerformedSecuredPasswordReset"
            if risk_state == "remediated" else "unknownFutureValue",
            "risk_last_updated_at": iso(identity.risk_updated_at),
            "password_last_changed_at": iso(identity.password_changed_at),
            "on_premises_sync_enabled": identity.on_premises_sync, "external": identity.external,
            "created_at": iso(identity.created_at), "updated_at": iso(identity.updated_at),
        }

    def list_identities(self, filters, sort_field, direction, limit, token):
        members = None
        if "escalation_id" in filters:
            ticket = self.escalations.get(filters["escalation_id"])
            members = set(ticket.entity_ids) if ticket else set()

        def keep(i: Identity) -> bool:
            if members is not None and i.id not in members:
                return False
            if "organization_id" in filters and i.organization_id != filters["organization_id"]:
                return False
            if "tenant_type" in filters and self._tenant_type(i) != filters["tenant_type"]:
                return False
            if "mfa_enabled" in filters and i.mfa_enabled != filters["mfa_enabled"]:
                return False
            return all(getattr(i, name) == filters[name] for name in ("billable", "enabled", "external", "risk_level")
                       if name in filters)

        with self.lock:
            found, next_token = page(self.identities, self._identities_by_updated, keep, sort_field, direction,
                                     limit, token)
            return [self.identity_json(i) for i in found], next_token

    def external_port_json(self, port: ExternalPort) -> dict[str, Any]:
        return {"id": port.id, "ip_address": port.ip_address, "port": port.port, "protocol": port.protocol,
                "service": port.service, "risky_service": port.risky, "last_scan_at": iso(port.last_scan_at),
                "last_external_scan_at": iso(port.last_external_scan_at),
                "organization_ids": list(port.organization_ids)}

    def list_external_ports(self, filters, sort_field, direction, limit, token):
        def keep(p: ExternalPort) -> bool:
            if "organization_id" in filters and filters["organization_id"] not in p.organization_ids:
                return False
            if "risky_service" in filters and p.risky != filters["risky_service"]:
                return False
            return all(getattr(p, name) == filters[name] for name in ("protocol", "port", "service")
                       if name in filters)

        with self.lock:
            found, next_token = page(self.external_ports, self._ports_by_updated, keep, sort_field, direction,
                                     limit, token, key=lambda p, field: getattr(p, field))
            return [self.external_port_json(p) for p in found], next_token

    def truth_organizations(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": o.id, "account_id": self.config.account_id, "name": o.name, "key": o.key,
                     "agents_count": self._org_agent_counts[o.id],
                     "incident_reports_count": self._org_incident_counts[o.id], "updated_at": iso(o.updated_at)}
                    for o in self.organizations.values()]

    def truth_identities(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": i.id, "account_id": self.config.account_id, "organization_id": i.organization_id,
                     "username": i.username, "enabled": i.enabled, "mfa_enabled": i.mfa_enabled,
                     "risk_level": i.risk_level, "updated_at": iso(i.updated_at)} for i in self.identities.values()]

    def truth_external_ports(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": p.id, "account_id": self.config.account_id, "organization_ids": list(p.organization_ids),
                     "ip_address": p.ip_address, "port": p.port, "protocol": p.protocol, "service": p.service,
                     "risky_service": p.risky, "last_scan_at": iso(p.last_scan_at)}
                    for p in self.external_ports.values()]
