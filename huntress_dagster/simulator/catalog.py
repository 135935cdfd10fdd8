"""The fixed vocabulary of the simulated world (agents and incident reports) and their compact records."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400

STATUSES = ["closed", "sent", "dismissed", "auto_remediating", "partner_dismissed", "deleting"]
STATUS_WEIGHTS = [60, 24, 8, 4, 3, 1]
OPEN_STATUSES = {"sent", "auto_remediating"}
SEVERITIES = ["low", "high", "critical"]
SEVERITY_WEIGHTS = [25, 60, 15]
INCIDENT_PLATFORMS = ["windows", "darwin", "linux", "microsoft_365", "google", "email_security", "other"]
INCIDENT_PLATFORM_WEIGHTS = [70, 8, 6, 9, 2, 3, 2]
ENDPOINT_INDICATORS = [
    "footholds", "monitored_files", "ransomware_canaries", "antivirus_detections", "process_detections",
    "mde_detections", "behavioral_detections", "app_control",
]
PLATFORM_INDICATORS = {
    "microsoft_365": ["managed_identity"],
    "google": ["managed_identity"],
    "email_security": ["email_security_detections"],
    "other": ["siem_detections", "favicon_detections", "ai_misuse"],
}
REMEDIATION_ACTIONS = [
    ("assisted", "Delete File", "path"),
    ("assisted", "Delete Scheduled Task", "task_name"),
    ("assisted", "Delete Registry Value", "registry_key"),
    ("assisted", "Kill Process", "process_id"),
    ("manual", "Reset user password", None),
    ("containment", "Isolate host", None),
]
REMEDIATION_STATUSES = ["completed", "approved", "unapproved", "failed", "cancelled"]
AGENT_OS = {
    "windows": [("Windows 10 Pro", 10, 0, "19045"), ("Windows 11 Enterprise", 10, 0, "22631"),
                ("Windows Server 2019 Standard", 10, 0, "17763"), ("Windows Server 2022 Datacenter", 10, 0, "20348")],
    "darwin": [("macOS 14.5", 14, 5, "23F79"), ("macOS 13.6", 13, 6, "22G120")],
    "linux": [("Ubuntu 22.04.4 LTS", 22, 4, "5.15.0-105"), ("Red Hat Enterprise Linux 9.3", 9, 3, "5.14.0-362")],
}
ORG_WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Wonka", "Soylent",
             "Tyrell", "Cyberdyne", "Massive", "Oscorp", "Gringotts", "Monarch", "Pied Piper", "Dunder"]
ORG_SUFFIX = ["Inc.", "LLC", "Dental", "Law Group", "Manufacturing", "Clinic", "Logistics", "Holdings"]
SUMMARIES = [
    "Huntress detected a malicious scheduled task on this host. We recommend removing the file and "
    "scheduled task listed in the remediation steps below.",
    "A suspicious PowerShell command downloaded and executed a remote payload. The host was isolated.",
    "Credential harvesting activity was observed from a foreign IP address against this identity.",
    "Ransomware canary files were modified; the process responsible was terminated.",
    "An unauthorized remote monitoring tool was installed and used for persistence.",
]


@dataclass(slots=True)
class Incident:
    id: int
    organization_id: int | None
    agent_id: int | None
    platform: str
    severity: str
    status: str
    indicator_types: tuple[str, ...]
    indicator_counts: dict[str, int]
    created_at: int
    updated_at: int
    sent_at: int | None
    closed_at: int | None
    status_updated_at: int
    summary_index: int | None
    remediation_count: int
    flat_remediations: bool
    body_bytes: int
    hostname: str


@dataclass(slots=True)
class Agent:
    id: int
    organization_id: int
    hostname: str
    platform: str
    os_index: int
    created_at: int
    updated_at: int
    last_callback_at: int
    last_survey_at: int | None
    ipv4: str
    external_ip: str | None
    macs: tuple[str, ...]
    version: str
    edr_version: str | None
    defender_status: str | None
    firewall_status: str
    tamper_protection: bool | None
    tags: tuple[str, ...]
    serial: str
