"""Signals: what the SOC investigated, per swagger's Signal model (`/v1/signals`).

A signal keeps its `investigated_at`; its `status` (`reported` | `closed`) can change days later, which moves
`updated_at` only. Signals come in bursts: a cluster of 5-20 shares one created/investigated/updated time
(a detection burst closed in bulk), so with a small `limit` ties straddle page boundaries. `details` differ
per signal type (EDR process insights, ITDR sign-ins, SIEM rules, Defender/MDE, ...) and are rendered on
demand from the seed, never stored.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from .paging import iso, page

DAY = 86_400
SIGNAL_TYPES = ["Antivirus", "Process Insights", "Managed ITDR", "Footholds", "MDE Detections", "SIEM",
                "Ransomware Canaries", "Favicon Detections", "Attack Disruptions", "App Control"]
SIGNAL_TYPE_WEIGHTS = [8, 35, 20, 6, 10, 12, 2, 2, 2, 3]
SIGNAL_STATUSES = ["reported", "closed"]
ENTITY_TYPES = ["user_entity", "source", "mailbox", "service_principal", "agent", "identity"]
RULES = {
    "Antivirus": ["Trojan:Win32/Wacatac.B!ml", "HackTool:Win32/Mimikatz", "Behavior:Win32/CobaltStrike.C",
                  "PUA:Win32/Presenoker", "Exploit:O97M/CVE-2017-11882"],
    "Process Insights": ["Firewall Disabled via Netsh", "Whoami Execution by Service Account",
                         "Encoded PowerShell Command", "LSASS Memory Access via Comsvcs", "Shadow Copy Deletion",
                         "Suspicious Rundll32 Export", "New Local Administrator Added"],
    "Managed ITDR": ["Unexpected Country Sign-in", "Impossible Travel", "Suspicious Inbox Rule Created",
                     "MFA Method Added from VPN", "Legacy Authentication Sign-in", "OAuth App Consent Granted"],
    "Footholds": ["Unsigned Run Key Autorun", "Suspicious Scheduled Task", "Unknown Service Installed",
                  "WMI Event Subscription Persistence"],
    "MDE Detections": ["Suspicious process injection observed", "Credential dumping activity observed",
                       "Ransomware behavior detected in the file system", "Suspicious PowerShell download"],
    "SIEM": ["Multiple Failed VPN Logins", "Firewall Admin Login from New IP", "Brute Force Against RDP",
             "Audit Log Cleared", "DNS Query to Newly Registered Domain"],
    "Ransomware Canaries": ["Canary File Modified", "Canary File Encrypted"],
    "Favicon Detections": ["Cloned Login Page Hosting Organization Favicon"],
    "Attack Disruptions": ["Malicious Process Terminated", "Host Isolated After Ransomware Precursor"],
    "App Control": ["Unapproved Remote Access Tool Blocked", "Unsigned Binary Blocked", "Script Host Audited"],
}
CONTEXTS = {
    "reported": ["True Positive", "True Positive, Malicious Activity", "True Positive, Policy Violation"],
    "closed": ["False Positive", "False Positive, Business Accepted Risk", "Benign Positive",
               "Informational", "Business Accepted Risk"],
}
_ENDPOINT_TYPES = {"Antivirus", "Process Insights", "Footholds", "MDE Detections", "Ransomware Canaries",
                   "Attack Disruptions", "App Control"}
_SOURCES = ["FortiGate 60F Firewall", "SonicWall TZ470", "Windows Event Logs - DC01", "Microsoft 365 Audit",
            "Cisco Meraki MX", "Palo Alto PA-440", "Syslog - Linux Fleet"]
_USERS = ["jdoe", "asmith", "bwayne", "ckent", "dprince", "svc_backup", "hr.admin", "mlopez", "admin22"]
_COUNTRIES = [("RU", "Moscow"), ("CN", "Shanghai"), ("NG", "Lagos"), ("BR", "Sao Paulo"), ("RO", "Bucharest"),
              ("NL", "Amsterdam"), ("US", "Ashburn")]
_APPS = ["AnyDesk.exe", "ScreenConnect.ClientService.exe", "ngrok.exe", "rclone.exe", "PsExec64.exe"]


@dataclass(slots=True)
class Signal:
    id: int
    organization_id: int
    type: str
    rule_index: int
    entity_type: str
    entity_id: int
    entity_name: str
    status: str
    context_index: int | None
    created_at: int
    investigated_at: int
    updated_at: int


class SignalsMixin:
    """Signals of a World (mixed into World; uses its organizations, agents and identities)."""

    def _init_signals(self) -> None:
        from sortedcontainers import SortedList

        self.signals: dict[int, Signal] = {}
        self._signals_by_updated = SortedList()
        self._signal_rng = self._stream("signals")
        self._next_signal_id = 3_000_001 + self.config.id_offset
        self._last_signal_created = 0

    def _build_signals(self) -> None:
        cfg, rng = self.config, self._signal_rng
        sizes: list[int] = []
        while sum(sizes) < cfg.signals:
            sizes.append(rng.randint(5, 20) if rng.random() < 0.07 else 1)
        if sizes:
            sizes[-1] -= sum(sizes) - cfg.signals
        start = self.anchor - cfg.days * DAY
        bases = sorted(rng.randint(start, self.anchor - 3600) for _ in sizes)
        for size, base in zip(sizes, bases):
            investigated = base + rng.randint(60, 4 * 3600)
            updated = investigated
            if rng.random() < 0.25:  # the status was revisited later (an incident closed, a signal reopened)
                updated = investigated + rng.randint(3600, 10 * DAY)
            updated = min(updated, self.anchor)
            investigated = min(investigated, updated)
            for _ in range(size):
                signal = self._new_signal(base, investigated, updated,
                                          rng.choices(SIGNAL_STATUSES, [15, 85])[0])
                self._put_signal(signal)

    def _new_signal(self, created: int, investigated: int, updated: int, status: str) -> Signal:
        rng = self._signal_rng
        kind = rng.choices(SIGNAL_TYPES, SIGNAL_TYPE_WEIGHTS)[0]
        org_id = rng.choice(self._org_ids())
        entity_type, entity_id, entity_name = self._signal_entity(kind, org_id, rng)
        if entity_type == "agent":
            org_id = self.agents[entity_id].organization_id
        elif entity_type == "identity":
            org_id = self.identities[entity_id].organization_id
        created = max(created, self._last_signal_created)
        self._last_signal_created = created
        signal = Signal(
            id=self._next_signal_id, organization_id=org_id, type=kind, rule_index=rng.randrange(len(RULES[kind])),
            entity_type=entity_type, entity_id=entity_id, entity_name=entity_name, status=status,
            context_index=None if rng.random() < 0.1 else rng.randrange(15),
            created_at=created, investigated_at=max(created, investigated), updated_at=max(created, updated))
        self._next_signal_id += 1
        return signal

    def _signal_entity(self, kind: str, org_id: int, rng: random.Random) -> tuple[str, int, str]:
        if kind in _ENDPOINT_TYPES and self.agents:
            agent = self.agents[rng.choice(self._agent_ids_cache())]
            return "agent", agent.id, agent.hostname
        if kind == "Managed ITDR":
            pick = rng.choices(["identity", "user_entity", "mailbox", "service_principal"], [60, 20, 12, 8])[0]
            org_identities = self._identities_by_org.get(org_id)
            if pick == "identity" and org_identities:
                identity = self.identities[rng.choice(org_identities)]
                return "identity", identity.id, identity.username
            if pick == "identity":
                pick = "user_entity"
            number = rng.randrange(1, 400)
            name = {"user_entity": f"{rng.choice(_USERS)}@org{org_id}.example",
                    "mailbox": f"shared-{rng.choice(['finance', 'hr', 'info', 'billing'])}@org{org_id}.example",
                    "service_principal": f"{rng.choice(['Backup', 'CRM Sync', 'Mail Relay'])} App"}[pick]
            return pick, 800_000 + org_id * 1_000 + number, name
        source = rng.randrange(len(_SOURCES))
        if kind == "Favicon Detections":
            return "source", 900_000 + org_id * 100 + 99, f"www.org{org_id}.example (favicon monitor)"
        return "source", 900_000 + org_id * 100 + source, _SOURCES[source]

    def _agent_ids_cache(self) -> list[int]:
        if len(self._agent_ids) != len(self.agents):
            self._agent_ids = list(self.agents)
        return self._agent_ids

    def _put_signal(self, signal: Signal) -> None:
        self.signals[signal.id] = signal
        self._signals_by_updated.add((signal.updated_at, signal.id))

    def _tick_signals(self, now: int, new_signals: int, signal_status_changes: int) -> dict[str, list[int]]:
        rng = self._signal_rng
        changed: dict[str, list[int]] = {"new_signals": [], "signal_status_changes": []}
        first = 3_000_001 + self.config.id_offset
        old = now - 2 * DAY
        picked: set[int] = set()
        for _ in range(signal_status_changes * 50):  # old signals: investigated at least two days ago
            if len(picked) >= signal_status_changes or self._next_signal_id == first:
                break
            signal = self.signals[rng.randrange(first, self._next_signal_id)]
            if signal.investigated_at <= old and signal.id not in picked:
                picked.add(signal.id)
                self._signals_by_updated.remove((signal.updated_at, signal.id))
                signal.status = "reported" if signal.status == "closed" else "closed"
                signal.updated_at = max(now, signal.updated_at)
                self._signals_by_updated.add((signal.updated_at, signal.id))
                changed["signal_status_changes"].append(signal.id)
        for _ in range(new_signals):
            signal = self._new_signal(now, now, now, rng.choices(SIGNAL_STATUSES, [15, 85])[0])
            self._put_signal(signal)
            changed["new_signals"].append(signal.id)
        return changed

    # --- rendering and queries ---------------------------------------------------------------

    def signal_json(self, signal: Signal) -> dict[str, Any]:
        context = None if signal.context_index is None else \
            CONTEXTS[signal.status][signal.context_index % len(CONTEXTS[signal.status])]
        return {
            "id": signal.id, "created_at": iso(signal.created_at), "details": self.signal_details(signal),
            "entity": {"id": signal.entity_id, "name": signal.entity_name, "type": signal.entity_type},
            "investigated_at": iso(signal.investigated_at), "investigation_context": context,
            "name": RULES[signal.type][signal.rule_index],
            "organization": {"id": signal.organization_id, "name": self._org_name(signal.organization_id)},
            "status": signal.status, "type": signal.type, "updated_at": iso(signal.updated_at),
        }

    def signal_details(self, signal: Signal) -> dict[str, Any]:
        rng = random.Random(self.config.seed * 2_000_003 + signal.id)
        rule = RULES[signal.type][signal.rule_index]
        user = rng.choice(_USERS)
        host = signal.entity_name if signal.entity_type == "agent" else f"HOST-{rng.randrange(16**4):04X}"
        sha256 = hashlib.sha256(rng.randbytes(16)).hexdigest()
        drop = f"C:\\Users\\{user}\\AppData\\Local\\Temp\\{rng.choice(['upd', 'svc', 'tmp'])}{rng.randrange(99)}.exe"
        kind = signal.type
        if kind == "Process Insights":
            process, command = rng.choice([
                ("C:\\WINDOWS\\system32\\netsh.exe", "NetSh.exe  Advfirewall set allprofiles state off"),
                ("C:\\Windows\\System32\\whoami.exe", "whoami /all"),
                ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                 "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA="),
                ("C:\\Windows\\System32\\rundll32.exe",
                 "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 C:\\Temp\\l.dmp full"),
                ("C:\\Windows\\System32\\vssadmin.exe", "vssadmin.exe delete shadows /all /quiet"),
                ("C:\\Windows\\System32\\net.exe", f"net localgroup administrators {user}2 /add"),
            ])
            registry = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\SharedAccess" if "netsh" in process else ""
            return {"rule_name": rule, "username": user, "process_name": process, "command_line": command,
                    "registry_key": registry, "file_path": "", "file_rename_target": "", "cleartext": ""}
        if kind in ("Antivirus", "MDE Detections"):
            details = {"threat_name": rule if kind == "Antivirus" else None, "title": rule,
                       "product": "Microsoft Defender Antivirus" if kind == "Antivirus"
                       else "Microsoft Defender for Endpoint",
                       "severity": rng.choice(["Low", "Medium", "High", "Severe"]),
                       "category": rng.choice(["Trojan", "HackTool", "Behavior", "CredentialAccess", "Execution"]),
                       "file_path": drop, "sha256": sha256, "username": f"CORP\\{user}", "hostname": host,
                       "action_taken": rng.choice(["Quarantined", "Removed", "Blocked", "None"]),
                       "detected_at": iso(signal.created_at - rng.randint(0, 600))}
            if kind == "MDE Detections":
                details.update(alert_id=f"da{rng.getrandbits(64):016x}_{rng.randrange(10**9)}",
                               mitre_techniques=rng.sample(["T1055", "T1003.001", "T1486", "T1059.001"], 2),
                               command_line=f'"{drop}" -s', threat_name=None)
            return details
        if kind == "Managed ITDR":
            country, city = rng.choice(_COUNTRIES)
            who = "app_display_name" if signal.entity_type == "service_principal" else "user_principal_name"
            return {"rule_name": rule, who: signal.entity_name, "country_code": country,
                    "city": city, "ip_address": f"{rng.choice([45, 91, 185, 193])}.{rng.randrange(256)}."
                                                f"{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    "isp": rng.choice(["M247 Europe", "DigitalOcean", "Choopa LLC", "Comcast Cable"]),
                    "user_agent": rng.choice(["Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "python-requests/2.31",
                                              "Microsoft Office/16.0"]),
                    "application": rng.choice(["Office 365 Exchange Online", "Microsoft Azure CLI", "OfficeHome"]),
                    "operation": rng.choice(["UserLoggedIn", "New-InboxRule", "Consent to application",
                                             "Add registered security info"]),
                    "result": rng.choice(["Success", "Success", "Failure"])}
        if kind == "SIEM":
            return {"rule_name": rule, "source_name": signal.entity_name,
                    "log_source_type": rng.choice(["firewall", "windows_event_log", "m365", "syslog"]),
                    "event_count": rng.randint(1, 500), "first_event_at": iso(signal.created_at - 900),
                    "last_event_at": iso(signal.created_at),
                    "sample_event": {"src_ip": f"198.51.100.{rng.randrange(1, 255)}", "dst_port": rng.choice(
                        [22, 443, 3389]), "user": user, "action": rng.choice(["deny", "allow", "login_failure"])}}
        if kind == "Footholds":
            return {"rule_name": rule, "hostname": host, "file_path": drop, "sha256": sha256,
                    "persistence_type": rng.choice(["run_key", "scheduled_task", "service", "wmi"]),
                    "registry_key": f"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\{user}Updater",
                    "task_name": f"\\Microsoft\\Windows\\Sync{rng.randrange(99)}", "signer": None}
        if kind == "Ransomware Canaries":
            return {"rule_name": rule, "hostname": host,
                    "canary_file_path": f"C:\\Users\\{user}\\Documents\\~hcanary{rng.randrange(99)}.docx",
                    "process_name": drop, "username": f"CORP\\{user}"}
        if kind == "Favicon Detections":
            return {"rule_name": rule, "url": f"https://login-org{signal.organization_id}.{rng.choice(['top', 'xyz'])}"
                                              f"/{rng.getrandbits(32):08x}/",
                    "ip_address": f"185.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    "cloned_brand": "Microsoft 365"}
        if kind == "Attack Disruptions":
            return {"rule_name": rule, "hostname": host, "action": rng.choice(["process_killed", "host_isolated"]),
                    "process_name": drop, "command_line": f'"{drop}" --encrypt C:\\', "username": f"CORP\\{user}"}
        return {"rule_name": rule, "hostname": host, "application": rng.choice(_APPS),  # App Control
                "file_path": f"C:\\Users\\{user}\\Downloads\\{rng.choice(_APPS)}", "sha256": sha256,
                "publisher": rng.choice([None, "AnyDesk Software GmbH", "ConnectWise, LLC"]),
                "action": rng.choice(["blocked", "audited"])}

    def list_signals(self, filters: dict[str, Any], sort_field: str, direction: str, limit: int,
                     token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        low, high = filters.get("investigated_at_min"), filters.get("investigated_at_max")
        types, statuses = filters.get("types"), filters.get("statuses")

        def keep(s: Signal) -> bool:
            return not ((low is not None and s.investigated_at < low)
                        or (high is not None and s.investigated_at > high)
                        or ("organization_id" in filters and s.organization_id != filters["organization_id"])
                        or ("entity_type" in filters and s.entity_type != filters["entity_type"])
                        or ("entity_id" in filters and str(s.entity_id) != filters["entity_id"])
                        or (types and s.type not in types) or (statuses and s.status not in statuses))

        with self.lock:
            found, next_token = page(self.signals, self._signals_by_updated, keep, sort_field, direction, limit,
                                     token, key=lambda s, _field: s.status)
            return [self.signal_json(s) for s in found], next_token

    def truth_signals(self) -> list[dict[str, Any]]:
        """The current state of every signal's key fields (for tests and benchmarks)."""
        with self.lock:
            return [{"id": s.id, "account_id": self.config.account_id, "organization_id": s.organization_id,
                     "type": s.type, "status": s.status, "entity_type": s.entity_type, "entity_id": s.entity_id,
                     "investigated_at": iso(s.investigated_at), "updated_at": iso(s.updated_at)}
                    for s in self.signals.values()]
